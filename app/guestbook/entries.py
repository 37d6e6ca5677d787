"""Entry use cases shared by the JSON API and the HTML pages: validate, create, list (cached)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import select

from .extensions import cache, db
from .models import AUTHOR_MAX, MESSAGE_MAX, Entry

LATEST_KEY = "entries:latest"
LATEST_MAX = 100


def validate(data: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Clean input and the field errors found in it (an empty dict means valid)."""
    clean: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for field, limit in (("author", AUTHOR_MAX), ("message", MESSAGE_MAX)):
        value = data.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors[field] = ["This field is required."]
        elif not isinstance(value, str):
            errors[field] = ["Must be a string."]
        elif len(value.strip()) > limit:
            errors[field] = [f"Must be at most {limit} characters."]
        else:
            clean[field] = value.strip()
    return clean, errors


def create(author: str, message: str) -> Entry:
    """Store a new entry and drop the cached list so the next read shows it."""
    entry = Entry(author=author, message=message)
    db.session.add(entry)
    db.session.commit()
    cache.delete(LATEST_KEY)
    return entry


def latest(limit: int = LATEST_MAX) -> list[dict[str, Any]]:
    """The newest entries as dicts, served from the cache for ENTRIES_CACHE_SECONDS (0: no cache)."""
    seconds = int(current_app.config["ENTRIES_CACHE_SECONDS"])
    rows = cache.get(LATEST_KEY) if seconds > 0 else None
    if rows is None:
        query = select(Entry).order_by(Entry.created_at.desc(), Entry.id.desc()).limit(LATEST_MAX)
        rows = [e.to_dict() for e in db.session.scalars(query)]
        if seconds > 0:  # Flask-Caching reads a timeout of 0 as "never expires"
            cache.set(LATEST_KEY, rows, timeout=seconds)
    return list(rows[:limit])
