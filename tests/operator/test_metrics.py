"""metrics.py's record functions and scrape-time gauges, read back through the registry a scrape uses."""

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from flaskops import certs, metrics, ownership
from flaskops.postgres import errors


def _value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _cond(type_, status, reason="R"):
    return {"type": type_, "status": status, "reason": reason, "message": ""}


@pytest.mark.parametrize(
    ("conds", "label"),
    [
        ([_cond("Ready", "True")], "ready"),
        ([_cond("Ready", "False"), _cond("Stalled", "True")], "stalled"),
        ([_cond("Ready", "False"), _cond("Stalled", "False")], "progressing"),
        ([], "progressing"),
    ],
)
def test_reconcile_result_from_the_new_status(conds, label):
    before = _value("flaskops_reconcile_total", result=label)
    count = _value("flaskops_reconcile_duration_seconds_count")
    with metrics.reconcile() as done:
        done({}, {"conditions": conds})
    assert _value("flaskops_reconcile_total", result=label) == before + 1
    assert _value("flaskops_reconcile_duration_seconds_count") == count + 1


def test_a_reconcile_that_raises_counts_as_an_error_by_exception_class():
    before = _value("flaskops_reconcile_errors_total", exception="ConnectionResetError")
    errors = _value("flaskops_reconcile_total", result="error")
    with pytest.raises(ConnectionResetError), metrics.reconcile():
        raise ConnectionResetError
    assert _value("flaskops_reconcile_errors_total", exception="ConnectionResetError") == before + 1
    assert _value("flaskops_reconcile_total", result="error") == errors + 1


def test_a_migration_counts_once_when_its_outcome_is_first_written():
    job = {"jobName": "app-migrate-1", "startedAt": "2026-01-01T00:00:00Z"}
    done = {**job, "outcome": "Succeeded", "completedAt": "2026-01-01T00:00:42Z"}
    before = _value("flaskops_migrations_total", outcome="Succeeded")
    seconds = _value("flaskops_migration_duration_seconds_sum", outcome="Succeeded")
    metrics.migration_finished({**job, "outcome": "Running"}, {**job, "outcome": "Running"})
    metrics.migration_finished({**job, "outcome": "Running"}, done)
    metrics.migration_finished(done, done)  # the next reconcile, or a restarted operator: already counted
    assert _value("flaskops_migrations_total", outcome="Succeeded") == before + 1
    assert _value("flaskops_migration_duration_seconds_sum", outcome="Succeeded") == seconds + 42


def test_provisioning_counts_server_failures_not_refusals():
    def failures(reason):
        return _value("flaskops_provisioning_failures_total", server="pg-unit", reason=reason)

    with pytest.raises(errors.AdminAuthFailed), metrics.provisioning("pg-unit"):
        raise errors.AdminAuthFailed("password authentication failed")
    assert failures("AdminAuthFailed") == 1
    with pytest.raises(errors.NotOwned), metrics.provisioning("pg-unit"):
        raise errors.NotOwned(ownership.Refusal("RoleOwnedElsewhere", "taken"))
    assert failures("RoleOwnedElsewhere") == 0
    with metrics.provisioning("pg-unit"):
        pass
    assert _value("flaskops_provisioning_duration_seconds_count", server="pg-unit") == 3


def test_apps_by_ready_reason_and_the_stalled_ones_by_name(tmp_path):
    ready = {"conditions": [_cond("Ready", "True", "Ready")]}
    failed = {"conditions": [_cond("Ready", "False", "MigrationFailed"), _cond("Stalled", "True")]}
    keys = [
        metrics.app_key("a", "one", ready),
        metrics.app_key("a", "two", ready),
        metrics.app_key("b", "three", failed),
        metrics.app_key("b", "new", None),
    ]
    _, crt, _ = certs.generate(tmp_path, ["127.0.0.1"])
    collector = metrics.StateCollector()
    collector.apps = lambda: keys
    collector.cert_file = crt
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in collector.collect() for s in f.samples
    }
    assert samples == {
        ("flaskops_flaskapps", (("ready", "True"), ("reason", "Ready"))): 2,
        ("flaskops_flaskapps", (("ready", "False"), ("reason", "MigrationFailed"))): 1,
        ("flaskops_flaskapps", (("ready", "Unknown"), ("reason", "NotObserved"))): 1,
        (
            "flaskops_flaskapp_stalled",
            (("flaskapp", "three"), ("namespace", "b"), ("reason", "MigrationFailed")),
        ): 1,
        ("flaskops_webhook_certificate_expiry_timestamp_seconds", ()): metrics.certificate_expiry(crt),
    }


def test_every_registered_metric_is_exposed_with_its_labels():
    """REGISTERED (README's table is checked against it) agrees with what a scrape shows."""
    metrics.STATE.apps = lambda: [metrics.app_key("b", "x", {"conditions": [_cond("Stalled", "True")]})]
    metrics.review(metrics.ALLOWED)
    try:
        families = {
            f.name: f
            for f in text_string_to_metric_families(metrics.render().decode())
            if f.name.startswith(metrics.PREFIX)
        }
    finally:
        metrics.STATE.apps = None
    seen = {}
    for family in families.values():
        for s in family.samples:
            if s.name.endswith("_created"):  # the client's per-series creation time, not a metric of ours
                continue
            base = s.name
            for suffix in ("_bucket", "_count", "_sum"):
                if family.type == "histogram" and base.endswith(suffix):
                    base = family.name
            if family.type == "counter":
                base = family.name + "_total"
            seen.setdefault(base, set()).update(k for k in s.labels if k != "le")
    expected = {k: set(v) for k, v in metrics.REGISTERED.items()}
    # The certificate gauge appears only where a webhook certificate is (not in this process).
    expected.pop("flaskops_webhook_certificate_expiry_timestamp_seconds")
    assert {k: v for k, v in seen.items() if k in expected or k.startswith(metrics.PREFIX)} == expected
