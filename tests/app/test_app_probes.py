"""Probes: /livez does no I/O; /readyz asks PostgreSQL and answers 503 when it really is down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from app_support import STRONG_KEY, migrate_to_head
from flask import Flask
from flask.testing import FlaskClient

from flaskops_testbed.postgres import LocalPostgres
from guestbook import create_app
from guestbook.extensions import db


def test_livez(client: FlaskClient) -> None:
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_livez_needs_no_database() -> None:
    app = create_app(
        "production",
        environ={"SECRET_KEY": STRONG_KEY, "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/nowhere"},
    )
    assert app.test_client().get("/livez").status_code == 200


def test_readyz(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_probes_are_get_only_and_need_no_csrf(client: FlaskClient) -> None:
    assert client.head("/readyz").status_code == 200
    assert client.post("/livez").status_code in (400, 405)


@pytest.fixture
def pooled_app(restartable_postgres: LocalPostgres) -> Iterator[Flask]:
    """A production app (pooled, pre-ping) on the dedicated server that tests may stop."""
    name = "guestbook_ready"
    restartable_postgres.drop_database(name)
    restartable_postgres.create_database(name)
    url = restartable_postgres.url(name)
    migrate_to_head(url)
    app = create_app("production", environ={"SECRET_KEY": STRONG_KEY, "DATABASE_URL": url})
    yield app
    with app.app_context():
        db.engine.dispose()


def test_readyz_is_503_while_postgresql_is_stopped(
    pooled_app: Flask, restartable_postgres: LocalPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    client = pooled_app.test_client()
    assert client.get("/readyz").status_code == 200  # a pooled connection now exists

    restartable_postgres.stop()
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.get_json() == {"status": "unavailable", "message": "The database does not answer."}
    assert client.get("/livez").status_code == 200  # liveness is unaffected: no restart storm
    assert "readiness check failed" in capsys.readouterr().out
    assert restartable_postgres.password not in down.get_data(as_text=True)

    restartable_postgres.start()
    assert client.get("/readyz").status_code == 200  # the stale pooled connection was replaced
