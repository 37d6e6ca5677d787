"""The validating webhook for real: the API server calls the operator (served on loopback with a CA
bundle) through the chart's own ValidatingWebhookConfiguration, and `kubectl apply` shows the verdict.

The operator here runs as the chart's ServiceAccount in "certs" mode, as the chart runs it; only the
address differs (https://127.0.0.1:<port> instead of the chart's Service, which simulated pods cannot
back). The session's webhook-less operator is stopped for this module and started again afterwards, and
the ValidatingWebhookConfiguration is deleted, so later tests can create unsafe apps to test reconcile.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import DENIED, Apps, OperatorProcess, flaskapp, free_port
from e2e_support import chart_webhook_configuration as _chart_webhook_configuration
from kubernetes import client

from flaskops import certs, names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e

CONFIG_NAME = "flaskops-e2e-webhook"
ADMIN_NAMESPACE = "flaskops-system"  # where conftest.admin_secret puts the PostgreSQL admin Secret


def chart_webhook_configuration(url: str, ca: bytes) -> dict[str, Any]:
    return _chart_webhook_configuration(url, ca, CONFIG_NAME)


LEGACY = "legacy"


@pytest.fixture(scope="module")
def legacy_namespace(kube: Kube, postgres: Any, admin_secret: str) -> Iterator[str]:
    """A namespace for an unsafe app created before the webhook existed (S1, deletionPolicy Delete)."""
    name = f"wh-{secrets.token_hex(4)}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
    kube.kubectl("delete", "postgresserver", name, "--wait=false", "--ignore-not-found")


def create_legacy_app(kube: Kube, ns: str, postgres: Any, admin_secret: str) -> None:
    server = {
        "apiVersion": names.API_VERSION,
        "kind": names.POSTGRESSERVER_KIND,
        "metadata": {"name": ns},
        "spec": {
            "host": postgres.host,
            "port": postgres.port,
            "sslMode": "disable",
            "adminSecretRef": {"namespace": ADMIN_NAMESPACE, "name": admin_secret},
            "environments": ["development"],
        },
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(server))
    app = flaskapp(
        LEGACY,
        ns,
        server=ns,
        environment="development",
        dbname=f"legacy_test_{secrets.token_hex(2)}",
        database={"deletionPolicy": "Delete"},
    )
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(app))


@pytest.fixture(scope="module")
def webhook(
    kube: Kube,
    operator: OperatorProcess,
    operator_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
    legacy_namespace: str,
    postgres: Any,
    admin_secret: str,
) -> Iterator[OperatorProcess]:
    """An operator serving the webhook on 127.0.0.1, and the chart's configuration pointing at it."""
    tmp = tmp_path_factory.mktemp("webhook")
    ca, _, _ = certs.generate(tmp / "certs", ["127.0.0.1"])
    client_dir = kube.webhook_client_dir
    operator.stop()
    # A port picked free can be taken before the operator binds it (other processes of the session pick
    # theirs the same way): pick again, at most three times, rather than fail the whole module.
    for attempt in range(3):
        port = free_port()
        env = {
            "FLASKOPS_WEBHOOK": "certs",
            "FLASKOPS_WEBHOOK_ADDR": "127.0.0.1",
            "FLASKOPS_WEBHOOK_HOST": "127.0.0.1",
            "FLASKOPS_WEBHOOK_PORT": str(port),
            "FLASKOPS_WEBHOOK_CERT_DIR": str(tmp / "certs"),
        }
        if client_dir is not None:
            # As a cluster admin sets it up: the API server presents a client certificate, the webhook
            # requires one (and then judges the rules that read other namespaces' objects).
            env["FLASKOPS_WEBHOOK_CLIENT_CA"] = str(client_dir / "ca.crt")
        served = OperatorProcess(operator_kubeconfig, tmp / f"operator-{attempt}.log", extra_env=env)
        try:
            served.start()
            break
        except RuntimeError as exc:
            if "address already in use" not in str(exc) or attempt == 2:
                operator.start()
                raise
    try:

        def tls_up() -> bool:
            ctx = ssl.create_default_context(cafile=str(ca))
            if client_dir is not None:
                ctx.load_cert_chain(client_dir / "client.crt", client_dir / "client.key")
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return True

        wait_for(tls_up, timeout=60, what="the webhook's TLS endpoint")
        # Before the configuration exists: an unsafe app the webhook would have refused (say, made while
        # the operator was down under failurePolicy Ignore). The operator adds its finalizer now.
        create_legacy_app(kube, legacy_namespace, postgres, admin_secret)
        wait_for(
            lambda: (
                names.FINALIZER
                in (Apps(kube).get(legacy_namespace, LEGACY)["metadata"].get("finalizers") or [])
            ),
            timeout=60,
            what="the operator's finalizer on the legacy app",
        )
        vwc = chart_webhook_configuration(f"https://127.0.0.1:{port}", ca.read_bytes())
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(vwc))
        yield served
    finally:
        kube.kubectl("delete", "validatingwebhookconfiguration", CONFIG_NAME, "--ignore-not-found")
        served.stop()
        operator.start()


def apply(kube: Kube, body: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return kube.kubectl("apply", *extra, "-f", "-", input=yaml.safe_dump(body), check=False)


def http_status_of_create(kube: Kube, body: dict[str, Any]) -> int:
    api = client.CustomObjectsApi(kube.api)
    try:
        api.create_namespaced_custom_object(
            names.GROUP,
            names.VERSION,
            body["metadata"]["namespace"],
            names.FLASKAPP_PLURAL,
            body,
            dry_run="All",
        )
    except client.exceptions.ApiException as exc:
        return int(exc.status)
    return 201


def refused(kube: Kube, body: dict[str, Any], rule: str) -> str:
    """Apply until the webhook's indexes know the server/apps involved; the refusal's stderr."""

    def attempt() -> str:
        out = apply(kube, body, "--dry-run=server")
        if out.returncode == 0 or rule not in out.stderr:
            raise NotYet(f"not refused with {rule} yet: rc={out.returncode} {out.stderr.strip()}")
        return out.stderr

    wait_for(attempt, timeout=60, what=f"the webhook to refuse with {rule}")
    out = apply(kube, body)  # and for real, exactly as a user types it
    assert out.returncode != 0, out.stdout
    return out.stderr


@pytest.mark.parametrize(
    ("environment", "server_envs", "dbname", "rule"),
    [
        ("production", ["production"], "shop_test", "S1"),
        ("production", ["production"], "shop_staging", "S2"),
        ("development", ["development"], "shop_prod", "S3"),
        ("development", ["production"], "shop_main", "S4"),
    ],
)
@pytest.mark.usefixtures("webhook")
def test_unsafe_pairing_refused_at_apply(
    kube: Kube,
    ns: str,
    make_server: Any,
    environment: str,
    server_envs: list[str],
    dbname: str,
    rule: str,
) -> None:
    server = make_server(server_envs)
    body = flaskapp(
        "bad", ns, server=server, environment=environment, dbname=f"{dbname}_{secrets.token_hex(2)}"
    )
    stderr = refused(kube, body, rule)
    assert DENIED in stderr and f"{rule}: " in stderr and "unsafe FlaskApp" in stderr, stderr
    # HTTP 403 from the webhook, not 500 (an unhandled error): what a client library sees.
    assert http_status_of_create(kube, body) == 403
    assert kube.kubectl("get", "flaskapp", "bad", "-n", ns, check=False).returncode != 0


@pytest.mark.usefixtures("webhook")
def test_second_environment_on_one_database_refused(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["development", "testing"])
    shared = f"shared_{secrets.token_hex(3)}"
    first = apps.apply(flaskapp("first", ns, server=server, environment="testing", dbname=shared))
    assert first.returncode == 0
    stderr = refused(
        kube, flaskapp("second", ns, server=server, environment="development", dbname=shared), "S5"
    )
    # The tenant learns the environment in the way, never the other app or its namespace.
    assert DENIED in stderr and "another environment" in stderr and f"{ns}/first" not in stderr


@pytest.mark.usefixtures("webhook")
def test_production_delete_policy_refused(kube: Kube, ns: str, make_server: Any) -> None:
    server = make_server(["production"])
    body = flaskapp("prod", ns, server=server, database={"deletionPolicy": "Delete"})
    out = apply(kube, body)
    assert out.returncode != 0 and "Delete" in out.stderr, out.stderr


@pytest.mark.usefixtures("webhook")
def test_a_statement_timeout_not_below_the_worker_timeout_is_refused(
    kube: Kube, ns: str, make_server: Any
) -> None:
    server = make_server(["production"])
    short = {"workers": 2, "threads": 1, "timeout": 5, "gracefulTimeout": 5}
    body = flaskapp(
        "slow", ns, server=server, gunicorn=short, env=[{"name": "DB_STATEMENT_TIMEOUT_MS", "value": "15000"}]
    )
    stderr = refused(kube, body, "TimeoutsContradict")
    assert "DB_STATEMENT_TIMEOUT_MS=15000" in stderr and "spec.gunicorn.timeout=5" in stderr, stderr
    body["spec"]["env"] = [{"name": "DB_STATEMENT_TIMEOUT_MS", "value": "4000"}]
    out = apply(kube, body, "--dry-run=server")
    assert out.returncode == 0, out.stderr


@pytest.mark.usefixtures("webhook")
def test_risky_but_allowed_spec_shows_warnings(kube: Kube, ns: str, make_server: Any) -> None:
    server = make_server(["production"])
    body = flaskapp("lean", ns, server=server, replicas=1)
    del body["spec"]["resources"]

    def warned() -> str:
        out = apply(kube, body, "--dry-run=server")
        assert out.returncode == 0, out.stderr
        if "Warning:" not in out.stderr:
            raise NotYet("no warnings yet")
        return out.stderr

    wait_for(warned, timeout=60, what="the webhook's warnings")
    out = apply(kube, body)
    assert out.returncode == 0, out.stderr
    assert "Warning: spec.replicas below 2 in production" in out.stderr
    assert "Warning: spec.resources is empty" in out.stderr


@pytest.mark.usefixtures("webhook")
def test_safe_app_passes_and_an_unsafe_change_is_refused(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["production"])
    body = flaskapp("good", ns, server=server, dbname=f"shop_{secrets.token_hex(3)}")
    out = apply(kube, body)
    assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr
    apps.wait(ns, "good", "Ready", timeout=180)

    # A change into an environment the server does not admit is refused; the app keeps its spec.
    changed = yaml.safe_load(yaml.safe_dump(body))
    changed["spec"]["environment"] = "development"
    stderr = refused(kube, changed, "S4")
    assert DENIED in stderr
    assert apps.get(ns, "good")["spec"]["environment"] == "production"
    assert apps.condition(ns, "good", names.READY)["status"] == "True"


@pytest.mark.usefixtures("webhook")
def test_app_that_predates_the_webhook_can_be_labelled_and_deleted(
    kube: Kube, apps: Apps, legacy_namespace: str
) -> None:
    """Only spec changes are judged: metadata updates and the finalizer's release of an unsafe app pass."""
    ns = legacy_namespace
    cond = apps.wait_reason(ns, LEGACY, names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing")
    assert "S1" in cond["message"]
    kube.kubectl("label", "flaskapp", LEGACY, "-n", ns, "team=blue")
    body = apps.get(ns, LEGACY)
    body["spec"]["replicas"] = 3
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "finalizers"):
        body["metadata"].pop(key, None)
    body.pop("status", None)
    out = apply(kube, body)
    assert out.returncode != 0 and DENIED in out.stderr and "S1" in out.stderr, out.stderr
    # The operator's finalizer comes off through the webhook: deletion does not hang.
    kube.kubectl("delete", "flaskapp", LEGACY, "-n", ns, "--timeout=90s", timeout=120)
