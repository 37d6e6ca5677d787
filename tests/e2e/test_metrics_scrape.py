"""The operator's /metrics, scraped from the running process as Prometheus would, while FlaskApps go
through the states an alert is about: Ready, MigrationFailed (Stalled), a PostgresServer nobody can reach,
and a self-mode webhook certificate that renews itself."""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from e2e_support import FAIL_LABEL, Apps, OperatorProcess, flaskapp, free_port
from prometheus_client.parser import text_string_to_metric_families

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(op: OperatorProcess) -> Samples:
    resp = requests.get(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5)
    resp.raise_for_status()
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_as_apps_become_ready_fail_and_wait(
    operator: OperatorProcess, apps: Apps, ns: str, make_server: Any
) -> None:
    before = scrape(operator)
    server = make_server(["production"])
    ok = flaskapp("metered", ns, server=server, image="registry.example/metered:1")
    broken = flaskapp(
        "broken", ns, server=server, image="registry.example/broken:1", migrations={"podLabels": FAIL_LABEL}
    )
    closed = free_port()  # nothing listens there: every provisioning session fails to connect
    nowhere = make_server(["production"], host="127.0.0.1", port=closed)
    lost = flaskapp("lost", ns, server=nowhere)
    for body in (ok, broken, lost):
        apps.apply(body)
    apps.wait(ns, "metered", timeout=180)
    apps.wait_reason(ns, "broken", names.MIGRATED, "MigrationFailed", timeout=180)
    apps.wait_reason(ns, "lost", names.DATABASE_READY, "DatabaseUnavailable", timeout=120)

    def moved() -> Samples:
        now = scrape(operator)
        missing = [
            what
            for what, ok in {
                "ready reconciles": value(now, "flaskops_reconcile_total", result="ready")
                > value(before, "flaskops_reconcile_total", result="ready"),
                "a stalled reconcile": value(now, "flaskops_reconcile_total", result="stalled")
                > value(before, "flaskops_reconcile_total", result="stalled"),
                "the stalled app by name": value(
                    now,
                    "flaskops_flaskapp_stalled",
                    namespace=ns,
                    flaskapp="broken",
                    reason="MigrationFailed",
                )
                == 1,
                "the unreachable server": value(
                    now, "flaskops_provisioning_failures_total", server=nowhere, reason="DatabaseUnavailable"
                )
                >= 1,
            }.items()
            if not ok
        ]
        if missing:
            raise NotYet(f"not yet: {missing}")
        return now

    # The index behind the gauges follows the status writes through the watch: wait, never sleep.
    after = wait_for(moved, timeout=60, what="the metrics to follow the apps")
    assert value(after, "flaskops_migrations_total", outcome="Succeeded") >= 1 + value(
        before, "flaskops_migrations_total", outcome="Succeeded"
    )
    assert value(after, "flaskops_migrations_total", outcome="Failed") >= 1 + value(
        before, "flaskops_migrations_total", outcome="Failed"
    )
    assert value(after, "flaskops_migration_duration_seconds_count", outcome="Succeeded") >= 1
    assert value(after, "flaskops_provisioning_duration_seconds_count", server=server) >= 2
    assert (
        value(after, "flaskops_provisioning_failures_total", server=server, reason="DatabaseUnavailable") == 0
    )
    assert value(after, "flaskops_reconcile_duration_seconds_count") > value(
        before, "flaskops_reconcile_duration_seconds_count"
    )
    assert value(after, "flaskops_flaskapps", ready="True", reason="Ready") >= 1
    assert value(after, "flaskops_flaskapps", ready="False", reason="MigrationFailed") >= 1
    # Only stalled apps have a series of their own: the Ready one has none.
    assert not [k for k in after if k[0] == "flaskops_flaskapp_stalled" and ("flaskapp", "metered") in k[1]]
    # No webhook in this operator: no certificate to report.
    assert not [k for k in after if k[0] == "flaskops_webhook_certificate_expiry_timestamp_seconds"]


# --- the self mode's certificate renews itself while the operator runs ----------------------------------

CONFIG_NAME = f"e2e-renew-{secrets.token_hex(3)}.flaskops.dev"
# A 4-minute certificate renewed when 3 minutes remain: the first renewal comes about 1 minute in.
VALIDITY_DAYS = 240 / 86400
RENEW_BEFORE_DAYS = 180 / 86400


@pytest.fixture(scope="module")
def renewing(
    kube: Kube, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    tmp = tmp_path_factory.mktemp("webhook-renew")
    env = {
        "FLASKOPS_WEBHOOK": "self",
        "FLASKOPS_WEBHOOK_ADDR": "127.0.0.1",
        "FLASKOPS_WEBHOOK_HOST": "127.0.0.1",
        "FLASKOPS_WEBHOOK_PORT": str(free_port()),
        "FLASKOPS_WEBHOOK_CERT_DIR": str(tmp / "certs"),
        "FLASKOPS_WEBHOOK_CONFIG_NAME": CONFIG_NAME,
        "FLASKOPS_WEBHOOK_CERT_VALIDITY_DAYS": repr(VALIDITY_DAYS),
        "FLASKOPS_WEBHOOK_CERT_RENEW_BEFORE_DAYS": repr(RENEW_BEFORE_DAYS),
    }
    operator.stop()  # one reconciling operator at a time
    proc = OperatorProcess(Path(kube.kubeconfig), tmp / "operator.log", extra_env=env)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
        kube.kubectl("delete", "validatingwebhookconfiguration", CONFIG_NAME, "--ignore-not-found")
        operator.start()


def _served(port: int) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", port)).encode())


def _ca_bundle(kube: Kube) -> list[x509.Certificate]:
    out = kube.kubectl("get", "validatingwebhookconfiguration", CONFIG_NAME, "-o", "json", check=False)
    if out.returncode != 0:
        raise NotYet(out.stderr.strip())
    hooks = json.loads(out.stdout).get("webhooks") or []
    if not hooks:
        raise NotYet("webhooks not filled in yet")
    return x509.load_pem_x509_certificates(base64.b64decode(hooks[0]["clientConfig"]["caBundle"]))


def test_self_mode_certificate_is_renewed_and_admission_keeps_answering(
    kube: Kube, renewing: OperatorProcess, ns: str, make_server: Any
) -> None:
    port = int(renewing.extra_env["FLASKOPS_WEBHOOK_PORT"])
    # /healthz answers before kopf's webhook server has bound its port: wait for the listener.
    first = wait_for(lambda: _served(port), timeout=60, what="the webhook's TLS listener")
    wait_for(lambda: _ca_bundle(kube), timeout=60, what=f"kopf to fill in {CONFIG_NAME}")
    expiry = value(scrape(renewing), "flaskops_webhook_certificate_expiry_timestamp_seconds")
    assert expiry == first.not_valid_after_utc.timestamp()

    server = make_server(["production"])
    unsafe = flaskapp("bad", ns, server=server, dbname=f"shop_test_{secrets.token_hex(2)}")

    dial_errors: list[str] = []  # wait_for treats an exception as "not yet": collect, assert after

    def refused() -> str:
        out = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(unsafe), check=False)
        # Answered by the webhook (an S1 refusal), never "failed calling webhook" (a TLS or dial error).
        if "failed calling webhook" in out.stderr:
            dial_errors.append(out.stderr)
        if out.returncode == 0 or "S1" not in out.stderr:
            raise NotYet(out.stderr.strip() or "allowed")
        return out.stderr

    wait_for(refused, timeout=60, what="the webhook to refuse S1")

    def renewed() -> x509.Certificate:
        served = _served(port)
        if served.serial_number == first.serial_number:
            refused()  # admission answers throughout the wait
            raise NotYet(f"still serving the first certificate (expires {first.not_valid_after_utc})")
        return served

    second = wait_for(renewed, timeout=150, what="the renewed certificate", interval=1)
    assert second.not_valid_after_utc > first.not_valid_after_utc
    left = second.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert left > datetime.timedelta(seconds=180)  # renewed before fewer than renew-before remained

    def bundle_trusts_both() -> bool:
        bundle = _ca_bundle(kube)
        if len(bundle) != 2:
            raise NotYet(f"caBundle has {len(bundle)} CA(s)")
        # The CA of what is served now, then the one it replaced (the served one may already be a later
        # renewal than `second` on a slow machine: the window is short).
        served = _served(port)
        served.verify_directly_issued_by(bundle[0])
        if served.serial_number == second.serial_number:
            first.verify_directly_issued_by(bundle[1])
        return True

    wait_for(bundle_trusts_both, timeout=60, what="kopf to patch the caBundle with the new CA")
    refused()
    assert not dial_errors
    after = scrape(renewing)
    assert value(after, "flaskops_webhook_certificate_expiry_timestamp_seconds") == (
        second.not_valid_after_utc.timestamp()
    )
    assert value(after, "flaskops_webhook_reviews_total", verdict="denied") >= 2
