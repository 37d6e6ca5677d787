"""The per-test rollback really rolls back: nothing a test commits reaches the database."""

from __future__ import annotations

import psycopg
from flask import Flask
from flask.testing import FlaskClient

from guestbook.extensions import db
from guestbook.models import Entry

MARKER = "isolation-marker-7f3a"


def count_marker_outside(app_database: str) -> int:
    """Count marker rows from a separate connection: what any other client would see."""
    with psycopg.connect(app_database) as conn:
        row = conn.execute("SELECT count(*) FROM entries WHERE message = %s", (MARKER,)).fetchone()
        assert row is not None
        return int(row[0])


def test_commit_inside_test_is_invisible_outside(client: FlaskClient, app: Flask, app_database: str) -> None:
    response = client.post("/api/entries", json={"author": "iso", "message": MARKER})
    assert response.status_code == 201  # the app committed...
    with app.app_context():
        assert db.session.query(Entry).filter_by(message=MARKER).count() == 1  # ...and sees its row
    assert count_marker_outside(app_database) == 0  # ...but only inside the outer transaction


def test_previous_test_left_nothing_behind(client: FlaskClient, app_database: str) -> None:
    # Runs after the test above (file order): its committed entry must be gone.
    assert count_marker_outside(app_database) == 0
    assert all(e["message"] != MARKER for e in client.get("/api/entries").get_json()["entries"])


def test_failed_statement_rolls_back_to_the_savepoint(app: Flask) -> None:
    # After an error, the session keeps working: the outer transaction is still usable.
    with app.app_context():
        db.session.add(Entry(author="x" * 81 * 100, message="too long for varchar(80)"))
        try:
            db.session.commit()
        except Exception:
            db.session.rollback()
        else:
            raise AssertionError("a too-long author must fail")
        assert db.session.query(Entry).filter_by(message="too long for varchar(80)").count() == 0
