"""A PostgresServer's status on the testbed: the operator checks the server (wrong admin password ->
AdminAuthFailed, fixed -> Ready) with one Event per transition, and reports the connection budget of the
apps on it (with the role's CONNECTION LIMIT and the admission warning)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from e2e_support import Apps, OperatorProcess, flaskapp
from kubernetes import client
from test_tenancy import (  # noqa: F401  (fixtures)
    forget,
    pg_server,
    superuser,
)
from test_webhook import legacy_namespace, webhook  # noqa: F401

from flaskops import budget, names
from flaskops.spec import parse_flaskapp
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e

ADMIN_NAMESPACE = "flaskops-system"


def server_status(kube: Kube, name: str) -> dict[str, Any]:
    out = kube.kubectl("get", "postgresserver", name, "-o", "json").stdout
    return dict(json.loads(out).get("status") or {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def wait_server(kube: Kube, name: str, type_: str, reason: str, timeout: float = 90) -> dict[str, Any]:
    def reached() -> dict[str, Any]:
        st = server_status(kube, name)
        cond = condition(st, type_)
        if cond.get("reason") != reason:
            raise NotYet(f"{type_}={cond.get('status')}/{cond.get('reason')}: {cond.get('message')}")
        return st

    return wait_for(reached, timeout=timeout, what=f"PostgresServer {name} {type_} reason {reason}")


def server_events(kube: Kube, name: str) -> list[tuple[str, str]]:
    """(type, reason) of every Event on the PostgresServer, oldest first, in whatever namespace."""
    out = kube.kubectl(
        "get",
        "events",
        "-A",
        "--field-selector",
        f"involvedObject.name={name},involvedObject.kind={names.POSTGRESSERVER_KIND}",
        "-o",
        "json",
    ).stdout
    items = sorted(
        json.loads(out)["items"], key=lambda e: e.get("eventTime") or e.get("firstTimestamp") or ""
    )
    return [(e["type"], e["reason"]) for e in items for _ in range(int(e.get("count") or 1))]


def failed_checks(operator: OperatorProcess, name: str) -> int:
    return sum(
        1
        for line in operator.log_text().splitlines()
        if "postgresserver check failed" in line and f'"postgresserver": "{name}"' in line
    )


def test_a_wrong_admin_password_is_reported_once_and_a_fixed_one_makes_the_server_ready(
    kube: Kube,
    pg_server: Any,  # noqa: F811
    postgres: Any,
    operator: OperatorProcess,
) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    server = pg_server(["development", "testing"], password=wrong)

    st = wait_server(kube, server, names.READY, "AdminAuthFailed")
    # Checked by the operator's own timer, not a kopf daemon: no finalizer holds the server's deletion.
    meta = json.loads(kube.kubectl("get", "postgresserver", server, "-o", "json").stdout)["metadata"]
    assert not meta.get("finalizers"), meta
    ready = condition(st, names.READY)
    assert ready["status"] == "False" and f"{ADMIN_NAMESPACE}/{server}" in ready["message"]
    assert wrong not in json.dumps(st)
    assert st["observedGeneration"] >= 1 and st["apps"] == 0
    budget_cond = condition(st, "WithinConnectionBudget")
    assert (budget_cond["status"], budget_cond["reason"]) == ("Unknown", "MaxConnectionsUnknown")
    # The printer columns a cluster admin reads.
    row = kube.kubectl("get", "postgresserver", server, "--no-headers").stdout.split()
    assert row[4:6] == ["False", "AdminAuthFailed"], row
    # The failing server is checked again (backoff 5 s, 10 s, ...), and a repeated failure posts nothing.
    wait_for(lambda: failed_checks(operator, server) >= 2, timeout=60, what="a second failed check")

    client.CoreV1Api(kube.api).patch_namespaced_secret(
        server, ADMIN_NAMESPACE, {"stringData": {"password": postgres.password}}
    )

    st = wait_server(kube, server, names.READY, "Ready", timeout=60)
    with superuser(postgres) as conn:
        row_ = conn.execute("SHOW max_connections").fetchone()
        version = conn.execute("SHOW server_version").fetchone()
    assert row_ is not None and version is not None
    assert st["maxConnections"] == int(row_[0]) and st["serverVersion"] == version[0]
    assert st["connectionBudget"] == {
        "available": st["maxConnections"] - st["reservedConnections"],
        "requestedByApps": 0,
    }
    assert condition(st, "WithinConnectionBudget")["reason"] == "WithinBudget"
    wait_for(
        lambda: ("Normal", "WithinBudget") in server_events(kube, server),
        timeout=30,
        what="the budget's Event",
    )
    # One Event per transition, however many checks ran: Ready and the budget may post in either order.
    assert sorted(server_events(kube, server)) == [
        ("Normal", "Ready"),
        ("Normal", "WithinBudget"),
        ("Warning", "AdminAuthFailed"),
    ]
    row = kube.kubectl("get", "postgresserver", server, "--no-headers").stdout.split()
    assert row[4:8] == ["True", "Ready", "0", version[0].split()[0]], row


@pytest.mark.usefixtures("webhook")
def test_the_connection_budget_limits_the_role_warns_at_admission_and_shows_on_the_server(
    kube: Kube,
    pg_server: Any,  # noqa: F811
    postgres: Any,
    apps: Apps,
    ns: str,
) -> None:
    server = pg_server(["development", "testing"])
    st = wait_server(kube, server, names.READY, "Ready")
    available = st["connectionBudget"]["available"]
    dbname = f"budget_{secrets.token_hex(3)}"
    # One replica whose pool alone is larger than the whole server.
    big = flaskapp(
        "big",
        ns,
        server=server,
        environment="testing",
        dbname=dbname,
        replicas=1,
        env=[{"name": "DB_POOL_SIZE", "value": str(available)}],
    )
    worst = budget.worst_case(parse_flaskapp(big))
    assert worst > available
    try:
        out = apps.apply(big)
        assert "Warning:" in out.stderr and f"may open {worst} connections" in out.stderr, out.stderr
        apps.wait_reason(ns, "big", names.DATABASE_READY, "Provisioned", timeout=180)
        with superuser(postgres) as conn:
            row = conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (dbname,)).fetchone()
        assert row == (worst,)

        st = wait_server(kube, server, "WithinConnectionBudget", "ConnectionBudgetExceeded", timeout=60)
        assert st["apps"] == 1
        assert st["connectionBudget"] == {"available": available, "requestedByApps": worst}
        assert condition(st, names.READY)["status"] == "True"
        wait_for(
            lambda: ("Warning", "ConnectionBudgetExceeded") in server_events(kube, server),
            timeout=30,
            what="the ConnectionBudgetExceeded Event",
        )

        # A small pool: the limit follows the spec, and the server is within budget again.
        shrunk = {**big, "spec": {**big["spec"], "env": [{"name": "DB_POOL_SIZE", "value": "1"}]}}
        apps.apply(shrunk)
        small = budget.worst_case(parse_flaskapp(shrunk))
        assert small < available

        def limited(expected: int) -> Callable[[], bool]:
            def check() -> bool:
                with superuser(postgres) as conn:
                    got = conn.execute(
                        "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (dbname,)
                    ).fetchone()
                if got != (expected,):
                    raise NotYet(f"rolconnlimit {got}, want {expected}")
                return True

            return check

        wait_for(limited(small), timeout=90, what="the lowered CONNECTION LIMIT")
        st = wait_server(kube, server, "WithinConnectionBudget", "WithinBudget", timeout=60)
        assert st["connectionBudget"]["requestedByApps"] == small
        assert server_events(kube, server).count(("Warning", "ConnectionBudgetExceeded")) == 1

        # An autoscaler scales through the scale subresource (spec.replicas): the limit follows it.
        kube.kubectl("scale", "flaskapp", "big", "-n", ns, "--replicas=6")
        scaled = budget.worst_case(parse_flaskapp({**shrunk, "spec": {**shrunk["spec"], "replicas": 6}}))
        assert scaled > small
        wait_for(limited(scaled), timeout=90, what="the CONNECTION LIMIT after a scale-up")

        # Scaled down while 6 pods run: the limit keeps their slots (the leaving pods' sessions stay open
        # for their grace period while the others take over the load).
        def six_running() -> bool:
            got = (apps.get(ns, "big").get("status") or {}).get("replicas")
            if got != 6:
                raise NotYet(f"status.replicas {got}")
            return True

        wait_for(six_running, timeout=120, what="six pods of the app")
        kube.kubectl("scale", "flaskapp", "big", "-n", ns, "--replicas=1")
        down = parse_flaskapp({**shrunk, "spec": {**shrunk["spec"], "replicas": 1}})
        assert budget.worst_case(down, running=6) < scaled
        wait_for(limited(budget.worst_case(down, running=6)), timeout=90, what="the limit after a scale-down")
    finally:
        kube.kubectl("delete", "flaskapp", "big", "-n", ns, "--ignore-not-found", "--timeout=90s")
        forget(postgres, dbname)
