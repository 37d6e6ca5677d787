"""Connections: behind a real PgBouncer (session and transaction pooling), the URL's own options,
and a dead pooled connection replaced at checkout without a ping on every request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from app_support import STRONG_KEY, migrate_to_head
from flask import Flask
from pgbouncer_support import PgBouncer
from sqlalchemy import text

from flaskops_testbed.postgres import PostgresTarget
from guestbook import create_app
from guestbook.extensions import db


def production_app(url: str, **extra: str) -> Flask:
    environ = {"SECRET_KEY": STRONG_KEY, "DATABASE_URL": url, "FORCE_HTTPS": "false", **extra}
    return create_app("production", environ=environ)


def dispose(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module", params=["session", "transaction"])
def pgbouncer(request: pytest.FixtureRequest, postgres: PostgresTarget) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(postgres, pool_mode=request.param).start()
    yield bouncer
    bouncer.stop()


def _occupy_two_server_connections(url: str) -> None:
    # Two clients in a transaction at once make PgBouncer open two server connections; with
    # round robin, one client's consecutive transactions then alternate between them. The first
    # transaction stays open while the second starts (no autocommit), so they overlap however
    # slowly the machine runs (two threads sleeping 0.2 s each overlapped only if both started in time).
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        first.execute("SELECT 1")  # holds its server connection until the transaction ends
        second.execute("SELECT 1")  # so this one gets another


def test_pgbouncer_refuses_an_options_startup_parameter(
    pgbouncer: PgBouncer, production_database: str
) -> None:
    # Why the app must not send one there (it used to, and every request answered 500).
    dbname = production_database.rsplit("/", 1)[1]
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
        psycopg.connect(pgbouncer.url(dbname), options="-c statement_timeout=1000").close()


def test_the_app_works_behind_pgbouncer(pgbouncer: PgBouncer, production_database: str) -> None:
    url = pgbouncer.url(production_database.rsplit("/", 1)[1])
    _occupy_two_server_connections(url)
    app = production_app(url, DB_POOLER=pgbouncer.pool_mode, DB_STATEMENT_TIMEOUT_MS="1234")
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200, pgbouncer.log()
        created = client.post("/api/entries", json={"author": "bouncer", "message": pgbouncer.pool_mode})
        assert created.status_code == 201, created.get_data(as_text=True)
        # Well past psycopg's prepare threshold (5): under transaction pooling a statement prepared
        # on one server connection is missing on the next, unless the app prepares nothing.
        for _ in range(12):
            assert client.get(created.headers["Location"]).status_code == 200
            assert client.get("/api/entries?limit=1").status_code == 200
        with app.test_request_context():
            timeout = db.session.execute(text("SHOW statement_timeout")).scalar()
            db.session.rollback()
        assert timeout == "1234ms"
    finally:
        dispose(app)


def test_transaction_pooling_breaks_automatic_prepared_statements(
    postgres: PostgresTarget, production_database: str
) -> None:
    # The control for the test above: psycopg's automatic prepared statements really do break
    # under transaction pooling, so the test above would catch their return.
    bouncer = PgBouncer(postgres, pool_mode="transaction").start()
    try:
        url = bouncer.url(production_database.rsplit("/", 1)[1])
        _occupy_two_server_connections(url)
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InvalidSqlStatementName):
            for _ in range(12):
                conn.execute("SELECT %s::int", (1,)).fetchall()
                conn.commit()
    finally:
        bouncer.stop()


def test_options_in_the_url_are_kept(postgres: PostgresTarget, production_database: str) -> None:
    url = production_database + "?options=-c%20search_path%3Dpg_catalog,public"
    app = production_app(url, DB_STATEMENT_TIMEOUT_MS="4321")
    try:
        with app.app_context():
            assert db.session.execute(text("SHOW search_path")).scalar() == "pg_catalog,public"
            assert db.session.execute(text("SHOW statement_timeout")).scalar() == "4321ms"
            db.session.rollback()
    finally:
        dispose(app)


def _backend_pids(postgres: PostgresTarget, dbname: str) -> list[int]:
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'guestbook'",
            (dbname,),
        ).fetchall()
    return [r[0] for r in rows]


def test_a_pooled_connection_is_pinged_only_when_its_server_went_away(
    postgres: PostgresTarget, database_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dbname = database_factory("guestbook")  # its own: only this app's connections are in it
    migrate_to_head(postgres.url(dbname))
    app = production_app(
        postgres.url(dbname), DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0", ENTRIES_CACHE_SECONDS="0"
    )
    client = app.test_client()
    with app.app_context():
        dialect = db.engine.dialect
    pings: list[bool] = []
    real_ping = dialect.do_ping

    def counted_ping(dbapi_connection: Any) -> bool:
        pings.append(True)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted_ping)
    try:
        for _ in range(3):
            assert client.get("/api/entries").status_code == 200
        assert pings == []  # a quiet connection costs no round trip (pool_pre_ping pinged each time)
        (pid,) = _backend_pids(postgres, dbname)
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            # With a timeout it returns once the backend is gone, not when it was signalled.
            assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)
        response = client.get("/api/entries")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert pings == [True]  # the terminated one was pinged, failed, and was replaced
        assert _backend_pids(postgres, dbname) not in ([], [pid])
    finally:
        dispose(app)


def test_a_statement_timeout_is_a_503_with_retry_after(production_database: str) -> None:
    app = production_app(production_database, DB_STATEMENT_TIMEOUT_MS="300", ENTRIES_CACHE_SECONDS="0")
    client = app.test_client()
    with psycopg.connect(production_database) as blocker:
        blocker.execute("LOCK TABLE entries IN ACCESS EXCLUSIVE MODE")  # every statement on entries waits
        read = client.get("/api/entries")  # run on the driver: psycopg's QueryCanceled
        write = client.post("/api/entries", json={"author": "a", "message": "m"})  # SQLAlchemy's wrapper
        page = client.get("/")
        blocker.rollback()
    for answer in (read, write):
        assert answer.status_code == 503, answer.get_data(as_text=True)
        assert answer.json == {
            "error": "Service Unavailable",
            "message": "The database did not answer in time. Try again in a moment.",
        }
        assert answer.headers["Retry-After"] == "1"
    assert page.status_code == 503 and page.content_type.startswith("text/html")
    assert client.get("/api/entries").status_code == 200  # the pool's connections serve on
    dispose(app)


def test_other_database_errors_stay_500(production_database: str) -> None:
    app = production_app(production_database)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production, not raise into the test

    @app.get("/api/broken")
    def broken() -> str:
        db.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))  # an OperationalError
        return "unreachable"

    answer = app.test_client().get("/api/broken")
    assert answer.status_code == 500 and answer.json is not None
    assert answer.json["error"] == "Internal Server Error"
    dispose(app)
