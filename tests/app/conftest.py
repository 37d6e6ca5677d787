"""flaskr-style fixtures (app, client, runner) on a real PostgreSQL, each test rolled back."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from app_support import APP_DIR, Server, app_environ, deployment_command, migrate_to_head, process_env
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Connection, Engine

from flaskops_testbed.postgres import PostgresTarget, free_port
from guestbook import create_app
from guestbook.extensions import db


@pytest.fixture(scope="session")
def app_database(postgres: PostgresTarget) -> Iterator[str]:
    """URL of the session's guestbook test database, migrated to head once."""
    name = f"guestbook_test_{secrets.token_hex(4)}"
    postgres.create_database(name)
    url = postgres.url(name)
    migrate_to_head(url)
    yield url
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def production_database(postgres: PostgresTarget) -> Iterator[str]:
    """URL of a migrated database without a test token, for apps built with APP_ENV=production."""
    name = f"guestbook_app_{secrets.token_hex(4)}"
    postgres.create_database(name)
    url = postgres.url(name)
    migrate_to_head(url)
    yield url
    postgres.drop_database(name)


def engines(extension: SQLAlchemy) -> dict[str | None, Any]:
    """The app's engine map, which Flask-SQLAlchemy types as read-only but keeps as a plain dict."""
    return cast(dict[str | None, Any], extension.engines)


@pytest.fixture
def make_app(request: pytest.FixtureRequest, app_database: str) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test database whose every write is rolled back after the test.

    Flask-SQLAlchemy 3 ignores a ``bind=connection`` session option, so the classic fixture
    silently commits. Instead the app's engine is swapped for one connection inside an outer
    transaction, and the session joins it with savepoints: the app's commits release savepoints,
    and the outer rollback at the end undoes them all.
    """
    made: list[tuple[Flask, Engine, Connection]] = []

    def make(env: str = "testing", **extra: str) -> Flask:
        # The playbook's guard refuses the test database outside APP_ENV=testing.
        url = request.getfixturevalue("production_database") if env != "testing" else app_database
        app = create_app(env, environ=app_environ(url, env, **extra))
        with app.app_context():
            engine = db.engine
            connection = engine.connect()
            connection.begin()
            engines(db)[None] = connection
            db.session.remove()
            db.session.configure(join_transaction_mode="create_savepoint")
        made.append((app, engine, connection))
        return app

    yield make
    for app, engine, connection in made:
        with app.app_context():
            db.session.remove()
            connection.rollback()
            connection.close()
            engines(db)[None] = engine
            db.session.configure(join_transaction_mode="conditional_savepoint")
        engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``argv`` (default: the Deployment's command line) in app/ with ``environ``; kill after."""
    started: list[Server] = []

    def start(environ: Mapping[str, str], argv: list[str] | None = None, port: int | None = None) -> Server:
        port = port or free_port()
        argv = argv or deployment_command(port)
        log_path = tmp_path / f"gunicorn-{port}.log"
        server = Server(argv=argv, port=port, log_path=log_path)
        with log_path.open("wb") as log:
            server.proc = subprocess.Popen(
                argv, cwd=APP_DIR, env=process_env(environ, tmp_path), stdout=log, stderr=subprocess.STDOUT
            )
        started.append(server)
        server.wait_until_serving()
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
