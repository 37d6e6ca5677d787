"""Credentials against the real PostgreSQL of the test session: roles, databases, stamps, failures."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg import sql

from flaskops.credentials import (
    AdminAuthFailed,
    AdminConnection,
    AdminPermissionDenied,
    DatabaseNotOwned,
    DatabaseUnavailable,
    ProvisionResult,
    _create_database,
    _create_role,
    database_url,
    default_names,
    drop_database,
    ensure_database,
    generate_password,
    read_stamp,
    stamp_for,
)
from flaskops_testbed.postgres import PostgresTarget, free_port


@pytest.fixture
def admin(postgres: PostgresTarget) -> AdminConnection:
    """The test server's admin, as a PostgresServer's admin Secret would describe it."""
    return AdminConnection(postgres.host, postgres.port, "disable", postgres.superuser, postgres.password)


def _superuser(postgres: PostgresTarget) -> psycopg.Connection:
    return psycopg.connect(postgres.admin_url, autocommit=True, connect_timeout=10)


def _forget(postgres: PostgresTarget, dbname: str, role: str) -> None:
    with _superuser(postgres) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


class AppNames:
    """Hands out unique (dbname, role) pairs and remembers them, so the test leaves nothing behind."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []

    def __call__(self) -> tuple[str, str]:
        return self.add(*default_names(f"ns-{secrets.token_hex(4)}", "guestbook"))

    def add(self, dbname: str, role: str) -> tuple[str, str]:
        self.made.append((dbname, role))
        return dbname, role


@pytest.fixture
def app_names(postgres: PostgresTarget) -> Iterator[AppNames]:
    """Unique names, derived as the operator derives them; every database and role dropped afterwards."""
    names = AppNames()
    yield names
    for dbname, role in names.made:
        _forget(postgres, dbname, role)


def test_names_that_need_quoting_are_quoted_everywhere(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    suffix = secrets.token_hex(3)
    dbname, role = f'Shop "{suffix}"; DROP DATABASE postgres; --', f"O'Brien {suffix}"
    app_names.add(dbname, role)
    password = 'it\'s a \\ "quoted" pass; --'

    result = ensure_database(admin, dbname, role, password, "testing", set_password=True)

    assert result.database_created and result.role_created and result.stamp == "testing"
    with _login(postgres, dbname, role, password) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (role, dbname)
    drop_database(admin, dbname, role)
    assert _exists(postgres, dbname, role) == (False, False)
    assert _exists(postgres, "postgres", "postgres") == (True, True)


def _login(postgres: PostgresTarget, dbname: str, role: str, password: str) -> psycopg.Connection:
    """Log in over TCP with the URL the operator writes into the Secret."""
    url = database_url(postgres.host, postgres.port, dbname, role, password, "disable")
    return psycopg.connect(url, connect_timeout=10, autocommit=True)


def _role_attributes(postgres: PostgresTarget, role: str) -> dict[str, object]:
    with _superuser(postgres) as conn:
        cur = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolreplication, rolbypassrls,"
            " rolcanlogin, rolpassword FROM pg_authid WHERE rolname = %s",
            (role,),
        )
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        return {column.name: value for column, value in zip(cur.description, row, strict=True)}


def _exists(postgres: PostgresTarget, dbname: str, role: str) -> tuple[bool, bool]:
    with _superuser(postgres) as conn:
        db = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        rl = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return db is not None, rl is not None


def test_role_logs_in_over_tcp_and_owns_its_database(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    password = generate_password()

    result = ensure_database(admin, dbname, role, password, "production", set_password=False)

    assert result.role_created and result.database_created and result.stamped
    assert result.stamp == "production" and result.owner == role and result.changed
    with _login(postgres, dbname, role, password) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), pg_get_userbyid(datdba) FROM pg_database"
            " WHERE datname = current_database()"
        ).fetchone()
        assert row == (role, dbname, role)
        # What `flask db upgrade` needs: DDL in the public schema.
        conn.execute("CREATE TABLE alembic_probe (id int PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_probe VALUES (1)")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _login(postgres, dbname, role, password + "x")
    with _superuser(postgres) as conn:
        comment = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname,)
        ).fetchone()
    assert comment == (stamp_for("production"),)


def test_role_is_not_privileged_and_cannot_reach_another_apps_database(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    (db_a, role_a), (db_b, role_b) = app_names(), app_names()
    password_a = generate_password()
    ensure_database(admin, db_a, role_a, password_a, "testing", set_password=False)
    ensure_database(admin, db_b, role_b, generate_password(), "testing", set_password=False)

    attributes = _role_attributes(postgres, role_a)
    assert attributes["rolcanlogin"] is True
    for flag in ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls"):
        assert attributes[flag] is False, flag
    with _superuser(postgres) as conn:
        # INHERIT is harmless because the role belongs to no other role (pg_database_owner is implicit).
        member_of = conn.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s",
            (role_a,),
        ).fetchone()
    assert member_of == (0,)
    # The server stores a SCRAM verifier; the plain password never reached it.
    stored = str(attributes["rolpassword"])
    assert stored.startswith("SCRAM-SHA-256$") and password_a not in stored

    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        _login(postgres, db_b, role_a, password_a)


def test_second_call_changes_nothing_and_keeps_the_password_unless_asked(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    first, second = generate_password(), generate_password()
    ensure_database(admin, dbname, role, first, "development", set_password=False)

    again = ensure_database(admin, dbname, role, second, "development", set_password=False)

    assert not again.changed
    assert (again.stamp, again.owner) == ("development", role)
    _login(postgres, dbname, role, first).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _login(postgres, dbname, role, second)

    rotated = ensure_database(admin, dbname, role, second, "development", set_password=True)

    assert rotated.password_set and not (rotated.role_created or rotated.database_created or rotated.stamped)
    _login(postgres, dbname, role, second).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _login(postgres, dbname, role, first)


def test_a_foreign_stamp_is_reported_and_never_overwritten(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    password = generate_password()
    ensure_database(admin, dbname, role, password, "testing", set_password=False)

    result = ensure_database(admin, dbname, role, generate_password(), "production", set_password=True)

    assert result.stamp == "testing"
    assert not result.changed  # refused before touching anything, the password included
    assert read_stamp(admin, dbname) == "testing"
    _login(postgres, dbname, role, password).close()
    # Nor may the other environment's deletion take the database with it.
    with pytest.raises(DatabaseNotOwned, match="stamped for environment 'testing'") as info:
        drop_database(admin, dbname, role, environment="production")
    assert info.value.condition_reason == "DatabaseOwnedElsewhere"
    assert _exists(postgres, dbname, role) == (True, True)


def test_a_persons_comment_is_kept_beside_the_stamp(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    with _superuser(postgres) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(role))
        )
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS 'legacy shop data'").format(sql.Identifier(dbname)))

    result = ensure_database(admin, dbname, role, generate_password(), "production", set_password=True)

    assert result.stamped and result.stamp == "production" and not result.database_created
    with _superuser(postgres) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname,)
        ).fetchone()
    assert row is not None and row[0].splitlines()[0] == "legacy shop data"
    assert read_stamp(admin, dbname) == "production"


def test_a_database_owned_by_another_role_is_reported_and_left_alone(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    _, other = app_names()
    with _superuser(postgres) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(other)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(other))
        )

    result = ensure_database(admin, dbname, role, generate_password(), "testing", set_password=False)

    assert result.owner == other and result.stamp is None and not result.changed
    assert read_stamp(admin, dbname) is None
    with pytest.raises(DatabaseNotOwned, match="refusing to drop"):
        drop_database(admin, dbname, role)
    assert _exists(postgres, dbname, other) == (True, True)


def test_drop_removes_database_and_role_even_when_connected_and_is_idempotent(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    password = generate_password()
    ensure_database(admin, dbname, role, password, "testing", set_password=False)
    app_session = _login(postgres, dbname, role, password)  # the app's pool, still open

    drop_database(admin, dbname, role, environment="testing")

    assert _exists(postgres, dbname, role) == (False, False)
    with pytest.raises(psycopg.OperationalError):
        app_session.execute("SELECT 1")
    app_session.close()
    drop_database(admin, dbname, role)  # nothing left: a no-op, not an error
    assert read_stamp(admin, dbname) is None


def test_unreachable_server_fails_fast_without_passwords(admin: AdminConnection) -> None:
    closed = AdminConnection("127.0.0.1", free_port(), "disable", "postgres", "admin-Secret-Pw")
    app_password = generate_password()
    started = time.monotonic()

    with pytest.raises(DatabaseUnavailable) as info:
        ensure_database(closed, "shop__gb", "shop__gb", app_password, "testing", set_password=True)

    assert time.monotonic() - started < 3
    assert not isinstance(info.value, AdminAuthFailed)
    assert info.value.condition_reason == "DatabaseUnavailable"
    message = f"{info.value} {info.value.reason} {info.value!r}"
    assert "refused" in message.lower()
    assert "admin-Secret-Pw" not in message and app_password not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_server_that_never_answers_times_out(admin: AdminConnection) -> None:
    with socket.socket() as listener:
        # Accepts TCP connections (the kernel's backlog) but never speaks the protocol.
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        silent = AdminConnection("127.0.0.1", listener.getsockname()[1], "disable", "postgres", "pw", 2)
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="timeout"):
            read_stamp(silent, "anything")
        assert time.monotonic() - started < 10


def test_wrong_admin_password_is_an_auth_failure(admin: AdminConnection) -> None:
    wrong = AdminConnection(admin.host, admin.port, "disable", admin.username, "not-the-Admin-pw")

    with pytest.raises(AdminAuthFailed) as info:
        ensure_database(wrong, "shop__gb", "shop__gb", generate_password(), "testing", set_password=False)

    assert isinstance(info.value, DatabaseUnavailable)
    assert info.value.condition_reason == "AdminAuthFailed"
    assert "not-the-Admin-pw" not in str(info.value)
    assert "admin Secret" in str(info.value)


def test_two_operators_provisioning_the_same_app_at_once_both_succeed(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    password = generate_password()
    start = threading.Barrier(4)

    def provision(_: int) -> ProvisionResult:
        start.wait()
        return ensure_database(admin, dbname, role, password, "testing", set_password=False)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(provision, range(4)))

    assert sum(r.role_created for r in results) == 1
    assert sum(r.database_created for r in results) == 1
    assert all(r.stamp == "testing" for r in results)
    _login(postgres, dbname, role, password).close()


def test_losing_a_create_race_is_not_an_error(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    # What a concurrent CREATE looks like to the loser, whoever the winner was (another tool, a DBA).
    dbname, role = app_names()
    ensure_database(admin, dbname, role, generate_password(), "testing", set_password=False)
    with _superuser(postgres) as conn:
        assert _create_role(conn, role, generate_password()) is False
        assert _create_database(conn, dbname, role) is False


def test_a_non_superuser_admin_with_createrole_and_createdb_can_provision_and_drop(
    postgres: PostgresTarget, app_names: AppNames
) -> None:
    # Managed PostgreSQL (RDS, Cloud SQL, Azure) hands out admins like this one, never superusers.
    dbname, role = app_names()
    _, admin_role = app_names()
    admin_password = generate_password()
    with _superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(admin_role), sql.Literal(admin_password)
            )
        )
    limited = AdminConnection(postgres.host, postgres.port, "disable", admin_role, admin_password)
    password = generate_password()

    result = ensure_database(limited, dbname, role, password, "testing", set_password=False)

    assert result.role_created and result.database_created and result.stamp == "testing"
    with _login(postgres, dbname, role, password) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    drop_database(limited, dbname, role)
    assert _exists(postgres, dbname, role) == (False, False)


def test_an_admin_without_createrole_is_told_what_it_lacks(
    postgres: PostgresTarget, app_names: AppNames
) -> None:
    dbname, role = app_names()
    _, admin_role = app_names()
    admin_password = generate_password()
    with _superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(admin_role), sql.Literal(admin_password)
            )
        )
    weak = AdminConnection(postgres.host, postgres.port, "disable", admin_role, admin_password)

    with pytest.raises(AdminPermissionDenied, match="CREATEROLE") as info:
        ensure_database(weak, dbname, role, generate_password(), "testing", set_password=False)

    assert info.value.condition_reason == "AdminPermissionDenied"
    assert admin_password not in str(info.value)
    assert _exists(postgres, dbname, role) == (False, False)
