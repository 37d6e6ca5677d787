"""No input gets a 5xx: /api fuzzed from its own OpenAPI document, the HTML form by property tests.

Both run against the real PostgreSQL (each test's writes rolled back). The examples are derived from
a fixed seed (derandomize) so CI is reproducible, and no deadline applies: a slow machine makes the
run longer, never red.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import schemathesis
from app_support import APP_DIR, csrf_token
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from guestbook import entries
from guestbook.extensions import db
from guestbook.models import AUTHOR_MAX, MESSAGE_MAX, Entry

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    # The app fixture is per test on purpose: every example of one test shares its rolled-back
    # transaction, and each assertion reads only what its own example wrote.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# The checked-in document, which test_served_document_is_the_checked_in_one proves is the served one.
# (schemathesis.pytest.from_fixture would load it from the app, but fails on pytest 9: it sets
# `node._nodeid`, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_path(str(APP_DIR / "openapi.json"))


# A body the document's own schema accepts must be accepted by the app. Judged here with jsonschema rather
# than by schemathesis' positive_data_acceptance check, which was seen (depending on what else the test
# session had imported) to label a coverage-phase case with author "\x00" as schema-valid although the
# document's pattern refuses it.
NEW_ENTRY = jsonschema.Draft202012Validator(
    json.loads((APP_DIR / "openapi.json").read_text())["components"]["schemas"]["NewEntry"]
)


@schema.parametrize()
@FUZZ
def test_api_never_answers_5xx_and_matches_its_document(case: Any, app: Flask) -> None:
    # Every other built-in check: no 5xx, status codes, content types, headers and bodies as documented,
    # and schema-invalid input refused.
    response = case.call_and_validate(app=app, excluded_checks=[positive_data_acceptance])
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    json_body = case.media_type == "application/json" and isinstance(case.body, dict)
    if positive and case.method == "POST" and json_body and NEW_ENTRY.is_valid(case.body):
        assert response.status_code == 201, (case.body, response.status_code)


def test_served_document_is_the_checked_in_one(client: FlaskClient) -> None:
    served = client.get("/api/openapi.json")
    assert served.status_code == 200 and served.mimetype == "application/json"
    checked_in = (APP_DIR / "openapi.json").read_text()
    assert served.get_data(as_text=True) == checked_in, "app/openapi.json is stale: run `make openapi`"


def test_document_states_the_real_limits() -> None:
    document = json.loads((APP_DIR / "openapi.json").read_text())
    new_entry = document["components"]["schemas"]["NewEntry"]["properties"]
    assert new_entry["author"]["maxLength"] == AUTHOR_MAX and new_entry["message"]["maxLength"] == MESSAGE_MAX
    (limit,) = document["paths"]["/api/entries"]["get"]["parameters"]
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, entries.LATEST_MAX)
    (entry_id,) = document["paths"]["/api/entries/{entry_id}"]["get"]["parameters"]
    assert entry_id["schema"]["maximum"] == 2**31 - 1  # PostgreSQL integer


# -- the inputs that used to answer 500 --------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"author": "ann", "message": "hello\u0000world"}, "message"),
        ({"author": "\u0000", "message": "hi"}, "author"),
        ({"author": "ann", "message": "lone \ud800 surrogate"}, "message"),
    ],
)
def test_unstorable_text_is_422(client: FlaskClient, payload: dict[str, str], field: str) -> None:
    # json.dumps writes the surrogate as the escape "\ud800", exactly what a client can send.
    response = client.post("/api/entries", data=json.dumps(payload), content_type="application/json")
    assert response.status_code == 422
    assert response.get_json()["fields"] == {
        field: ["Must not contain NUL (U+0000) or unpaired surrogate (U+D800-U+DFFF) characters."]
    }


@pytest.mark.parametrize("limit", ["²", "٣", "9" * 5000, "1_0", " 5", "5.0", "-1"])
def test_limit_must_be_plain_digits(client: FlaskClient, limit: str) -> None:
    response = client.get("/api/entries", query_string={"limit": limit})
    assert response.status_code == 422
    assert response.get_json()["fields"] == {"limit": ["Must be between 1 and 100."]}


@pytest.mark.parametrize("entry_id", [2**31, 10**30])
def test_an_id_beyond_postgresql_integer_is_404(client: FlaskClient, entry_id: int) -> None:
    response = client.get(f"/api/entries/{entry_id}")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not Found", "message": f"There is no entry {entry_id}."}


def test_a_body_over_the_limit_is_json_413(client: FlaskClient) -> None:
    response = client.post("/api/entries", data="x" * (64 * 1024 + 1), content_type="application/json")
    assert response.status_code == 413
    assert set(response.get_json()) == {"error", "message"}


# -- the HTML form -----------------------------------------------------------------------------------

# Text that stresses the rules: whitespace Python strips (str.isspace), NUL, and ordinary letters,
# next to any text at all, at lengths around the limits.
tricky = st.sampled_from([" ", "\t", "\n", "\x1c", "\x85", "\u2028", "\u3000", "\x00", "a", "é", "😀"])
field_text = st.one_of(
    st.text(),
    st.text(alphabet=tricky, max_size=8),
    st.text(alphabet=tricky, min_size=AUTHOR_MAX - 2, max_size=AUTHOR_MAX + 2),
    st.text(min_size=MESSAGE_MAX - 2, max_size=MESSAGE_MAX + 2),
)


def _stored(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        return [(e.author, e.message) for e in db.session.scalars(db.select(Entry).order_by(Entry.id))]


@given(author=field_text, message=field_text)
@FUZZ
def test_the_form_answers_302_or_422_and_stores_what_the_api_would(
    app: Flask, author: str, message: str
) -> None:
    client = app.test_client()
    before = _stored(app)
    response = client.post("/", data={"author": author, "message": message, "csrf_token": csrf_token(client)})
    clean, errors = entries.validate({"author": author, "message": message})
    # The rules, restated independently of the code under test:
    must_refuse = (
        "\x00" in author + message
        or not author.strip()
        or not message.strip()
        or len(author) > AUTHOR_MAX
        or len(message) > MESSAGE_MAX
    )
    assert bool(errors) == must_refuse
    if errors:
        assert response.status_code == 422, response.get_data(as_text=True)[:500]
        assert _stored(app) == before
    else:
        assert response.status_code == 302
        assert _stored(app) == [*before, (clean["author"], clean["message"])]


def test_the_documented_whitespace_is_exactly_pythons() -> None:
    """The published pattern spells whitespace out (ECMA-262's and Python's `\\s` differ): it must be
    exactly what str.strip() removes, or the document and the app disagree on what "blank" is."""
    import re

    from guestbook.schemas import _SPACE

    space = re.compile(f"[{_SPACE}]")
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        assert bool(space.match(chr(code))) == chr(code).isspace(), hex(code)
