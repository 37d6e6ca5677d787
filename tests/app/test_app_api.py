"""The JSON API under /api: list, create, get; 422 with field messages; JSON errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import orjson
import pytest
from flask import Flask, abort, jsonify
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from guestbook.extensions import db
from guestbook.models import Entry


def test_list_is_empty_at_first(client: FlaskClient) -> None:
    response = client.get("/api/entries")
    assert response.status_code == 200
    assert response.get_json() == {"entries": []}


def test_create_then_get_then_list(client: FlaskClient) -> None:
    created = client.post("/api/entries", json={"author": " Ada ", "message": "Hello!"})
    assert created.status_code == 201
    body = created.get_json()
    assert (body["author"], body["message"]) == ("Ada", "Hello!")
    assert body["created_at"] == body["updated_at"]
    assert created.headers["Location"] == f"/api/entries/{body['id']}"

    fetched = client.get(created.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.get_json() == body

    client.post("/api/entries", json={"author": "Grace", "message": "Second"})
    listed = client.get("/api/entries").get_json()["entries"]
    assert [e["author"] for e in listed] == ["Grace", "Ada"]  # newest first
    assert [e["author"] for e in client.get("/api/entries?limit=1").get_json()["entries"]] == ["Grace"]


def test_entries_are_the_json_jsonify_wrote_times_as_isoformat(app: Flask, client: FlaskClient) -> None:
    # api.entry_json (orjson) replaced jsonify with times formatted by isoformat(): same JSON value,
    # same key order and trailing newline; only non-ASCII text is UTF-8 instead of \uXXXX escapes.
    created = client.post("/api/entries", json={"author": "Zoë", "message": "naïve café"})
    with app.app_context():
        row = db.session.get(Entry, created.get_json()["id"])
        assert row is not None
        entry = {
            "id": row.id,
            "author": row.author,
            "message": row.message,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
        }
        with app.test_request_context():
            before = {
                "created": jsonify(entry).get_data(),
                "listed": jsonify(entries=[entry]).get_data(),
            }
    after = {
        "created": created.get_data(),
        "listed": client.get("/api/entries").get_data(),
    }
    for key in before:
        as_utf8 = json.dumps(json.loads(before[key]), ensure_ascii=False, separators=(",", ":")) + "\n"
        assert after[key].decode() == as_utf8
    assert "Zoë".encode() in after["created"]
    assert client.get(f"/api/entries/{entry['id']}").get_json() == entry


@given(
    st.datetimes(
        min_value=datetime(1973, 1, 1),  # from 1973 on every zone's offset is whole minutes
        max_value=datetime(9999, 1, 1),
        timezones=st.timezones(),
    )
)
def test_orjson_writes_times_as_isoformat_does(moment: datetime) -> None:
    assert orjson.dumps(moment) == f'"{moment.isoformat()}"'.encode()


def test_long_messages_are_allowed_after_migration_0002(client: FlaskClient) -> None:
    message = "x" * 1000  # longer than revision 0001's varchar(500)
    assert client.post("/api/entries", json={"author": "a", "message": message}).status_code == 201


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"author": ["This field is required."], "message": ["This field is required."]}),
        ({"author": "  ", "message": "hi"}, {"author": ["This field is required."]}),
        ({"author": "a" * 81, "message": "hi"}, {"author": ["Must be at most 80 characters."]}),
        ({"author": "a", "message": "m" * 1001}, {"message": ["Must be at most 1000 characters."]}),
        (
            {"author": 7, "message": ["x"]},
            {"author": ["Must be a string."], "message": ["Must be a string."]},
        ),
    ],
)
def test_invalid_entry_is_422_with_field_messages(
    client: FlaskClient, payload: dict[str, object], fields: dict[str, list[str]]
) -> None:
    response = client.post("/api/entries", json=payload)
    assert response.status_code == 422
    assert response.get_json() == {
        "error": "Unprocessable Entity",
        "message": "Invalid entry.",
        "fields": fields,
    }
    assert client.get("/api/entries").get_json() == {"entries": []}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "author=a&message=b", "content_type": "application/x-www-form-urlencoded"},
        {"data": '{"author": "a", "message": "b"}', "content_type": "text/plain"},
        {"data": "[1, 2]", "content_type": "application/json"},
        {"data": "{not json", "content_type": "application/json"},
    ],
)
def test_body_must_be_a_json_object(client: FlaskClient, kwargs: dict[str, str]) -> None:
    # Form-encoded and text/plain are what a cross-site page can post without a preflight.
    response = client.post("/api/entries", **kwargs)
    assert response.status_code == 422
    assert response.get_json()["error"] == "Unprocessable Entity"
    assert "JSON object" in response.get_json()["message"]


@pytest.mark.parametrize("limit", ["0", "101", "many"])
def test_bad_limit_is_422(client: FlaskClient, limit: str) -> None:
    response = client.get(f"/api/entries?limit={limit}")
    assert response.status_code == 422
    assert response.get_json()["fields"] == {"limit": ["Must be between 1 and 100."]}


def test_unknown_entry_is_json_404(client: FlaskClient) -> None:
    response = client.get("/api/entries/999999")
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json() == {"error": "Not Found", "message": "There is no entry 999999."}


@pytest.mark.parametrize("path", ["/api/nothing-here", "/api", "/api/entries/abc"])
def test_unknown_api_path_is_json_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert set(response.get_json()) == {"error", "message"}


def test_wrong_method_is_json_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/api/entries")
    assert response.status_code == 405
    assert response.get_json()["error"] == "Method Not Allowed"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


def test_unhandled_error_is_json_500_and_the_session_is_rolled_back(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as production does, instead of re-raising
    seen: dict[str, object] = {}

    @app.get("/api/boom")
    def boom() -> str:
        db.session.add(Entry(author="half", message="written before the crash"))
        db.session.flush()  # the row is in the open transaction...
        raise RuntimeError("kaboom")  # ...when the request fails

    @app.teardown_request
    def look(exc: BaseException | None) -> None:
        # Runs after the error handler, before Flask-SQLAlchemy closes the session.
        seen["in_transaction"] = db.session().in_transaction()

    response = app.test_client().get("/api/boom")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "Internal Server Error",
        "message": "Something went wrong on our side. It has been logged.",
    }
    assert "kaboom" not in response.get_data(as_text=True)
    assert seen == {"in_transaction": False}  # the 500 handler rolled back
    with app.app_context():
        assert db.session.query(Entry).filter_by(author="half").count() == 0


def test_explicit_abort_keeps_its_description(make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.get("/api/teapot")
    def teapot() -> str:
        abort(418, description="Short and stout.")

    response = app.test_client().get("/api/teapot")
    assert response.status_code == 418
    assert response.get_json() == {"error": "I'm a teapot", "message": "Short and stout."}
