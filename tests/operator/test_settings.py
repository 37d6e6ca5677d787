"""Operator settings from FLASKOPS_* variables: defaults, and values it could not run with refused by name."""

import pytest

from flaskops.settings import Settings, from_env


def test_defaults_without_environment():
    assert from_env({}) == Settings()


def test_values_are_read():
    cfg = from_env(
        {"FLASKOPS_WEBHOOK": "certs", "FLASKOPS_WEBHOOK_PORT": "8443", "FLASKOPS_MAX_WORKERS": "3"}
    )
    assert (cfg.webhook_mode, cfg.webhook_port, cfg.max_workers) == ("certs", 8443, 3)
    lease = from_env(
        {"FLASKOPS_LEADER_ELECTION": "true", "FLASKOPS_LEASE_NAME": "l", "FLASKOPS_LEASE_NAMESPACE": "ops"}
    )
    assert (lease.leader_election, lease.lease_name, lease.lease_namespace) == (True, "l", "ops")
    assert from_env({}).leader_election is False
    assert from_env({"FLASKOPS_ADMIN_IDLE_SECONDS": "2.5"}).admin_idle_seconds == 2.5


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FLASKOPS_WEBHOOK": "yes"}, "FLASKOPS_WEBHOOK"),
        ({"FLASKOPS_WEBHOOK_FAILURE_POLICY": "fail"}, "FLASKOPS_WEBHOOK_FAILURE_POLICY"),
        (
            {"FLASKOPS_WEBHOOK": "self", "FLASKOPS_WEBHOOK_CONFIG_NAME": "flaskops"},
            "FLASKOPS_WEBHOOK_CONFIG_NAME",
        ),
        ({"FLASKOPS_PROVISION_CONCURRENCY": "0"}, "FLASKOPS_PROVISION_CONCURRENCY"),
        ({"FLASKOPS_LEADER_ELECTION": "yes"}, "FLASKOPS_LEADER_ELECTION"),
        ({"FLASKOPS_SERVER_CHECK_SECONDS": "0.5"}, "FLASKOPS_SERVER_CHECK_SECONDS"),
        ({"FLASKOPS_ADMIN_IDLE_SECONDS": "0"}, "FLASKOPS_ADMIN_IDLE_SECONDS"),
    ],
)
def test_unusable_values_are_refused_by_name(env, named):
    with pytest.raises(ValueError, match=named):
        from_env(env)


def test_a_postgresserver_selector_is_read():
    assert from_env({}).server_selector == ""  # every PostgresServer, as before
    cfg = from_env({"FLASKOPS_POSTGRESSERVER_SELECTOR": " app.kubernetes.io/created-by=flaskops-demo "})
    assert cfg.server_selector == "app.kubernetes.io/created-by=flaskops-demo"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FLASKOPS_WEBHOOK_CERT_RENEW_BEFORE_DAYS": "400"}, "FLASKOPS_WEBHOOK_CERT_RENEW_BEFORE_DAYS"),
        ({"FLASKOPS_WEBHOOK_CERT_RENEW_BEFORE_DAYS": "0"}, "FLASKOPS_WEBHOOK_CERT_RENEW_BEFORE_DAYS"),
        ({"FLASKOPS_METRICS_PORT": "70000"}, "FLASKOPS_METRICS_PORT"),
        (
            {"FLASKOPS_WEBHOOK": "certs", "FLASKOPS_WEBHOOK_PORT": "9000", "FLASKOPS_METRICS_PORT": "9000"},
            "FLASKOPS_METRICS_PORT",
        ),
    ],
)
def test_unusable_metrics_and_certificate_values_are_refused_by_name(env, named):
    with pytest.raises(ValueError, match=named):
        from_env(env)


def test_metrics_port_zero_turns_the_endpoint_off():
    assert from_env({"FLASKOPS_METRICS_PORT": "0"}).metrics_port == 0
