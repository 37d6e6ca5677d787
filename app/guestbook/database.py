"""The app's PostgreSQL connections: per-connection settings that work directly and behind PgBouncer.

DB_POOLER says what sits between the app and PostgreSQL, and so how the statement timeout travels:

``none`` (default)
    A startup parameter (``options=-c statement_timeout=…``), appended to any ``options`` the
    DATABASE_URL already has. No extra round trip.
``session`` (PgBouncer ``pool_mode = session``)
    PgBouncer refuses an ``options`` startup parameter, so each new connection runs one
    ``set_config`` instead; it lasts as long as the client connection owns its server connection.
``transaction`` (PgBouncer ``pool_mode = transaction``)
    A session setting would leak to other clients of the server connection, so every transaction
    starts with a transaction-local ``set_config`` (one more round trip per transaction; set
    DB_STATEMENT_TIMEOUT_MS=0 and ``ALTER ROLE … SET statement_timeout`` to save it). psycopg's
    automatic server-side prepared statements are off: the next transaction may run on another
    server connection, where they do not exist (PgBouncer < 1.21 cannot track them).

Reads run in autocommit (``read``): one round trip for a SELECT instead of BEGIN, SELECT, ROLLBACK.
A single statement sees one consistent snapshot either way; a read that must see what the request
wrote earlier, or several reads that must agree, use ``db.session`` (one transaction) instead.

Liveness: instead of SQLAlchemy's pre-ping (a ``SELECT 1`` in its own transaction, two round trips on
every checkout), a checkout looks at the connection's socket: a server that restarted, or killed
the backend, has sent an error and closed it, so the socket is readable. Only then is the
connection pinged (and replaced when the ping fails); a quiet socket costs no round trip.
"""

from __future__ import annotations

import select
from collections.abc import Mapping, Sequence
from typing import Any

from flask import Flask, current_app
from sqlalchemy import ClauseElement, Engine, Select, event, exc
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from .extensions import db

POOLERS = ("none", "session", "transaction")
APPLICATION_NAME = "guestbook"


def connect_args(url: URL, pooler: str, connect_timeout: int, statement_timeout_ms: int) -> dict[str, Any]:
    """libpq connection parameters for ``pooler`` (see the module docstring); keeps the URL's options."""
    args: dict[str, Any] = {"connect_timeout": connect_timeout, "application_name": APPLICATION_NAME}
    if pooler == "none" and statement_timeout_ms:
        given = url.query.get("options")
        given = " ".join(given) if isinstance(given, tuple) else (given or "")
        args["options"] = f"{given} -c statement_timeout={statement_timeout_ms}".strip()
    if pooler == "transaction":
        args["prepare_threshold"] = None
    return args


def _socket_has_news(dbapi_connection: Any) -> bool:
    # Readable while idle in the pool: an error/EOF from the server (restart, terminated backend),
    # or an asynchronous message. Either way a real ping decides.
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None or pgconn.status != 0:  # 0: CONNECTION_OK
        return True
    readable, _, _ = select.select([pgconn.socket], [], [], 0)
    return bool(readable)


def _check_on_checkout(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if not _socket_has_news(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()
        except Exception as error:
            # The pool discards this connection and checks out (or opens) another.
            raise exc.DisconnectionError(f"connection failed its ping: {error}") from error


def _timeout_per_connection(engine: Engine, timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("SELECT set_config('statement_timeout', %s, false)", (f"{timeout_ms}ms",))
        dbapi_connection.commit()  # the pool's reset-on-return would roll an uncommitted setting back


def _timeout_per_transaction(engine: Engine, timeout_ms: int) -> None:
    def after_begin(session: Session, transaction: Any, connection: Any) -> None:
        if connection.engine is engine:
            connection.exec_driver_sql(
                "SELECT set_config('statement_timeout', %(t)s, true)", {"t": f"{timeout_ms}ms"}
            )

    event.listen(db.session, "after_begin", after_begin)


_compiled: dict[tuple[str, ClauseElement], str] = {}


def _sql(engine: Engine, statement: ClauseElement) -> str:
    # SQLAlchemy builds the SQL once per statement; psycopg runs it from then on.
    key = (engine.dialect.name, statement)
    if key not in _compiled:
        _compiled[key] = str(statement.compile(dialect=engine.dialect))
    return _compiled[key]


def read(statement: Select, parameters: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
    """The rows of one read-only statement (tuples in its column order), parameters by name.

    In autocommit on a pooled connection, run by psycopg itself: the pool still applies its
    checkout check, recycling and bounds, but SQLAlchemy's per-execution work (~150 µs a request) is
    skipped. Through the session instead when it is already in a transaction (the read must see
    that transaction's writes), with DB_POOLER=transaction (whose statement timeout is set per
    transaction), with tracing on (its SQL spans come from SQLAlchemy), or when tests bind the app
    to one connection.
    """
    bind = db.engine  # what db.session.get_bind() answers for a statement without a bind key
    if (
        not isinstance(bind, Engine)
        # Only a session this request already made can be in a transaction: asking db.session()
        # would make one (and its teardown close it), ~25 µs for a request that never needs it.
        or (db.session.registry.has() and db.session().in_transaction())
        or current_app.config["DB_POOLER"] == "transaction"
        or current_app.config["TRACING"]  # SQL spans come from SQLAlchemy's instrumentation
    ):
        return db.session.execute(statement, parameters).all()
    sql = _sql(bind, statement)
    pooled = bind.raw_connection()
    try:
        driver: Any = pooled.driver_connection  # a psycopg.Connection
        driver.autocommit = True
        rows = driver.execute(sql, parameters or {}).fetchall()
        driver.autocommit = False
    except BaseException:
        pooled.invalidate()  # whatever failed, this connection is not handed out again
        raise
    finally:
        pooled.close()
    return rows


def configure(app: Flask) -> None:
    """Attach the liveness check and DB_POOLER's statement timeout to the app's engine (no I/O)."""
    with app.app_context():
        engine = db.engine
    if not isinstance(engine, Engine):
        return  # tests may bind the app to one Connection inside a transaction
    pooler = app.config["DB_POOLER"]
    timeout_ms = int(app.config["DB_STATEMENT_TIMEOUT_MS"])
    _check_on_checkout(engine)
    if pooler == "session" and timeout_ms:
        _timeout_per_connection(engine, timeout_ms)
    elif pooler == "transaction" and timeout_ms:
        _timeout_per_transaction(engine, timeout_ms)
