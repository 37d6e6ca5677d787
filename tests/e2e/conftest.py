"""End-to-end fixtures: the CRDs applied, the operator running as a real process, PostgresServers on the
session's real PostgreSQL, and helpers to read FlaskApps the way a user does (kubectl)."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import ROOT, Apps, OperatorProcess, make_namespace
from kubernetes import client

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube
from tests.chart.chart_support import install_operator_rbac

ADMIN_NAMESPACE = "flaskops-system"
ADMIN_SECRET = "pg-admin-e2e"


@pytest.fixture(scope="session")
def crds(kube: Kube) -> None:
    """The CRDs from crds/, established."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for plural in (names.FLASKAPP_PLURAL, names.POSTGRESSERVER_PLURAL):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{plural}.{names.GROUP}", "--timeout=60s")


@pytest.fixture(scope="session")
def operator_kubeconfig(kube: Kube, crds: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kubeconfig the operator runs with: a token of the chart's ServiceAccount, so the API server
    enforces exactly the chart's RBAC on every request the operator makes in the whole suite."""
    return install_operator_rbac(kube, tmp_path_factory.mktemp("operator-sa") / "kubeconfig")


@pytest.fixture(scope="session")
def operator(
    operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the session; a test that kills it must start it again."""
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    proc = OperatorProcess(operator_kubeconfig, log_path)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(autouse=True)
def _operator_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "operator" in request.fixturenames:
        op = request.getfixturevalue("operator")
        sys.stderr.write(f"\n--- operator log (tail) ---\n{op.tail(80)}\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session")
def admin_secret(kube: Kube, postgres: Any, crds: None) -> str:
    """The PostgreSQL admin credentials, as a PostgresServer's adminSecretRef names them."""
    core = client.CoreV1Api(kube.api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ADMIN_NAMESPACE)))
    except client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=ADMIN_SECRET, namespace=ADMIN_NAMESPACE),
        string_data={"username": postgres.superuser, "password": postgres.password},
    )
    try:
        core.create_namespaced_secret(ADMIN_NAMESPACE, body)
    except client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(ADMIN_SECRET, ADMIN_NAMESPACE, body)
    return ADMIN_SECRET


@pytest.fixture
def make_server(kube: Kube, postgres: Any, admin_secret: str) -> Iterator[Callable[..., str]]:
    """Create a PostgresServer on the session's PostgreSQL; every one is deleted after the test."""
    created: list[str] = []

    def make(environments: list[str], *, host: str | None = None, port: int | None = None) -> str:
        name = f"pg-{secrets.token_hex(4)}"
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.POSTGRESSERVER_KIND,
            "metadata": {"name": name},
            "spec": {
                "host": host or postgres.host,
                "port": port or postgres.port,
                "sslMode": "disable",
                "adminSecretRef": {"namespace": ADMIN_NAMESPACE, "name": admin_secret},
                "environments": environments,
            },
        }
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
        created.append(name)
        return name

    yield make
    for name in created:
        kube.kubectl("delete", "postgresserver", name, "--ignore-not-found", "--wait=false")


@pytest.fixture
def apps(kube: Kube) -> Apps:
    return Apps(kube)


@pytest.fixture
def ns(kube: Kube) -> Iterator[str]:
    """A fresh restricted namespace whose name carries no safety token (the `namespace` fixture's names
    contain `test`, which rule S1 rightly refuses in a production database name derived from it)."""
    name = make_namespace(kube, "fa")
    yield name
    client.CoreV1Api(kube.api).delete_namespace(name, propagation_policy="Background")
