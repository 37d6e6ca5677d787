"""A hostile tenant against the pooled admin connections (postgres/pool.py, server.py), on real PostgreSQL.

The tenant holds what its FlaskApp's `<app>-db` Secret gives it: a login as its own role on its own
database. It may run any SQL that role may: open a transaction and keep it open, lock rows of its own
role in pg_authid (ALTER ROLE CURRENT_USER PASSWORD ...), set its own role's or database's GUCs. None of
it may reach another tenant's provisioning through the admin connections the operator shares between
the apps of one PostgresServer.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from flaskops import ownership
from flaskops.postgres import pool
from flaskops.postgres import server as pg
from flaskops.postgres.naming import default_names
from flaskops.postgres.server import AdminConnection, DatabaseUnavailable
from flaskops_testbed.postgres import PostgresTarget
from flaskops_testbed.waiting import NotYet, wait_for


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[pool.AdminPools]:
    """The operator's pools, fresh for this test (one connection per server, as a gate of width 1)."""
    fresh = pool.AdminPools(max_size=1, max_idle=5.0)
    monkeypatch.setattr(pool, "POOLS", fresh)
    yield fresh
    fresh.close()


class Tenants:
    """An admin of its own (superuser) and the apps provisioned with it; all dropped afterwards."""

    def __init__(self, target: PostgresTarget) -> None:
        self.target = target
        name, password = f"admin_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
        with self._superuser() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        # The operator's defaults: statement_timeout 30 s, lock_timeout 10 s.
        self.admin = AdminConnection(target.host, target.port, "disable", name, password, 5)
        self.apps: list[tuple[str, str]] = []

    def _superuser(self) -> psycopg.Connection:
        return psycopg.connect(self.target.admin_url, autocommit=True, connect_timeout=10)

    def provision(self, namespace: str) -> tuple[ownership.Claim, str]:
        """A new app's claim and password, provisioned once (role and database exist)."""
        dbname, role = default_names(f"{namespace}-{secrets.token_hex(3)}", "guestbook")
        self.apps.append((dbname, role))
        owner = ownership.Owner(namespace, "guestbook", f"uid-{secrets.token_hex(3)}", "testing")
        claim = ownership.Claim(owner, dbname, role)
        password = pg.generate_password()
        assert pg.ensure_database(self.admin, claim, password).database_created
        return claim, password

    def login_as(self, claim: ownership.Claim, password: str) -> psycopg.Connection:
        """The tenant's own session: its role, its database (what its Secret's DATABASE_URL opens)."""
        return psycopg.connect(
            host=self.target.host,
            port=self.target.port,
            user=claim.role,
            password=password,
            dbname=claim.dbname,
            sslmode="disable",
            connect_timeout=10,
        )

    def cleanup(self) -> None:
        with self._superuser() as conn:
            for dbname, role in self.apps:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
                )
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (self.admin.username,),
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.admin.username)))


@pytest.fixture
def tenants(postgres: PostgresTarget) -> Iterator[Tenants]:
    made = Tenants(postgres)
    yield made
    made.cleanup()


def _waiting_on_a_lock(target: PostgresTarget, admin: AdminConnection) -> bool:
    with psycopg.connect(target.admin_url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'",
            (admin.username,),
        ).fetchone()
    return bool(row and row[0])


def test_a_tenant_locking_its_own_role_holds_no_admin_connection_for_the_lock_timeout(
    postgres: PostgresTarget, pools: pool.AdminPools, tenants: Tenants
) -> None:
    """Finding 2 (fixed): the write that waits on the tenant's row lock gives up after
    server.TENANT_LOCK_TIMEOUT_MS (1 s), not the session's lock_timeout (10 s); the pass fails busy."""
    claim, password = tenants.provision("mallory")
    pg.ensure_database(tenants.admin, claim, password)  # the pool's connection exists and is proven
    # Mallory keeps a transaction open that updated her own role's row (any role may change its own
    # password), then edits her FlaskApp's spec: the next provisioning pass re-applies the password.
    hostile = tenants.login_as(claim, password)
    hostile.execute("ALTER ROLE CURRENT_USER PASSWORD 'mine-now'")  # in an open transaction
    try:
        outcome: dict[str, object] = {}

        def provision_mallory() -> None:
            started = time.monotonic()
            try:
                pg.ensure_database(tenants.admin, claim, password)
            except DatabaseUnavailable as exc:
                outcome["error"] = exc
            outcome["seconds"] = time.monotonic() - started

        worker = threading.Thread(target=provision_mallory)
        worker.start()

        def blocked() -> bool:
            if not _waiting_on_a_lock(postgres, tenants.admin):
                raise NotYet("the admin session is not waiting on Mallory's lock yet")
            return True

        wait_for(blocked, 30, what="the operator waits on the tenant's row lock", interval=0.05)
        worker.join(60)
        # The pass fails (busy, retried later) — that is fine; holding the server's shared admin
        # connection for the whole lock_timeout is not: with FLASKOPS_PROVISION_CONCURRENCY apps doing
        # this, one tenant keeps every other tenant's provisioning on the server waiting.
        assert isinstance(outcome.get("error"), DatabaseUnavailable)
        assert float(outcome["seconds"]) < 3.0, f"held the admin connection {outcome['seconds']:.1f} s"
        # The failed pass left its pooled connection as every use finds it: no transaction open, the
        # short lock_timeout gone with its transaction, no advisory lock.
        [stats] = pools.stats()
        assert stats["pool_size"] == 1
        lease = pool.POOLS.lease(tenants.admin)
        try:
            assert not lease.fresh
            conn = lease.conn
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.execute("SHOW lock_timeout").fetchone() == ("10s",)
            assert conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            ).fetchone() == (0,)
        finally:
            lease.release()
    finally:
        hostile.close()


def test_a_tenants_database_and_role_settings_do_not_reach_the_admin_sessions(
    postgres: PostgresTarget, pools: pool.AdminPools, tenants: Tenants
) -> None:
    """The claim holds: what a tenant may set on its own role or database applies to its own logins, not
    to the admin's pooled connection (on the maintenance database), which keeps the operator's settings."""
    claim, password = tenants.provision("mallory")
    with tenants.login_as(claim, password) as hostile:
        hostile.autocommit = True
        # The owner of a database may set its GUCs; a role may set its own (user-settable ones).
        hostile.execute(
            sql.SQL("ALTER DATABASE {} SET lock_timeout = '1h'").format(sql.Identifier(claim.dbname))
        )
        hostile.execute("ALTER ROLE CURRENT_USER SET statement_timeout = 0")
        hostile.execute("SET search_path = pg_temp")
    other, other_password = tenants.provision("alice")
    pg.ensure_database(tenants.admin, claim, password)
    pg.ensure_database(tenants.admin, other, other_password)
    lease = pool.POOLS.lease(tenants.admin)
    try:
        conn = lease.conn
        assert conn.execute("SHOW lock_timeout").fetchone() == ("10s",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)
        assert conn.execute("SELECT current_user, session_user").fetchone() == (
            tenants.admin.username,
            tenants.admin.username,
        )
        assert conn.execute("SELECT current_database()").fetchone() == ("postgres",)
        assert conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchone() == (0,)
    finally:
        lease.release()
