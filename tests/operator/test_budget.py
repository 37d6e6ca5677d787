"""The connection budget and a PostgresServer's status, on plain data: worst cases, the server's verdict,
the Events of a transition, the check's backoff, and the admission warning."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest
import yaml

from flaskops import budget, inventory, manifests, names, serverstatus
from flaskops.kube import own_namespace
from flaskops.postgres.server import ServerFacts
from flaskops.servercheck import Scheduler
from flaskops.spec import parse_flaskapp
from flaskops.webhook import review

ROOT = Path(__file__).resolve().parents[2]
NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def app(replicas=2, workers=2, threads=4, env=(), environment="production", name="guestbook"):
    return parse_flaskapp(
        {
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "environment": environment,
                "image": "i:1",
                "replicas": replicas,
                "gunicorn": {"workers": workers, "threads": threads},
                "env": list(env),
                "database": {"server": "main"},
            },
        }
    )


def pool(size=None, overflow=None):
    env = []
    if size is not None:
        env.append({"name": "DB_POOL_SIZE", "value": str(size)})
    if overflow is not None:
        env.append({"name": "DB_MAX_OVERFLOW", "value": str(overflow)})
    return env


# --- one app's worst case --------------------------------------------------------------------------------


def test_the_issues_example_is_counted_with_the_rollout_surge_and_the_migration():
    # 20 replicas x 8 workers x (pool 5 + overflow 5), plus 5 surge pods and one migration process.
    a = app(replicas=20, workers=8, env=pool(5, 5))
    assert budget.per_process(a) == 10
    assert budget.surge(20) == 5
    assert budget.worst_case(a) == 25 * 8 * 10 + 10 == 2010
    assert budget.describe(a) == "25 pods x 8 workers x 10 + 10 = 2010"


def test_defaults_are_the_reference_apps_pool():
    # 2 replicas + 1 surge (25 % of 2, rounded up), 2 workers, 5 + 5 per process, + the migration's 10.
    assert budget.worst_case(app()) == 3 * 2 * 10 + 10 == 70


@pytest.mark.parametrize(
    ("replicas", "extra"), [(0, 0), (1, 1), (3, 1), (4, 1), (5, 2), (8, 2), (9, 3), (100, 25)]
)
def test_surge_rounds_a_quarter_up_as_kubernetes_does(replicas, extra):
    assert budget.surge(replicas) == extra


def test_a_scale_down_keeps_the_slots_of_the_pods_still_running():
    # 10 -> 2 replicas while 10 pods still run: those leaving keep their sessions for their grace period.
    a = app(replicas=2)
    assert budget.worst_case(a, running=10) == 10 * 2 * 10 + 10
    assert budget.worst_case(a, running=2) == budget.worst_case(a) == 70  # fewer running: the spec counts


def test_a_stopped_app_keeps_room_for_its_migration_only():
    assert budget.worst_case(app(replicas=0, env=pool(2, 1))) == 3


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (pool(10, 0), 10),
        (pool(1, 2), 3),
        # Not readable at admission (valueFrom) or not a number: the reference app's default counts.
        ([{"name": "DB_POOL_SIZE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}], 10),
        (pool("many"), 10),
        # SQLAlchemy's unlimited overflow: a worker cannot use more connections than it has threads.
        (pool(2, -1), 4),
        (pool(0, 0), 1),
    ],
)
def test_the_pool_comes_from_the_apps_env(env, expected):
    assert budget.per_process(app(env=env, threads=4)) == expected


def test_testing_apps_use_null_pool_so_threads_bound_them():
    # The reference app's TestingConfig opens one connection per in-flight request.
    assert budget.per_process(app(environment="testing", threads=16, env=pool(1, 0))) == 16
    assert budget.per_process(app(environment="testing", threads=2, env=pool(5, 5))) == 10


def test_the_defaults_match_the_reference_app_and_the_deployment():
    # One source of truth each: app/guestbook/config.py for the pool, manifests.py for the surge.
    tree = ast.parse((ROOT / "app" / "guestbook" / "config.py").read_text())
    defaults = {
        node.args[0].value: node.args[1].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", "") == "integer"
        and len(node.args) >= 2
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[1], ast.Constant)
    }
    assert defaults[budget.POOL_SIZE_ENV] == budget.DEFAULT_POOL_SIZE
    assert defaults[budget.MAX_OVERFLOW_ENV] == budget.DEFAULT_MAX_OVERFLOW
    strategy = manifests.deployment(app(), "i:1", "x")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxSurge"] == f"{budget.MAX_SURGE_PERCENT}%"


# --- a server's budget -----------------------------------------------------------------------------------


def test_a_servers_budget_is_max_connections_minus_reserved():
    b = budget.server_budget([70, 70], 100, 3)
    assert (b.available, b.requested, b.apps, b.exceeded) == (97, 140, 2, True)
    assert not budget.server_budget([50, 47], 100, 3).exceeded
    assert not budget.server_budget([10**6], None, None).exceeded  # unknown is not "exceeded"
    assert budget.server_budget([], 100, 3).requested == 0


# --- the server's status ---------------------------------------------------------------------------------

FACTS = ServerFacts("16.4", 160004, 100, 3, superuser=False, createrole=True, createdb=True)


def status(old=None, facts=FACTS, failure=None, worst=(70,), now=NOW, generation=1):
    return serverstatus.status(old or {}, generation, "db:5432", facts, failure, worst, now)


def cond(st, type_=names.READY):
    return next(c for c in st["conditions"] if c["type"] == type_)


def test_a_healthy_server_reports_its_facts_and_budget():
    st = status(worst=(40, 50))
    assert (cond(st)["status"], cond(st)["reason"]) == ("True", "Ready")
    assert "16.4" in cond(st)["message"]
    assert st["serverVersion"] == "16.4" and st["maxConnections"] == 100 and st["reservedConnections"] == 3
    assert st["apps"] == 2 and st["observedGeneration"] == 1
    assert st["connectionBudget"] == {"available": 97, "requestedByApps": 90}
    within = cond(st, serverstatus.WITHIN_CONNECTION_BUDGET)
    assert (within["status"], within["reason"]) == ("True", "WithinBudget")
    assert [c["type"] for c in st["conditions"]] == list(serverstatus.SERVER_CONDITIONS)


def test_apps_that_can_exceed_the_server_together_are_reported():
    st = status(worst=(70, 70))
    over = cond(st, serverstatus.WITHIN_CONNECTION_BUDGET)
    assert (over["status"], over["reason"]) == ("False", "ConnectionBudgetExceeded")
    assert "140" in over["message"] and "97" in over["message"]
    assert cond(st)["status"] == "True"  # the server itself is fine


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("secret", "AdminSecretNotFound"),
        ("auth", "AdminAuthFailed"),
        ("unreachable", "Unreachable"),
        ("refused", "ProvisioningFailed"),
    ],
)
def test_a_failed_check_names_its_reason_and_keeps_the_last_known_facts(kind, reason):
    ok = status()
    st = status(ok, facts=None, failure=serverstatus.Failure(kind, "why"), now=LATER)
    assert (cond(st)["status"], cond(st)["reason"], cond(st)["message"]) == ("False", reason, "why")
    assert cond(st)["lastTransitionTime"] == LATER
    # Admission still warns against the last max_connections the server reported.
    assert st["maxConnections"] == 100 and st["connectionBudget"]["available"] == 97


def test_a_server_never_reached_has_no_facts_and_an_unknown_budget():
    st = status(facts=None, failure=serverstatus.Failure("unreachable", "down"))
    assert "maxConnections" not in st and "connectionBudget" not in st and "serverVersion" not in st
    unknown = cond(st, serverstatus.WITHIN_CONNECTION_BUDGET)
    assert (unknown["status"], unknown["reason"]) == ("Unknown", "MaxConnectionsUnknown")
    assert st["apps"] == 1


@pytest.mark.parametrize(
    ("rights", "missing"),
    [
        ({"createrole": False}, ["CREATEROLE"]),
        ({"createdb": False}, ["CREATEDB"]),
        ({"createrole": False, "createdb": False}, ["CREATEROLE", "CREATEDB"]),
        ({"createrole": False, "createdb": False, "superuser": True}, []),
    ],
)
def test_the_admin_needs_createrole_and_createdb_or_superuser(rights, missing):
    facts = ServerFacts(
        "16.4", 160004, 100, 3, **{"superuser": False, "createrole": True, "createdb": True, **rights}
    )
    assert serverstatus.missing_rights(facts) == missing
    ready = cond(status(facts=facts))
    assert ready["reason"] == ("AdminPermissionDenied" if missing else "Ready")


def test_a_steady_state_changes_nothing_and_posts_nothing():
    first = status()
    again = status(first, now=LATER)
    assert again == first
    assert serverstatus.transition_events(first["conditions"], again["conditions"]) == []


def test_events_come_once_per_transition():
    first = status()
    events = serverstatus.transition_events([], first["conditions"])
    assert [(e.type, e.reason) for e in events] == [("Normal", "Ready"), ("Normal", "WithinBudget")]

    broken = status(first, facts=None, failure=serverstatus.Failure("auth", "refused"), now=LATER)
    events = serverstatus.transition_events(first["conditions"], broken["conditions"])
    assert [(e.type, e.reason) for e in events] == [("Warning", "AdminAuthFailed")]
    # Still broken, with another message: no new Event.
    still = status(broken, facts=None, failure=serverstatus.Failure("auth", "refused again"), now=LATER)
    assert serverstatus.transition_events(broken["conditions"], still["conditions"]) == []

    over = status(broken, worst=(70, 70), now=LATER)
    events = serverstatus.transition_events(broken["conditions"], over["conditions"])
    assert [(e.type, e.reason) for e in events] == [
        ("Normal", "Ready"),
        ("Warning", "ConnectionBudgetExceeded"),
    ]


def test_an_unknown_budget_posts_nothing():
    never = status(facts=None, failure=serverstatus.Failure("unreachable", "down"))
    events = serverstatus.transition_events([], never["conditions"])
    assert [(e.type, e.reason) for e in events] == [("Warning", "Unreachable")]


def test_checks_back_off_while_failing_and_settle_on_the_interval():
    delays = [serverstatus.next_delay(n, 60) for n in range(7)]
    assert delays == [60, 5, 10, 20, 40, 60, 60]
    assert serverstatus.next_delay(3, 15) == 15


def test_the_index_carries_the_servers_budget_and_each_apps_worst_case():
    st = status()
    assert inventory.server_entry({"host": "h"}, st)["availableConnections"] == 97
    assert inventory.server_entry({"host": "h"}, None)["availableConnections"] is None
    spec = {
        "environment": "production",
        "replicas": 4,
        "gunicorn": {"workers": 3},
        "database": {"server": "m"},
    }
    assert inventory.app_entry("shop", "a", spec, {})["connections"] == 5 * 3 * 10 + 10


# --- admission -------------------------------------------------------------------------------------------


def server(available):
    st = status(facts=ServerFacts("16.4", 160004, available + 3, 3, True, True, True))
    return {"main": inventory.server_entry({"host": "pg.internal", "environments": ["production"]}, st)}


def body(**spec):
    return {
        "metadata": {"name": "guestbook", "namespace": "shop"},
        "spec": {"environment": "production", "image": "i:1", "database": {"server": "main"}, **spec},
    }


def test_admission_warns_when_one_app_alone_exceeds_its_server():
    big = body(replicas=20, gunicorn={"workers": 8}, resources={"limits": {"cpu": "1"}})
    r = review(big, server(197), [])
    assert r.allowed
    warning = next(w for w in r.warnings if "connections" in w)
    assert "2010" in warning and "197" in warning and "25 pods x 8 workers x 10 + 10" in warning
    # What is left on the server depends on other tenants' apps: an anonymous caller is not told.
    assert not [w for w in review(big, server(197), [], authenticated=False).warnings if "connections" in w]


def test_admission_is_quiet_when_the_app_fits_or_the_server_was_never_measured():
    fits = body(replicas=2, resources={"limits": {"cpu": "1"}})
    assert not [w for w in review(fits, server(197), []).warnings if "connections" in w]
    unmeasured = {"main": inventory.server_entry({"host": "pg.internal", "environments": ["production"]})}
    big = body(replicas=20, gunicorn={"workers": 8})
    assert not [w for w in review(big, unmeasured, []).warnings if "connections" in w]


# --- the check's scheduler (threads, a plain function as the check) ---------------------------------------


def test_the_scheduler_checks_on_first_sight_and_on_a_new_generation_only():
    calls: list[str] = []
    done = threading.Semaphore(0)

    def run(name: str) -> bool:
        calls.append(name)
        done.release()
        return True

    checks = Scheduler(run, interval=3600)
    try:
        checks.seen("pg", 1)
        assert done.acquire(timeout=10)
        checks.seen("pg", 1)  # its own status write: no new check
        checks.seen("pg", 2)  # a spec change: check now
        assert done.acquire(timeout=10)
        assert not done.acquire(timeout=0.3)
        assert calls == ["pg", "pg"]
        checks.soon("pg", delay=0.05)  # an app on it changed: one check soon, two pokes share it
        checks.soon("pg", delay=0.05)
        assert done.acquire(timeout=10)
        assert not done.acquire(timeout=0.3)
        checks.soon("other", delay=0)  # never seen: its first event brings its first check
        assert not done.acquire(timeout=0.3)
        assert calls == ["pg", "pg", "pg"]
        checks.forget("pg")
        checks.seen("pg", 2)  # seen again after forget: a new server of that name
        assert done.acquire(timeout=10)
    finally:
        checks.stop()


# --- where a PostgresServer's Events go ------------------------------------------------------------------


def test_the_operators_own_namespace_comes_from_its_service_account_else_its_kubeconfig(tmp_path):
    sa = tmp_path / "namespace"
    sa.write_text("flaskops-system\n")
    assert own_namespace(str(sa)) == "flaskops-system"
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ops"}}],
                "current-context": "x",
            }
        )
    )
    missing = str(tmp_path / "no-such-file")
    assert own_namespace(missing, str(cfg)) == "ops"
    assert own_namespace(missing, missing) is None
