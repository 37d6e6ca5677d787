"""A periodic PostgresServer check of a healthy server sends no API request (real PostgreSQL, FakeKube)."""

from __future__ import annotations

from flaskops import servercheck
from flaskops_testbed.postgres import PostgresTarget
from tests.operator.behaviour_support import ADMIN_NS, postgres_server
from tests.operator.fake_kube import FakeKube


def _server(kube: FakeKube, postgres: PostgresTarget, password: str) -> None:
    postgres_server(kube, postgres, "reads", password=password)


def _secret_reads(kube: FakeKube) -> int:
    return sum(1 for verb, kind, _ in kube.calls if verb == "get" and kind == "Secret")


def test_the_admin_secret_is_read_once_while_postgresql_accepts_it(postgres: PostgresTarget) -> None:
    servercheck._ADMIN.clear()
    kube = FakeKube(namespaces=[ADMIN_NS])
    _server(kube, postgres, postgres.password)
    for _ in range(3):
        checked = servercheck.check(kube, "reads", [])
        assert checked is not None and checked.ready
    assert _secret_reads(kube) == 1


def test_rotated_admin_credentials_are_read_again(postgres: PostgresTarget) -> None:
    servercheck._ADMIN.clear()
    kube = FakeKube(namespaces=[ADMIN_NS])
    _server(kube, postgres, postgres.password)
    assert servercheck.check(kube, "reads", []).ready  # type: ignore[union-attr]
    # The remembered password stops working (rotated on the server and in the Secret to a wrong one here):
    # the check reads the Secret again and reports what it says now.
    servercheck._ADMIN[(ADMIN_NS, "pg-admin")] = {"username": postgres.superuser, "password": "stale"}
    kube.merge_patch(
        "Secret", ADMIN_NS, "pg-admin", {"stringData": {"password": "also-wrong"}}, manager="kubectl"
    )
    checked = servercheck.check(kube, "reads", [])
    assert checked is not None and not checked.ready
    assert _secret_reads(kube) == 2
