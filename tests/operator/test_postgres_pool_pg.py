"""The pooled admin connections (postgres/pool.py) against real PostgreSQL servers: reuse, no leaked session
state, recovery from dropped connections, rotation, idle closing, the bound on pools, errors as before."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg import sql

from flaskops import ownership
from flaskops.postgres import pool
from flaskops.postgres import server as pg
from flaskops.postgres.naming import default_names
from flaskops.postgres.server import AdminAuthFailed, AdminConnection, DatabaseUnavailable
from flaskops_testbed.postgres import LocalPostgres, PostgresTarget
from flaskops_testbed.waiting import NotYet, wait_for

IDLE_SECONDS = 0.6


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[pool.AdminPools]:
    """The operator's pools, fresh for this test (idle connections close after IDLE_SECONDS); closed after."""
    fresh = pool.AdminPools(max_size=4, max_idle=IDLE_SECONDS)
    monkeypatch.setattr(pool, "POOLS", fresh)
    yield fresh
    fresh.close()


def _superuser(target: PostgresTarget) -> psycopg.Connection:
    return psycopg.connect(target.admin_url, autocommit=True, connect_timeout=10)


class Admins:
    """Admin roles of their own (superusers), so a test counts only its own sessions; dropped afterwards
    with every database and role the test provisioned."""

    def __init__(self) -> None:
        self.made: list[tuple[PostgresTarget, str]] = []
        self.apps: list[tuple[PostgresTarget, str, str]] = []

    def __call__(self, target: PostgresTarget, *, connect_timeout: int = 5) -> AdminConnection:
        name, password = f"admin_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
        with _superuser(target) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        self.made.append((target, name))
        return AdminConnection(target.host, target.port, "disable", name, password, connect_timeout)

    def app(self, target: PostgresTarget) -> tuple[str, str]:
        dbname, role = default_names(f"ns-{secrets.token_hex(4)}", "guestbook")
        self.apps.append((target, dbname, role))
        return dbname, role

    def cleanup(self) -> None:
        for target, dbname, role in self.apps:
            with _superuser(target) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
                )
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        for target, name in self.made:
            with _superuser(target) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
                )
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def admins() -> Iterator[Admins]:
    made = Admins()
    yield made
    made.cleanup()


def _backends(target: PostgresTarget, admin: AdminConnection) -> set[int]:
    """The pids of this admin's flaskops sessions (its pooled connections)."""
    with _superuser(target) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE usename = %s AND application_name = 'flaskops'",
            (admin.username,),
        ).fetchall()
    return {row[0] for row in rows}


def _provision(admin: AdminConnection, target: PostgresTarget, admins: Admins, **kwargs: Any) -> str:
    dbname, role = admins.app(target)
    owner = ownership.Owner("shop", "guestbook", f"uid-{secrets.token_hex(3)}", "testing")
    result = pg.ensure_database(admin, ownership.Claim(owner, dbname, role), pg.generate_password(), **kwargs)
    assert result.database_created and result.role_created
    return dbname


def _wait_backends(target: PostgresTarget, admin: AdminConnection, wanted: Any, what: str) -> None:
    """Wait (30 s at most) until this admin's sessions satisfy `wanted(pids)`."""

    def seen() -> bool:
        pids = _backends(target, admin)
        if not wanted(pids):
            raise NotYet(f"pids {sorted(pids)}")
        return True

    wait_for(seen, 30, what=what, interval=0.05)


def test_provisionings_reuse_one_admin_backend(
    postgres: PostgresTarget, pools: pool.AdminPools, admins: Admins
) -> None:
    admin = admins(postgres)
    # The pool's first login is the caller's own (it proves the credentials and is closed afterwards).
    _provision(admin, postgres, admins)
    assert _backends(postgres, admin) == set()

    _provision(admin, postgres, admins)
    first = _backends(postgres, admin)
    for _ in range(3):
        _provision(admin, postgres, admins)
        pg.read_stamp(admin, "postgres")

    assert len(first) == 1 and _backends(postgres, admin) == first
    [stats] = pools.stats()
    assert stats["connections_num"] == 1 and stats["pool_size"] == 1


def test_concurrent_provisionings_hold_at_most_max_size_connections(
    postgres: PostgresTarget, pools: pool.AdminPools, admins: Admins
) -> None:
    admin = admins(postgres)
    _provision(admin, postgres, admins)

    with ThreadPoolExecutor(8) as workers:
        list(workers.map(lambda _: _provision(admin, postgres, admins), range(16)))

    [stats] = pools.stats()
    assert 1 <= stats["pool_size"] <= pools.max_size
    assert len(_backends(postgres, admin)) <= pools.max_size


def test_no_advisory_lock_outlives_its_session(
    postgres: PostgresTarget, pools: pool.AdminPools, admins: Admins
) -> None:
    admin = admins(postgres)
    _provision(admin, postgres, admins)
    _provision(admin, postgres, admins)
    [pid] = _backends(postgres, admin)

    def held() -> int:
        with _superuser(postgres) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    seen_inside: list[int] = []

    def refuse(system_id: str | None, stamp: str | None) -> None:
        seen_inside.append(held())
        raise RuntimeError("the caller refuses")

    with pytest.raises(RuntimeError, match="the caller refuses"):
        _provision(admin, postgres, admins, check=refuse)

    # The lock was held while the caller judged, on the pooled backend, and is gone after the refusal...
    assert seen_inside == [1] and _backends(postgres, admin) == {pid}
    assert held() == 0
    # ...as after a provisioning that succeeded.
    _provision(admin, postgres, admins)
    assert _backends(postgres, admin) == {pid} and held() == 0


def test_the_session_settings_are_set_on_pooled_connections(
    postgres: PostgresTarget, pools: pool.AdminPools, admins: Admins
) -> None:
    admin = dataclasses.replace(admins(postgres), statement_timeout_ms=1234)
    for _ in range(2):  # the caller's own login, then a pooled one
        with pg._admin_session(admin) as conn:
            assert conn.autocommit
            assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
            assert conn.execute("SHOW lock_timeout").fetchone() == ("10s",)


def test_a_terminated_admin_backend_does_not_fail_the_next_provisioning(
    postgres: PostgresTarget, pools: pool.AdminPools, admins: Admins
) -> None:
    admin = admins(postgres)
    _provision(admin, postgres, admins)
    _provision(admin, postgres, admins)
    [pid] = _backends(postgres, admin)
    with _superuser(postgres) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _wait_backends(postgres, admin, lambda pids: pid not in pids, "the admin backend to end")

    _provision(admin, postgres, admins)

    # Served by a new login (psycopg_pool may open a second one meanwhile: it replaces the broken
    # connection and grows for the waiting caller at once; the spare one idles out).
    after = _backends(postgres, admin)
    assert after and pid not in after


def test_a_connection_lost_mid_session_fails_that_session_only(
    postgres: PostgresTarget, pools: pool.AdminPools, admins: Admins
) -> None:
    admin = admins(postgres)
    _provision(admin, postgres, admins)
    with pytest.raises(DatabaseUnavailable) as info, pg._admin_session(admin, lock="lost") as conn:
        pid = conn.info.backend_pid
        with _superuser(postgres) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.execute("SELECT 1")

    assert admin.password not in f"{info.value} {info.value.reason}"
    _provision(admin, postgres, admins)
    assert pid not in _backends(postgres, admin)


def test_provisioning_recovers_from_a_server_restart_and_reports_the_outage(
    restartable_postgres: LocalPostgres, pools: pool.AdminPools, admins: Admins
) -> None:
    server = restartable_postgres
    admin = admins(server, connect_timeout=2)
    _provision(admin, server, admins)
    _provision(admin, server, admins)
    [before] = _backends(server, admin)

    server.restart()
    _provision(admin, server, admins)  # the broken pooled connection is replaced, not used
    after = _backends(server, admin)
    assert after and before not in after

    server.stop()
    try:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable) as info:
                _provision(admin, server, admins)
            # The pool's checkout waits connect_timeout at most, then a login of the caller's own says why.
            assert time.monotonic() - started < 2 * admin.connect_timeout + 1
            assert not isinstance(info.value, AdminAuthFailed)
            assert "connection refused" in info.value.public, info.value.public
            assert admin.password not in f"{info.value} {info.value.reason}"
    finally:
        server.start()
    _provision(admin, server, admins)


def test_a_changed_admin_password_gets_a_new_pool_and_closes_the_old_one(
    postgres: PostgresTarget, pools: pool.AdminPools, admins: Admins
) -> None:
    admin = admins(postgres)
    _provision(admin, postgres, admins)
    _provision(admin, postgres, admins)
    [old] = _backends(postgres, admin)

    rotated = dataclasses.replace(admin, password=secrets.token_urlsafe(16))
    with _superuser(postgres) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(admin.username), sql.Literal(rotated.password)
            )
        )
    _provision(rotated, postgres, admins)
    _provision(rotated, postgres, admins)

    assert len(pools) == 1
    now = _backends(postgres, admin)
    assert old not in now and len(now) == 1
    # The old password is refused now, by a login of the caller's own: AdminAuthFailed as before pooling.
    with pytest.raises(AdminAuthFailed):
        _provision(admin, postgres, admins)


def test_idle_connections_are_closed(
    postgres: PostgresTarget, pools: pool.AdminPools, admins: Admins
) -> None:
    admin = admins(postgres)
    _provision(admin, postgres, admins)
    with ThreadPoolExecutor(4) as workers:
        list(workers.map(lambda _: _provision(admin, postgres, admins), range(8)))
    assert _backends(postgres, admin)

    _wait_backends(postgres, admin, lambda pids: not pids, "no admin connection left")

    assert pools.stats()[0]["pool_size"] == 0
    _provision(admin, postgres, admins)  # and the pool still serves


def test_the_number_of_pools_is_bounded_and_an_evicted_one_is_closed(
    postgres: PostgresTarget, monkeypatch: pytest.MonkeyPatch, admins: Admins
) -> None:
    bounded = pool.AdminPools(max_size=2, max_idle=60, max_pools=2)
    monkeypatch.setattr(pool, "POOLS", bounded)
    try:
        first, *others = (admins(postgres) for _ in range(3))
        for admin in (first, first, *others):
            _provision(admin, postgres, admins)
            _provision(admin, postgres, admins)
        assert len(bounded) == 2
        assert _backends(postgres, first) == set()
        assert all(len(_backends(postgres, admin)) == 1 for admin in others)
    finally:
        bounded.close()
    assert all(_backends(postgres, admin) == set() for admin in (first, *others))


def test_a_wrong_password_on_a_new_pool_fails_at_once(
    postgres: PostgresTarget, pools: pool.AdminPools, admins: Admins
) -> None:
    admin = admins(postgres)
    wrong = dataclasses.replace(admin, password="not-the-Admin-pw")
    started = time.monotonic()

    with pytest.raises(AdminAuthFailed) as info:
        _provision(wrong, postgres, admins)

    assert time.monotonic() - started < admin.connect_timeout
    assert "not-the-Admin-pw" not in f"{info.value} {info.value.reason} {info.value.public}"


def test_configure_and_close_all_replace_and_close_the_operators_pools(
    postgres: PostgresTarget, admins: Admins
) -> None:
    before = pool.POOLS
    try:
        pool.configure(max_size=2, max_idle=30)
        assert (pool.POOLS.max_size, pool.POOLS.max_idle) == (2, 30) and pool.POOLS is not before
        admin = admins(postgres)
        _provision(admin, postgres, admins)
        _provision(admin, postgres, admins)
        assert len(_backends(postgres, admin)) == 1
        pool.close_all()
        assert _backends(postgres, admin) == set() and len(pool.POOLS) == 0
        with pytest.raises(ValueError, match="max_idle"):
            pool.AdminPools(max_idle=0)
    finally:
        pool.close_all()
        pool.POOLS = before
