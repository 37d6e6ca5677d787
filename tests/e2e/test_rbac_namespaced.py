"""Role-only mode for real: the operator runs `--namespace=<watched>` with the token of a chart release
installed with operator.watchNamespace, and takes an app there to Ready with nothing but that Role, the
small ClusterRole for PostgresServers and CRDs, and `get` on the admin Secrets of the release namespace."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Apps, OperatorProcess, flaskapp

from flaskops_testbed.kube_fixtures import Kube
from tests.chart.chart_support import CHART, E2E_NAMESPACE, E2E_VALUES, fullname, sa_kubeconfig

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespaced_operator(
    kube: Kube, operator: OperatorProcess, ns: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    release = f"fo-ns-{secrets.token_hex(3)}"
    # The release lives where the PostgreSQL admin Secret is (the e2e suite's flaskops-system).
    kube.helm_run(
        "install",
        release,
        str(CHART),
        "-n",
        E2E_NAMESPACE,
        *E2E_VALUES,
        "--set",
        f"operator.watchNamespace={ns}",
        "--set",
        "rbac.aggregateToDefaultRoles=false",
        "--wait",
    )
    cfg = sa_kubeconfig(kube, E2E_NAMESPACE, fullname(release), tmp_path / "kubeconfig")
    operator.stop()  # the session's cluster-wide operator would reconcile the same app
    # The chart's args in Role-only mode: the liveness flag, then --namespace=<watched>.
    proc = OperatorProcess(cfg, tmp_path / "operator.log", args=[f"--namespace={ns}"])
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
        operator.start()
        kube.helm_run("uninstall", release, "-n", E2E_NAMESPACE, "--wait", check=False)


def test_role_only_operator_reaches_ready(
    kube: Kube, apps: Apps, ns: str, make_server: Any, namespaced_operator: OperatorProcess
) -> None:
    server = make_server(["production"])
    apps.apply(flaskapp("shop", ns, server=server, dbname=f"shop_{secrets.token_hex(3)}"))
    apps.wait(ns, "shop", "Ready", timeout=180)
    log = namespaced_operator.log_text()
    assert "Forbidden" not in log and "(403)" not in log, namespaced_operator.tail(40)
