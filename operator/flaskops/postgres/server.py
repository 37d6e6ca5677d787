"""The PostgreSQL server: the SQL the operator runs as the admin (psycopg is imported here and in `pool`).

An app's role and database (create, take up, drop), its password as a SCRAM verifier, the server check's
facts. Each function takes one admin connection per call from its server's pool (`pool.POOLS`; the server
check logs in afresh), so the reconcile workers may run them at once; they are idempotent, so a retry
after any failure is always safe. What they decide comes from pure code:
names from `naming`, ownership from `flaskops.ownership`; what they raise is in `errors`.
"""

from __future__ import annotations

import dataclasses
import hmac
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import errors, sql

from flaskops import ownership

from . import pool
from .errors import (
    AdminAuthFailed,
    AdminPermissionDenied,
    DatabaseUnavailable,
    NotOwned,
    ProvisioningFailed,
)
from .naming import check_identifier, parse_stamp
from .pool import AdminConnection

__all__ = [
    "AdminAuthFailed",
    "AdminConnection",
    "AdminPermissionDenied",
    "DatabaseUnavailable",
    "NotOwned",
    "ProvisionResult",
    "ProvisioningFailed",
    "ServerFacts",
    "drop_database",
    "ensure_database",
    "generate_password",
    "probe_server",
    "read_stamp",
]


def generate_password() -> str:
    """A new random password: 256 bits, URL-safe alphabet (URLs escape it anyway)."""
    return secrets.token_urlsafe(32)


def _scram_verifier(conn: psycopg.Connection, role: str, password: str) -> str:
    # Send PostgreSQL the SCRAM-SHA-256 verifier, never the password: CREATE/ALTER ROLE ... PASSWORD
    # text lands in the server log under log_statement=ddl and in pg_stat_statements. libpq computes it
    # on the client (PQencryptPasswordConn), with no round trip. It holds the GIL for its ~4 ms (hashlib's
    # PBKDF2 released it): once per provisioning pass, not per reconcile.
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), algorithm=b"scram-sha-256")
    return verifier.decode()


# --- the server ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionResult:
    """What ensure_database found and did; `stamp` is the environment on the database afterwards."""

    role_created: bool
    database_created: bool
    password_set: bool
    stamped: bool
    stamp: str | None
    owner: str
    # PostgreSQL's system_identifier of the server (None where the admin may not read it).
    system_identifier: str | None = None
    # Whether the role and/or database were adopted (made by someone else, now recorded as the app's).
    adopted: bool = False

    @property
    def changed(self) -> bool:
        """Whether this call changed anything on the server."""
        return self.role_created or self.database_created or self.password_set or self.stamped


# Connection failures carry no SQLSTATE in libpq, only text; these are the server's English messages.
# A server with localized messages still fails with DatabaseUnavailable, only less specifically.
_AUTH_FAILURE = re.compile(r'authentication failed|no pg_hba\.conf entry|role ".*" does not exist')


def _scrub(text: str, *secret_values: str) -> str:
    for value in secret_values:
        if value:
            text = text.replace(value, "***")
    return text


@contextmanager
def _admin_session(
    admin: AdminConnection, *, lock: str | None = None, pooled: bool = True
) -> Iterator[psycopg.Connection]:
    """An autocommit admin connection, turning every psycopg error into a DatabaseUnavailable.

    Pooled (pool.POOLS) unless `pooled` is False: then a login of its own, closed afterwards. The
    advisory lock on `lock` is released before the connection goes back to its pool.
    """
    where = f"PostgreSQL at {admin.host}:{admin.port} as {admin.username!r}"
    try:
        lease = pool.POOLS.lease(admin) if pooled else pool.Lease(pool.login(admin), None)
    except psycopg.Error as exc:
        message = _scrub(str(exc).strip(), admin.password)
        if _AUTH_FAILURE.search(message):
            raise AdminAuthFailed(
                f"{where} refused the admin credentials: {message}; check the PostgresServer's admin Secret",
                "the database server refused the PostgresServer's admin credentials; the cluster admin must "
                "fix the admin Secret it names",
            ) from None
        raise DatabaseUnavailable(
            f"cannot connect to {where}: {message}",
            f"cannot connect to the database server at {admin.host}:{admin.port} ({_connect_cause(message)})",
        ) from None
    conn = lease.conn
    try:
        locked = False
        try:
            if lease.fresh:
                pool.configure_session(conn, admin)
            if lock is not None:
                # Serializes flaskops instances working on one database, so check-then-write is atomic.
                conn.execute("SELECT pg_advisory_lock(%s::bigint)", (_lock_key(lock, admin.password),))
                locked = True
            yield conn
        finally:
            if locked:
                _unlock(conn)
            lease.release()
    except errors.InsufficientPrivilege as exc:
        raise AdminPermissionDenied(
            f"{where}: {_scrub(str(exc).strip(), admin.password)}; "
            "the admin role needs CREATEROLE and CREATEDB (or superuser)",
            "the PostgresServer's admin role lacks a privilege flaskops needs (CREATEROLE and CREATEDB); "
            "the cluster admin must grant it",
        ) from None
    except psycopg.OperationalError as exc:
        # An OperationalError with an SQLSTATE is the server refusing for now (a lock timeout, an object in
        # use); without one, the connection itself went away.
        public = (
            f"the database server is busy [{exc.sqlstate}]; retrying"
            if exc.sqlstate
            else f"lost the connection to the database server at {admin.host}:{admin.port}"
        )
        raise DatabaseUnavailable(f"{where}: {_scrub(str(exc).strip(), admin.password)}", public) from None
    except psycopg.Error as exc:
        state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
        raise ProvisioningFailed(
            f"{where}{state}: {_scrub(str(exc).strip(), admin.password)}",
            f"the database server refused a provisioning statement{state}; the operator log has the details",
        ) from None


def _connect_cause(message: str) -> str:
    """libpq's connection failure in a few words, without the server's own text (it may name roles)."""
    lowered = message.lower()
    for needle, words in (
        ("connection refused", "connection refused"),
        ("timeout", "timed out"),
        ("could not translate host name", "host name not found"),
        ("no route to host", "no route to host"),
        ("ssl", "TLS negotiation failed"),
    ):
        if needle in lowered:
            return words
    return "no connection"


def _lock_key(name: str, secret: str) -> int:
    # Keyed with the admin's password: any login may take advisory locks in the maintenance database, and
    # a tenant who could compute the key could hold it and stall every provisioning of that name.
    digest = hmac.digest(secret.encode(), f"flaskops:{name}".encode(), "sha256")
    return int.from_bytes(digest[:8], "big", signed=True)


def _unlock(conn: psycopg.Connection) -> None:
    """Release the session's advisory locks before its connection is reused; a connection that cannot
    (broken, mid-statement) is closed instead, which releases them too, and its pool discards it."""
    try:
        conn.execute("SELECT pg_advisory_unlock_all()")
    except psycopg.Error:
        conn.close()


# lock_timeout (ms) of a write to a row the app's own role can lock: its pg_authid row (any role may ALTER
# ROLE CURRENT_USER PASSWORD in a transaction it keeps open) or its database's comment (the owner may
# COMMENT ON DATABASE). A tenant holding such a lock would otherwise keep the server's shared admin
# connection, the provisioning slot and the advisory lock for the session's whole lock_timeout (10 s) on
# every pass; now its own pass fails "busy" within this and is retried, and nobody else waits.
TENANT_LOCK_TIMEOUT_MS = 1000


def _on_tenant_row(conn: psycopg.Connection, statement: sql.Composed) -> None:
    """Run `statement` (a write to the app's own role or database) with TENANT_LOCK_TIMEOUT_MS: in a
    transaction of its own, so the SET LOCAL ends with it and the pooled connection keeps its settings.
    Raises psycopg.errors.LockNotAvailable when the row stays locked that long."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(TENANT_LOCK_TIMEOUT_MS))
        conn.execute(statement)


def _database_facts(conn: psycopg.Connection, dbname: str) -> ownership.DatabaseFacts | None:
    row = conn.execute(
        "SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database'), datistemplate"
        " FROM pg_database WHERE datname = %s",
        (dbname,),
    ).fetchone()
    if row is None:
        return None
    return ownership.DatabaseFacts(name=dbname, owner=row[0], comment=row[1], is_template=bool(row[2]))


def _role_facts(conn: psycopg.Connection, role: str) -> ownership.RoleFacts | None:
    row = conn.execute(
        "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,"
        " shobj_description(r.oid, 'pg_authid'),"
        " ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        "       WHERE m.member = r.oid ORDER BY 1)"
        " FROM pg_roles r WHERE r.rolname = %s",
        (role,),
    ).fetchone()
    if row is None:
        return None
    return ownership.RoleFacts(
        name=role,
        superuser=bool(row[0]),
        createrole=bool(row[1]),
        createdb=bool(row[2]),
        replication=bool(row[3]),
        bypassrls=bool(row[4]),
        comment=row[5],
        member_of=tuple(row[6] or ()),
    )


def _system_identifier(conn: psycopg.Connection) -> str | None:
    """PostgreSQL's system_identifier: one value per cluster (and its standbys), whatever host name
    reaches it. None where a managed service hides pg_control_system() from the admin role."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    except psycopg.Error:
        return None
    return None if row is None else str(row[0])


def _logs_in(admin: AdminConnection, role: str, password: str, dbname: str) -> bool:
    """Whether `password` opens `role` (on its database, else the maintenance one): proof of possession."""
    for database in (dbname, admin.maintenance_db):
        try:
            psycopg.connect(
                host=admin.host,
                port=admin.port,
                user=role,
                password=password,
                dbname=database,
                sslmode=admin.sslmode,
                connect_timeout=admin.connect_timeout,
                application_name="flaskops",
            ).close()
        except psycopg.Error:
            continue
        return True
    return False


def _comment(conn: psycopg.Connection, kind: str, name: str, text: str) -> None:
    _on_tenant_row(
        conn, sql.SQL("COMMENT ON {} {} IS {}").format(sql.SQL(kind), sql.Identifier(name), sql.Literal(text))
    )


def _create_role(conn: psycopg.Connection, role: str, password: str, limit: int | None = None) -> bool:
    """Create the app's login role (with CONNECTION LIMIT `limit` when given); False if it already exists
    (another operator may have won the race)."""
    # INHERIT, not NOINHERIT: since PostgreSQL 15 the public schema belongs to pg_database_owner, whose
    # privileges a NOINHERIT owner does not get, so its migrations fail with "permission denied for
    # schema public". The role is a member of nothing else, so inheriting grants it nothing more.
    statement = sql.SQL(
        "CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION"
        " NOBYPASSRLS CONNECTION LIMIT {} PASSWORD {}"
    ).format(
        sql.Identifier(role),
        sql.Literal(-1 if limit is None else limit),
        sql.Literal(_scram_verifier(conn, role, password)),
    )
    try:
        conn.execute(statement)
    # Two concurrent CREATE ROLEs: the loser sees DuplicateObject, or the catalog's unique index.
    except (errors.DuplicateObject, errors.UniqueViolation):
        return False
    return True


def _create_database(conn: psycopg.Connection, dbname: str, owner: str) -> bool:
    """Create the app's database owned by its role; False if it already exists."""
    # TEMPLATE template0: nobody can connect to it, while any login may sit on template1 (the default) and
    # so make every CREATE DATABASE fail with "source database is being accessed by other users".
    statement = sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
        sql.Identifier(dbname), sql.Identifier(owner)
    )
    try:
        conn.execute(statement)
    except (errors.DuplicateDatabase, errors.UniqueViolation):
        return False
    return True


def _set_connection_limit(conn: psycopg.Connection, role: str, limit: int) -> bool:
    """ALTER ROLE ... CONNECTION LIMIT when the role's differs; whether it changed. Sessions already open
    stay (PostgreSQL checks the limit at login only), so lowering it never cuts a running pod off."""
    row = conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if row is not None and row[0] == limit:
        return False
    _on_tenant_row(
        conn, sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(sql.Identifier(role), sql.Literal(limit))
    )
    return True


def _make_admin_member_of(conn: psycopg.Connection, role: str) -> None:
    # A non-superuser admin (managed PostgreSQL) must be a member of a role to create a database it
    # owns, comment on it and drop it; a superuser needs nothing.
    row = conn.execute(
        "SELECT rolsuper, pg_has_role(current_user, %s, 'USAGE') FROM pg_roles WHERE rolname = current_user",
        (role,),
    ).fetchone()
    if row is not None and not row[0] and not row[1]:
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))


def ensure_database(
    admin: AdminConnection,
    claim: ownership.Claim,
    password: str,
    *,
    set_password: bool = True,
    check: Callable[[str | None, str | None], None] | None = None,
    connection_limit: int | None = None,
) -> ProvisionResult:
    """Create the app's role and database, or take up the ones its ownership record names.

    Reads the role and database, lets `ownership.decide` judge them and changes nothing when it
    refuses (NotOwned). A database stamped for another environment is also left untouched: the result
    reports its stamp so the caller can refuse (rule S6). Otherwise: creates what is missing (recording
    the owner on both), (re)applies `password` when `set_password`, re-stamps a re-attached or adopted
    role and database with the app's UID, and lets only the owner (and superusers) connect to a database
    it created. `check(system_identifier, environment_stamp)` runs after the reads and before any write,
    so a caller's refusal (an exception it raises) leaves the server untouched. `connection_limit` (the
    app's worst case, budget.worst_case; None leaves it as it is) becomes the role's CONNECTION LIMIT, at
    creation or by ALTER ROLE when it differs, so one app cannot take the whole server. Raises DatabaseUnavailable (or a subclass) when the server cannot do it; ValueError for
    an impossible name or an empty password, before connecting.
    """
    dbname, role, owner = claim.dbname, claim.role, claim.owner
    check_identifier("database name", dbname)
    check_identifier("role name", role)
    if not password:
        raise ValueError("the role's password is empty")
    record = ownership.record_comment(owner)
    try:
        with _admin_session(admin, lock=dbname) as conn:
            system_id = _system_identifier(conn)
            existing_db = _database_facts(conn, dbname)
            role_facts = _role_facts(conn, role)
            found = None if existing_db is None else parse_stamp(existing_db.comment)
            if (
                claim.provisioned_before
                and role_facts is not None
                and not role_facts.comment
                and not role_facts.privileged
                and not role_facts.member_of
                and role != admin.username
                and _logs_in(admin, role, password, dbname)
            ):
                # Provisioned by flaskops 0.1 (no records yet): the app's own Secret still opens the role.
                claim = dataclasses.replace(claim, proven=True)
            # The pairing rules first (as reconcile orders its steps), then ownership: either refuses
            # before anything is written.
            if check is not None:
                check(system_id, found)
            plan = ownership.decide(
                claim,
                role_facts,
                existing_db,
                admin_user=admin.username,
                maintenance_db=admin.maintenance_db,
            )
            if isinstance(plan, ownership.Refusal):
                raise NotOwned(plan)
            if existing_db is not None and found is not None and found != owner.environment:
                return ProvisionResult(False, False, False, False, found, existing_db.owner, system_id)

            role_created = False
            password_set = False
            if plan.role == "create":
                role_created = _create_role(conn, role, password, connection_limit)
                if not role_created:  # a concurrent creator won between our read and our write
                    raise DatabaseUnavailable(f"role {role!r} appeared while it was being provisioned")
            elif set_password or plan.role == "adopt":
                _on_tenant_row(
                    conn,
                    sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(_scram_verifier(conn, role, password))
                    ),
                )
                password_set = True
            if not role_created and connection_limit is not None:
                _set_connection_limit(conn, role, connection_limit)
            previous = None if role_created else role_facts.comment if role_facts else None
            if ownership.parse_record(previous) != ownership.parse_record(record):
                _comment(conn, "ROLE", role, ownership.record_comment(owner, previous))

            _make_admin_member_of(conn, role)
            database_created = existing_db is None and _create_database(conn, dbname, role)
            if existing_db is None and not database_created:
                raise DatabaseUnavailable(f"database {dbname!r} appeared while it was being provisioned")
            db = _database_facts(conn, dbname)
            if db is None:  # dropped between our statements: let the caller's retry start over
                raise DatabaseUnavailable(f"database {dbname!r} vanished while it was being provisioned")
            if database_created:
                # Every role may connect to a new database by default; only the owner (and superusers) may now.
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
            stamped = False
            if ownership.parse_record(db.comment) != ownership.parse_record(record):
                _comment(conn, "DATABASE", dbname, ownership.record_comment(owner, db.comment))
                stamped = True
            return ProvisionResult(
                role_created,
                database_created,
                password_set,
                stamped,
                owner.environment,
                role,
                system_id,
                adopted=plan.adopting,
            )
    except DatabaseUnavailable as exc:
        # The new password can reach no message (the admin's is scrubbed where it is known).
        exc.reason = _scrub(exc.reason, password)
        exc.args = (exc.reason,)
        raise


@dataclass(frozen=True)
class ServerFacts:
    """What a PostgresServer check learnt (probe_server): version, connection slots, the admin's rights."""

    version: str  # server_version, e.g. "16.4" (a distribution may append text: "16.4 (Debian 16.4-1)")
    version_num: int  # server_version_num, e.g. 160004
    max_connections: int
    # superuser_reserved_connections, plus reserved_connections on PostgreSQL 16 and later: slots only
    # superusers (or pg_use_reserved_connections members) may take, so never the apps'.
    reserved_connections: int
    superuser: bool
    createrole: bool
    createdb: bool


def probe_server(admin: AdminConnection) -> ServerFacts:
    """Connect as the admin and read the server's version, max_connections and the admin's rights.

    Read-only, one short session. Raises AdminAuthFailed when the credentials are refused and
    DatabaseUnavailable (or another subclass) when the server cannot be reached or answers with an error.
    """
    # A login of its own, not a pooled connection: the check proves that the Secret's credentials log in
    # now, and a settled operator keeps no connection open for it.
    with _admin_session(admin, pooled=False) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
            " current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int"
            " + coalesce(current_setting('reserved_connections', true)::int, 0),"
            " r.rolsuper, r.rolcreaterole, r.rolcreatedb"
            " FROM pg_roles r WHERE r.rolname = current_user"
        ).fetchone()
    if row is None:  # current_user always has a pg_roles row; a proxy in between might not say so
        raise DatabaseUnavailable(
            f"PostgreSQL at {admin.host}:{admin.port} did not describe the admin role",
            "the database server did not describe the admin role",
        )
    return ServerFacts(
        version=str(row[0]),
        version_num=int(row[1]),
        max_connections=int(row[2]),
        reserved_connections=int(row[3]),
        superuser=bool(row[4]),
        createrole=bool(row[5]),
        createdb=bool(row[6]),
    )


def read_stamp(admin: AdminConnection, dbname: str) -> str | None:
    """The environment stamped on a database, or None if it has no stamp or does not exist."""
    with _admin_session(admin) as conn:
        db = _database_facts(conn, dbname)
    return None if db is None else parse_stamp(db.comment)


def drop_database(admin: AdminConnection, owner: ownership.Owner, dbname: str, role: str) -> None:
    """Drop an app's database and role, disconnecting its sessions; a no-op when both are gone.

    Drops only what `ownership.may_drop` allows — what carries this app's UID in its ownership record —
    judged under the database's advisory lock right before acting; otherwise raises NotOwned and changes
    nothing (a deletion must never take a database or role that anyone else relies on).
    """
    check_identifier("database name", dbname)
    check_identifier("role name", role)
    with _admin_session(admin, lock=dbname) as conn:
        role_facts = _role_facts(conn, role)
        db_facts = _database_facts(conn, dbname)
        verdict = ownership.may_drop(
            owner,
            dbname,
            role,
            role_facts,
            db_facts,
            admin_user=admin.username,
            maintenance_db=admin.maintenance_db,
        )
        if isinstance(verdict, ownership.Refusal):
            raise NotOwned(verdict)
        drop_db, drop_role = verdict
        if drop_role:
            _make_admin_member_of(conn, role)
            # NOLOGIN first, so the app's pool cannot reconnect between the terminate and the drop.
            _on_tenant_row(conn, sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
        if drop_db:
            # End the app's own sessions (the admin is a member of its role, so it may), then a plain DROP
            # DATABASE: it also stops autovacuum workers on the database itself, whereas WITH (FORCE) makes a
            # non-superuser admin terminate them by hand and fails ("must be a member of the role whose
            # process is being terminated"). A session of anyone else makes the drop fail and retry later.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND usename = %s AND pid <> pg_backend_pid()",
                (dbname, role),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
        if drop_role:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
