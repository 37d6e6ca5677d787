"""The JSON API under /api: list, create and read entries.

Exempt from CSRF (see README): it accepts only ``application/json`` bodies, which a cross-site page
cannot send without a CORS preflight this app never grants, and it carries no cookie-based authority.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, request, url_for

from . import entries
from .extensions import db
from .models import Entry

api_bp = Blueprint("api", __name__)


class ValidationFailed(Exception):
    """A request body broke field rules; answered as 422 with the messages per field."""

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


@api_bp.get("/entries")
def list_entries() -> Response:
    """Newest first; ``?limit=`` between 1 and 100 (default 50)."""
    raw = request.args.get("limit", "50")
    limit = int(raw) if raw.isdigit() else 0
    if not 1 <= limit <= entries.LATEST_MAX:
        raise ValidationFailed("Invalid query.", {"limit": [f"Must be between 1 and {entries.LATEST_MAX}."]})
    return jsonify(entries=entries.latest(limit))


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
    return jsonify(entry.to_dict()), 201, {"Location": url_for("api.get_entry", entry_id=entry.id)}


@api_bp.get("/entries/<int:entry_id>")
def get_entry(entry_id: int) -> Response:
    entry = db.session.get(Entry, entry_id)
    if entry is None:
        abort(404, description=f"There is no entry {entry_id}.")
    return jsonify(entry.to_dict())
