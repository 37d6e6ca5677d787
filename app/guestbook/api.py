"""The JSON API under /api: list, create and read entries; its OpenAPI document.

Exempt from CSRF (see README): it accepts only ``application/json`` bodies, which a cross-site page
cannot send without a CORS preflight this app never grants, and it carries no cookie-based authority.
What each endpoint accepts is decided by the models in schemas.py (and published by openapi.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, abort, current_app, jsonify, request, url_for

from . import entries, openapi, schemas

api_bp = Blueprint("api", __name__)

# What jsonify writes (sorted keys, compact, a final newline; indented in debug mode), by orjson.
_COMPACT = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
_INDENTED = _COMPACT | orjson.OPT_INDENT_2


def entry_json(payload: Any, status: int = 200) -> Response:
    """``payload`` (entries: ints, strings, aware datetimes) as a JSON response.

    orjson instead of Flask's stdlib encoder: about 5x less CPU for a list of 50, and it writes each
    datetime as ``isoformat()`` does (RFC 3339; tests/app/test_app_api.py pins that), so entries
    need no formatting first. Text differs from jsonify's only in writing non-ASCII characters as
    UTF-8 rather than ``\\u`` escapes: the same JSON to any parser.
    """
    body = orjson.dumps(payload, option=_INDENTED if current_app.debug else _COMPACT)
    return current_app.response_class(body, status=status, mimetype="application/json")


class ValidationFailed(Exception):
    """A request broke field rules; answered as 422 with the messages per field."""

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


@api_bp.errorhandler(ValidationFailed)
def _validation_failed(exc: ValidationFailed) -> tuple[Response, int]:
    body: dict[str, object] = {"error": "Unprocessable Entity", "message": exc.message}
    if exc.fields:
        body["fields"] = exc.fields
    return jsonify(body), 422


@api_bp.get("/openapi.json")
def openapi_document() -> Response:
    """This API's OpenAPI 3.1 document (the checked-in app/openapi.json is a copy of it)."""
    return current_app.response_class(openapi.dumps(), mimetype="application/json")


@api_bp.get("/entries")
def list_entries() -> Response:
    """Newest first; ``?limit=`` between 1 and 100 (default 50)."""
    try:
        query = schemas.parse(
            schemas.ListQuery,
            request.args.to_dict(),
            messages={"limit": f"Must be between 1 and {schemas.LIST_MAX}."},
        )
    except schemas.Invalid as exc:
        raise ValidationFailed("Invalid query.", exc.fields) from None
    return entry_json({"entries": entries.latest(query.limit)})


@api_bp.post("/entries")
def create_entry() -> tuple[Response, int, dict[str, str]]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The body must be a JSON object with 'author' and 'message' (application/json)."
        )
    clean, errors = entries.validate(data)
    if errors:
        raise ValidationFailed("Invalid entry.", errors)
    entry = entries.create(**clean)
    return entry_json(entry), 201, {"Location": url_for("api.get_entry", entry_id=entry["id"])}


@api_bp.get("/entries/<int:entry_id>")
def get_entry(entry_id: int) -> Response:
    # An id beyond PostgreSQL's integer names no entry (and would fail the query): 404 either way.
    entry = entries.get(entry_id) if 1 <= entry_id <= schemas.ID_MAX else None
    if entry is None:
        abort(404, description=f"There is no entry {entry_id}.")
    return entry_json(entry)
