"""Operator settings from the environment (the chart sets them; defaults suit a local run)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    # Webhook: "none" (no admission webhook), or "self" (serve it and manage the
    # ValidatingWebhookConfiguration ourselves with a self-generated CA), or "certs" (serve with mounted
    # certificates; the chart owns the configuration, e.g. through cert-manager).
    webhook_mode: str = "none"
    webhook_addr: str = "0.0.0.0"  # noqa: S104 - a pod listens on its own interface
    webhook_port: int = 9443
    webhook_host: str | None = None  # DNS name or IP the API server dials (a Service, or 127.0.0.1 locally)
    webhook_cert_dir: str = "/tmp/flaskops-webhook"  # noqa: S108 - an emptyDir in the pod
    webhook_config_name: str = "flaskops.dev"
    webhook_failure_policy: str = "Fail"
    # "self" mode: the certificate's lifetime, and how long before its expiry the operator makes a new
    # one (days; fractions allowed, which the tests use to see a renewal in seconds).
    webhook_cert_validity_days: float = 365.0
    webhook_cert_renew_before_days: float = 30.0
    # A CA bundle (PEM file): the webhook then requires a client certificate it signed — the one the
    # cluster admin gave the API server (AdmissionConfiguration, "Authenticate apiservers") — and only
    # then judges the rules that read other objects (another app's database, a namespace's labels).
    # Empty: any caller that reaches the port is anonymous, and those rules are left to reconcile.
    webhook_client_ca: str = ""
    # Prometheus /metrics (metrics.py): its own port, apart from the webhook's; 0 turns it off. 8081, not
    # 8080: the chart's liveness endpoint (kopf's) is on 8080.
    metrics_addr: str = "0.0.0.0"  # noqa: S104 - a pod listens on its own interface
    metrics_port: int = 8081
    max_workers: int = 8
    # Concurrent CREATE DATABASE statements per server: PostgreSQL serialises much of it anyway.
    provision_concurrency: int = 4
    # Seconds after its last use that the operator holds no admin connection to a PostgresServer (it keeps
    # up to provision_concurrency of them per server while provisioning: postgres/pool.py).
    admin_idle_seconds: float = 60.0
    connect_timeout: int = 5
    # Several replicas: all serve the webhook, only the holder of this Lease reconciles (the chart turns it
    # on). Off, the process reconciles at once and alone, as a single local `python -m flaskops` does.
    leader_election: bool = False
    lease_name: str = "flaskops-operator"
    lease_namespace: str = "default"
    # Seconds between checks of a healthy PostgresServer (a failing one is retried sooner, with backoff).
    server_check_seconds: float = 60.0
    # A label selector (kubectl -l syntax): the operator then sees, indexes and annotates only the
    # PostgresServers it selects. The demo sets it on a cluster it shares, so the user's servers stay untouched.
    server_selector: str = ""


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from FLASKOPS_* variables; a value the operator could not run with fails here, by name."""
    e = os.environ if env is None else env
    d = Settings()
    cfg = Settings(
        webhook_mode=e.get("FLASKOPS_WEBHOOK", d.webhook_mode),
        webhook_addr=e.get("FLASKOPS_WEBHOOK_ADDR", d.webhook_addr),
        webhook_port=int(e.get("FLASKOPS_WEBHOOK_PORT", d.webhook_port)),
        webhook_host=e.get("FLASKOPS_WEBHOOK_HOST") or d.webhook_host,
        webhook_cert_dir=e.get("FLASKOPS_WEBHOOK_CERT_DIR", d.webhook_cert_dir),
        webhook_config_name=e.get("FLASKOPS_WEBHOOK_CONFIG_NAME", d.webhook_config_name),
        webhook_failure_policy=e.get("FLASKOPS_WEBHOOK_FAILURE_POLICY", d.webhook_failure_policy),
        webhook_cert_validity_days=float(
            e.get("FLASKOPS_WEBHOOK_CERT_VALIDITY_DAYS", d.webhook_cert_validity_days)
        ),
        webhook_cert_renew_before_days=float(
            e.get("FLASKOPS_WEBHOOK_CERT_RENEW_BEFORE_DAYS", d.webhook_cert_renew_before_days)
        ),
        webhook_client_ca=e.get("FLASKOPS_WEBHOOK_CLIENT_CA", d.webhook_client_ca).strip(),
        metrics_addr=e.get("FLASKOPS_METRICS_ADDR", d.metrics_addr),
        metrics_port=int(e.get("FLASKOPS_METRICS_PORT", d.metrics_port)),
        max_workers=int(e.get("FLASKOPS_MAX_WORKERS", d.max_workers)),
        provision_concurrency=int(e.get("FLASKOPS_PROVISION_CONCURRENCY", d.provision_concurrency)),
        admin_idle_seconds=float(e.get("FLASKOPS_ADMIN_IDLE_SECONDS", d.admin_idle_seconds)),
        connect_timeout=int(e.get("FLASKOPS_CONNECT_TIMEOUT", d.connect_timeout)),
        leader_election=e.get("FLASKOPS_LEADER_ELECTION", "false").lower() == "true",
        lease_name=e.get("FLASKOPS_LEASE_NAME") or d.lease_name,
        lease_namespace=e.get("FLASKOPS_LEASE_NAMESPACE") or d.lease_namespace,
        server_check_seconds=float(e.get("FLASKOPS_SERVER_CHECK_SECONDS", d.server_check_seconds)),
        server_selector=e.get("FLASKOPS_POSTGRESSERVER_SELECTOR", d.server_selector).strip(),
    )
    if cfg.webhook_mode not in ("none", "self", "certs"):
        raise ValueError(f"FLASKOPS_WEBHOOK must be none, self or certs, not {cfg.webhook_mode!r}")
    if cfg.webhook_client_ca and not os.path.isfile(cfg.webhook_client_ca):
        raise ValueError(f"FLASKOPS_WEBHOOK_CLIENT_CA names no file: {cfg.webhook_client_ca!r}")
    if cfg.webhook_failure_policy not in ("Fail", "Ignore"):
        raise ValueError(
            f"FLASKOPS_WEBHOOK_FAILURE_POLICY must be Fail or Ignore, not {cfg.webhook_failure_policy!r}"
        )
    # kopf names each webhook "<handler id>.<configuration name>": the API server wants 3+ DNS labels.
    if cfg.webhook_mode == "self" and "." not in cfg.webhook_config_name:
        raise ValueError(
            f"FLASKOPS_WEBHOOK_CONFIG_NAME must be a domain with a dot (e.g. flaskops.dev), "
            f"not {cfg.webhook_config_name!r}"
        )
    if e.get("FLASKOPS_LEADER_ELECTION", "false").lower() not in ("true", "false"):
        raise ValueError("FLASKOPS_LEADER_ELECTION must be true or false")
    if not cfg.admin_idle_seconds > 0:
        raise ValueError("FLASKOPS_ADMIN_IDLE_SECONDS must be above 0")
    if not cfg.server_check_seconds >= 1:
        raise ValueError("FLASKOPS_SERVER_CHECK_SECONDS must be at least 1")
    if not 0 < cfg.webhook_cert_renew_before_days < cfg.webhook_cert_validity_days:
        raise ValueError(
            "FLASKOPS_WEBHOOK_CERT_RENEW_BEFORE_DAYS must be above 0 and below "
            "FLASKOPS_WEBHOOK_CERT_VALIDITY_DAYS"
        )
    if not 0 <= cfg.metrics_port <= 65535 or (
        cfg.metrics_port and cfg.webhook_mode != "none" and cfg.metrics_port == cfg.webhook_port
    ):
        raise ValueError("FLASKOPS_METRICS_PORT must be 0 (off) or a port other than the webhook's")
    if cfg.provision_concurrency < 1 or cfg.max_workers < 1:
        raise ValueError("FLASKOPS_PROVISION_CONCURRENCY and FLASKOPS_MAX_WORKERS must be at least 1")
    return cfg
