"""The connection budget and the PostgresServer check against the session's real PostgreSQL: the role's
CONNECTION LIMIT as ensure_database sets it, and what probe_server reads from a server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from flaskops import ownership, serverstatus
from flaskops.postgres import server as pg
from flaskops.postgres.server import AdminAuthFailed, AdminConnection, DatabaseUnavailable
from flaskops.postgres.url import database_url
from flaskops_testbed.postgres import PostgresTarget, free_port


def _superuser(postgres: PostgresTarget) -> psycopg.Connection:
    return psycopg.connect(postgres.admin_url, autocommit=True, connect_timeout=10)


@pytest.fixture
def admin(postgres: PostgresTarget) -> AdminConnection:
    return AdminConnection(postgres.host, postgres.port, "disable", postgres.superuser, postgres.password)


@pytest.fixture
def made(postgres: PostgresTarget) -> Iterator[list[str]]:
    """Names of databases and roles (one name each) the test created; all dropped afterwards."""
    names: list[str] = []
    yield names
    with _superuser(postgres) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _new_name(made: list[str]) -> str:
    name = f"budget_{secrets.token_hex(4)}"
    made.append(name)
    return name


def _provision(admin: AdminConnection, name: str, password: str, limit: int | None) -> None:
    owner = ownership.Owner("shop", name, f"uid-{name}", "testing")
    claim = ownership.Claim(owner, name, name)
    pg.ensure_database(admin, claim, password, connection_limit=limit)


def _limit(postgres: PostgresTarget, role: str) -> int:
    with _superuser(postgres) as conn:
        row = conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    assert row is not None
    return int(row[0])


def _login(postgres: PostgresTarget, name: str, password: str) -> psycopg.Connection:
    url = database_url(postgres.host, postgres.port, name, name, password, "disable")
    return psycopg.connect(url, connect_timeout=10, autocommit=True)


def test_a_new_role_gets_the_limit_and_postgresql_refuses_the_connection_beyond_it(
    postgres: PostgresTarget, admin: AdminConnection, made: list[str]
) -> None:
    name, password = _new_name(made), pg.generate_password()

    _provision(admin, name, password, 2)

    assert _limit(postgres, name) == 2
    with (
        _login(postgres, name, password),
        _login(postgres, name, password),
        pytest.raises(psycopg.OperationalError, match="too many connections for role"),
    ):
        _login(postgres, name, password).close()
    # The slots free up with the sessions: the role is limited, not locked out.
    _login(postgres, name, password).close()


def test_the_limit_follows_the_spec_and_lowering_it_cuts_no_open_session(
    postgres: PostgresTarget, admin: AdminConnection, made: list[str]
) -> None:
    name, password = _new_name(made), pg.generate_password()
    _provision(admin, name, password, 3)
    with _login(postgres, name, password) as first, _login(postgres, name, password) as second:
        _provision(admin, name, password, 1)  # e.g. scaled down

        assert _limit(postgres, name) == 1
        # PostgreSQL checks the limit at login only: the pods already connected keep their sessions.
        assert first.execute("SELECT 1").fetchone() == (1,)
        assert second.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            _login(postgres, name, password).close()

    _provision(admin, name, password, 40)  # scaled up again
    assert _limit(postgres, name) == 40


def test_no_limit_given_leaves_the_role_as_it_is(
    postgres: PostgresTarget, admin: AdminConnection, made: list[str]
) -> None:
    name, password = _new_name(made), pg.generate_password()
    _provision(admin, name, password, None)
    assert _limit(postgres, name) == -1
    _provision(admin, name, password, 7)
    _provision(admin, name, password, None)
    assert _limit(postgres, name) == 7


def test_a_non_superuser_admin_sets_and_changes_the_limit(postgres: PostgresTarget, made: list[str]) -> None:
    # Managed PostgreSQL's admins are CREATEROLE, not superusers: ALTER ROLE ... CONNECTION LIMIT on a
    # role it created must work for them too (PostgreSQL 16 grants the creator ADMIN OPTION on it).
    admin_role, admin_password = _new_name(made), pg.generate_password()
    with _superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(admin_role), sql.Literal(admin_password)
            )
        )
    limited = AdminConnection(postgres.host, postgres.port, "disable", admin_role, admin_password)
    name, password = _new_name(made), pg.generate_password()

    _provision(limited, name, password, 5)
    _provision(limited, name, password, 9)

    assert _limit(postgres, name) == 9
    facts = pg.probe_server(limited)
    assert (facts.superuser, facts.createrole, facts.createdb) == (False, True, True)
    assert serverstatus.missing_rights(facts) == []


# --- probe_server -----------------------------------------------------------------------------------------


def test_probe_reads_version_and_connection_slots_as_the_server_reports_them(
    postgres: PostgresTarget, admin: AdminConnection
) -> None:
    facts = pg.probe_server(admin)

    with _superuser(postgres) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
            " current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int"
            " + coalesce(current_setting('reserved_connections', true)::int, 0)"
        ).fetchone()
    assert row is not None
    assert (facts.version, facts.version_num, facts.max_connections, facts.reserved_connections) == row
    assert facts.version_num >= 130000 and facts.max_connections > facts.reserved_connections > 0
    assert facts.superuser


def test_probe_tells_an_admin_without_rights_what_it_lacks(postgres: PostgresTarget, made: list[str]) -> None:
    weak_role, weak_password = _new_name(made), pg.generate_password()
    with _superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(weak_role), sql.Literal(weak_password)
            )
        )
    weak = AdminConnection(postgres.host, postgres.port, "disable", weak_role, weak_password)

    facts = pg.probe_server(weak)

    assert serverstatus.missing_rights(facts) == ["CREATEROLE"]
    cond = serverstatus.ready_condition(facts, None, "db:5432")
    assert (cond.status, cond.reason) == ("False", "AdminPermissionDenied")
    assert "CREATEROLE" in cond.message and "CREATEDB" in cond.message


def test_probe_with_a_wrong_password_is_an_auth_failure_without_the_password(
    postgres: PostgresTarget,
) -> None:
    wrong = AdminConnection(postgres.host, postgres.port, "disable", postgres.superuser, "not-the-password")
    with pytest.raises(AdminAuthFailed) as info:
        pg.probe_server(wrong)
    assert "not-the-password" not in str(info.value) + info.value.public


def test_probe_of_a_closed_port_is_unavailable() -> None:
    closed = AdminConnection("127.0.0.1", free_port(), "disable", "admin", "pw", connect_timeout=2)
    with pytest.raises(DatabaseUnavailable) as info:
        pg.probe_server(closed)
    assert not isinstance(info.value, AdminAuthFailed)
    assert "connection refused" in info.value.public
