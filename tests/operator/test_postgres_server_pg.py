"""Credentials against the real PostgreSQL of the test session: roles, databases, stamps, failures."""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg import sql

from flaskops import ownership
from flaskops.postgres import server as pg
from flaskops.postgres.naming import default_names, stamp_for
from flaskops.postgres.server import (
    AdminAuthFailed,
    AdminConnection,
    AdminPermissionDenied,
    DatabaseUnavailable,
    NotOwned,
    ProvisionResult,
    _create_database,
    _create_role,
    _scram_verifier,
    generate_password,
    read_stamp,
)
from flaskops.postgres.url import database_url
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


def _owner(environment: str = "testing", *, uid: str = "uid-1", namespace: str = "shop") -> ownership.Owner:
    return ownership.Owner(namespace, "guestbook", uid, environment)


def ensure_database(
    admin: AdminConnection,
    dbname: str,
    role: str,
    password: str,
    environment: str,
    *,
    set_password: bool,
    owner: ownership.Owner | None = None,
    adopt: bool = False,
    adoptable: bool = False,
    provisioned_before: bool = False,
) -> ProvisionResult:
    """The operator's call, with the app identity the tests mostly do not care about filled in."""
    claim = ownership.Claim(
        owner or _owner(environment),
        dbname,
        role,
        adopt=adopt,
        adoptable=adoptable,
        provisioned_before=provisioned_before,
    )
    return pg.ensure_database(admin, claim, password, set_password=set_password)


def drop_database(
    admin: AdminConnection, dbname: str, role: str, *, owner: ownership.Owner | None = None
) -> None:
    pg.drop_database(admin, owner or _owner(), dbname, role)


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


def test_scram_verifier_comes_from_libpq_salted_and_without_the_password(postgres: PostgresTarget) -> None:
    with _superuser(postgres) as conn:
        first, second = (_scram_verifier(conn, "shop__guestbook", "hunter2") for _ in range(2))
    assert re.fullmatch(r"SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+", first)
    assert first != second
    assert "hunter2" not in first


def test_the_password_never_reaches_the_server_log(postgres: PostgresTarget, app_names: AppNames) -> None:
    # log_statement = ddl writes every CREATE/ALTER ROLE to the server log, as many production servers do.
    log_file = getattr(postgres, "log_file", None)
    if log_file is None:
        pytest.skip("the server's log is not readable here (TEST_DATABASE_URL)")
    logged_admin, admin_password = f"admin_{secrets.token_hex(4)}", generate_password()
    with _superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} SUPERUSER LOGIN PASSWORD {}").format(
                sql.Identifier(logged_admin), sql.Literal(admin_password)
            )
        )
        conn.execute(sql.SQL("ALTER ROLE {} SET log_statement = 'ddl'").format(sql.Identifier(logged_admin)))
    try:
        admin = AdminConnection(postgres.host, postgres.port, "disable", logged_admin, admin_password)
        dbname, role = app_names()
        first, second = f"first-{secrets.token_hex(8)}", f"second-{secrets.token_hex(8)}"
        ensure_database(admin, dbname, role, first, "testing", set_password=True)
        ensure_database(admin, dbname, role, second, "testing", set_password=True)
        log = log_file.read_text(errors="replace")
        # The statements were logged (so the check below can fail), with a verifier where a password was.
        created = [line for line in log.splitlines() if "CREATE ROLE" in line and role in line]
        altered = [
            line for line in log.splitlines() if "ALTER ROLE" in line and "PASSWORD" in line and role in line
        ]
        assert created and altered
        assert all("SCRAM-SHA-256$" in line for line in created + altered)
        assert first not in log and second not in log
        with _login(postgres, dbname, role, second):
            pass
    finally:
        with _superuser(postgres) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(logged_admin)))


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
    assert comment is not None
    assert ownership.parse_record(comment[0]) == ownership.Record(
        "production", ownership.owner_digest("shop", "guestbook"), ownership.digest("uid-1")
    )
    assert stamp_for("production") in comment[0].splitlines()


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
    # Nor may another app's deletion take the database with it.
    with pytest.raises(NotOwned, match="not recorded as this app's") as info:
        drop_database(admin, dbname, role, owner=_owner("production", uid="uid-2"))
    assert info.value.condition_reason == "DatabaseOwnedElsewhere"
    assert _exists(postgres, dbname, role) == (True, True)


def test_a_persons_comment_is_kept_beside_the_record(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    ensure_database(admin, dbname, role, generate_password(), "production", set_password=True)
    with _superuser(postgres) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(dbname),
                sql.Literal("legacy shop data\n" + ownership.record_comment(_owner("production"))),
            )
        )
    owner = _owner("production", uid="uid-2")  # the same app, deleted and re-created (Retain)

    result = ensure_database(
        admin, dbname, role, generate_password(), "production", set_password=True, owner=owner
    )

    assert result.stamped and result.stamp == "production" and not result.database_created
    row = _comments(postgres, dbname, role)[0]
    assert row is not None and row.splitlines()[0] == "legacy shop data"
    assert ownership.parse_record(row).uid == ownership.digest("uid-2")
    assert read_stamp(admin, dbname) == "production"


def _comments(postgres: PostgresTarget, dbname: str, role: str) -> tuple[str | None, str | None]:
    with _superuser(postgres) as conn:
        db = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname,)
        ).fetchone()
        rl = conn.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
    return (db[0] if db else None, rl[0] if rl else None)


def test_a_database_owned_by_another_role_is_refused_and_left_alone(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    _, other = app_names()
    with _superuser(postgres) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(other)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(other))
        )

    with pytest.raises(NotOwned) as info:
        ensure_database(admin, dbname, role, generate_password(), "testing", set_password=False)

    assert info.value.condition_reason == "DatabaseOwnedElsewhere"
    assert other not in info.value.public  # the tenant learns nothing of who owns it
    assert _exists(postgres, dbname, role) == (True, False)
    assert read_stamp(admin, dbname) is None
    with pytest.raises(NotOwned, match="refusing to drop"):
        drop_database(admin, dbname, role)
    assert _exists(postgres, dbname, other) == (True, True)


def test_drop_removes_database_and_role_even_when_connected_and_is_idempotent(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    password = generate_password()
    ensure_database(admin, dbname, role, password, "testing", set_password=False)
    app_session = _login(postgres, dbname, role, password)  # the app's pool, still open

    drop_database(admin, dbname, role)

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


# --- ownership: what a hostile tenant may name -----------------------------------------------------------


def test_the_admin_and_system_names_are_never_touched(
    postgres: PostgresTarget, admin: AdminConnection
) -> None:
    for dbname, role in (("postgres", "postgres"), ("template1", "template1"), ("shop", "pg_monitor")):
        with pytest.raises(NotOwned) as info:
            ensure_database(admin, dbname, role, generate_password(), "testing", set_password=True)
        assert info.value.condition_reason == "ReservedName"
        with pytest.raises(NotOwned):
            drop_database(admin, dbname, role)
    # The admin still logs in with its own password and is still a superuser.
    assert _role_attributes(postgres, postgres.superuser)["rolsuper"] is True
    assert _role_attributes(postgres, postgres.superuser)["rolcanlogin"] is True
    _superuser(postgres).close()


def test_a_privileged_role_by_any_name_is_reserved(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    for attribute in ("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"):
        dbname, role = app_names()
        password = generate_password()
        with _superuser(postgres) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                    sql.Identifier(role), sql.SQL(attribute), sql.Literal(password)
                )
            )

        with pytest.raises(NotOwned) as info:
            ensure_database(admin, dbname, role, generate_password(), "testing", set_password=True)
        assert info.value.condition_reason == "ReservedName", attribute
        # Even with the tenant's and the admin's consent to adopt.
        with pytest.raises(NotOwned):
            ensure_database(
                admin,
                dbname,
                role,
                generate_password(),
                "testing",
                set_password=True,
                adopt=True,
                adoptable=True,
            )
        _login(postgres, "postgres", role, password).close()  # its password still works
        assert _exists(postgres, dbname, role) == (False, True)


def test_another_apps_database_is_neither_taken_nor_dropped(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    team_b = ownership.Owner("team-b", "shop", "uid-b", "testing")
    team_a = ownership.Owner("team-a", "shop", "uid-a", "testing")
    password_b = generate_password()
    ensure_database(admin, dbname, role, password_b, "testing", set_password=True, owner=team_b)

    with pytest.raises(NotOwned) as info:
        ensure_database(admin, dbname, role, generate_password(), "testing", set_password=True, owner=team_a)
    assert info.value.condition_reason == "RoleOwnedElsewhere"
    assert "team-b" not in info.value.public
    with pytest.raises(NotOwned) as dropped:
        drop_database(admin, dbname, role, owner=team_a)
    assert dropped.value.condition_reason == "DatabaseOwnedElsewhere"

    with _login(postgres, dbname, role, password_b) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (dbname,)
    assert ownership.parse_record(_comments(postgres, dbname, role)[0]).uid == ownership.digest("uid-b")


def test_retain_reattaches_the_same_namespace_and_name_only(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    first = ownership.Owner("shop", "guestbook", "uid-old", "production")
    ensure_database(admin, dbname, role, generate_password(), "production", set_password=True, owner=first)
    elsewhere = ownership.Owner("other", "guestbook", "uid-new", "production")
    with pytest.raises(NotOwned):
        ensure_database(
            admin, dbname, role, generate_password(), "production", set_password=True, owner=elsewhere
        )

    again = ownership.Owner("shop", "guestbook", "uid-new", "production")
    password = generate_password()
    result = ensure_database(admin, dbname, role, password, "production", set_password=True, owner=again)

    assert result.password_set and not result.database_created
    _login(postgres, dbname, role, password).close()
    db_comment, role_comment = _comments(postgres, dbname, role)
    assert ownership.parse_record(db_comment).uid == ownership.digest("uid-new")
    assert ownership.parse_record(role_comment).uid == ownership.digest("uid-new")
    # The deleted app's record no longer lets anything drop it.
    with pytest.raises(NotOwned):
        drop_database(admin, dbname, role, owner=first)


def test_a_legacy_role_is_adopted_only_with_both_consents(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    legacy_password = generate_password()
    with _superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(legacy_password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(role))
        )

    for adopt, adoptable in ((False, False), (True, False), (False, True)):
        with pytest.raises(NotOwned) as info:
            ensure_database(
                admin,
                dbname,
                role,
                generate_password(),
                "testing",
                set_password=True,
                adopt=adopt,
                adoptable=adoptable,
            )
        assert info.value.condition_reason == "RoleOwnedElsewhere"
        _login(postgres, dbname, role, legacy_password).close()  # the legacy application still logs in
    assert _comments(postgres, dbname, role) == (None, None)

    password = generate_password()
    result = ensure_database(
        admin, dbname, role, password, "testing", set_password=False, adopt=True, adoptable=True
    )

    assert result.adopted and result.password_set and not (result.role_created or result.database_created)
    _login(postgres, dbname, role, password).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _login(postgres, dbname, role, legacy_password)
    assert all(
        ownership.parse_record(c).uid == ownership.digest("uid-1") for c in _comments(postgres, dbname, role)
    )


def test_the_password_proof_of_a_0_1_role_counts_only_for_an_app_whose_status_named_it(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    """flaskops 0.1 wrote no ownership records; an app it provisioned is taken up again when its Secret's
    password still opens the role. The Secret is the tenant's to write, so the proof is only tried when
    the app's status (the operator's to write) already names this role (security review attack-2, #2)."""
    dbname, role = app_names()
    password = generate_password()
    with _superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(role))
        )

    with pytest.raises(NotOwned) as info:  # the right password, but no status saying we made it
        ensure_database(admin, dbname, role, password, "testing", set_password=True)
    assert info.value.condition_reason == "RoleOwnedElsewhere"
    assert _comments(postgres, dbname, role) == (None, None)

    result = ensure_database(
        admin, dbname, role, password, "testing", set_password=True, provisioned_before=True
    )
    assert not (result.role_created or result.database_created)
    assert ownership.parse_record(_comments(postgres, dbname, role)[1]).uid == ownership.digest("uid-1")


def test_a_role_with_memberships_is_not_adopted(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    with _superuser(postgres) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))

    with pytest.raises(NotOwned, match="member of other roles"):
        ensure_database(
            admin, dbname, role, generate_password(), "testing", set_password=True, adopt=True, adoptable=True
        )
    assert _exists(postgres, dbname, role) == (False, True)


def test_the_server_is_identified_by_its_system_identifier_not_its_host_name(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()
    seen: list[str | None] = []

    def check(system_id: str | None, stamp: str | None) -> None:
        seen.append(system_id)

    for host in ("127.0.0.1", "localhost"):
        alias = AdminConnection(host, admin.port, "disable", admin.username, admin.password)
        claim = ownership.Claim(_owner(), dbname, role)
        pg.ensure_database(alias, claim, generate_password(), check=check)

    with _superuser(postgres) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert row is not None and seen == [row[0], row[0]]


def test_a_refusal_by_the_caller_leaves_the_server_untouched(
    postgres: PostgresTarget, admin: AdminConnection, app_names: AppNames
) -> None:
    dbname, role = app_names()

    def refuse(system_id: str | None, stamp: str | None) -> None:
        raise RuntimeError("unsafe pairing")

    with pytest.raises(RuntimeError, match="unsafe pairing"):
        pg.ensure_database(admin, ownership.Claim(_owner(), dbname, role), generate_password(), check=refuse)
    assert _exists(postgres, dbname, role) == (False, False)
