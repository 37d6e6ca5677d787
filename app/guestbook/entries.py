"""Entry use cases shared by the JSON API and the HTML pages: validate, create, get, list (cached).

Entries leave this module as plain dicts in the API's shape (schemas.Entry), times as aware
``datetime``s: reads select columns, not ORM objects, since nothing here changes what it reads. The
API writes the times as ISO 8601 (api.entry_json); formatting 100 of them here with
``isoformat()`` cost ~100 µs of a list request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select

from . import schemas
from .database import read
from .extensions import cache, db
from .models import Entry

LATEST_KEY = "entries:latest"
# Wall-clock seconds: a shared cache backend (Redis) is read by processes whose monotonic clocks differ.
clock: Callable[[], float] = time.time
LATEST_MAX = schemas.LIST_MAX

_COLUMNS = (Entry.id, Entry.author, Entry.message, Entry.created_at, Entry.updated_at)
# Built once: constructing a statement costs more per request than SQLAlchemy's compiled cache saves.
_LATEST = select(*_COLUMNS).order_by(Entry.created_at.desc(), Entry.id.desc()).limit(bindparam("limit"))
_ONE = select(*_COLUMNS).where(Entry.id == bindparam("id"))


def as_dict(row: Sequence[Any]) -> dict[str, Any]:
    """One (id, author, message, created_at, updated_at) row in the API's shape (times as datetimes)."""
    return {"id": row[0], "author": row[1], "message": row[2], "created_at": row[3], "updated_at": row[4]}


def validate(data: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The cleaned fields (surrounding whitespace removed) and the messages per invalid field.

    The rules are schemas.NewEntry's; an empty error dict means the entry can be stored.
    """
    try:
        entry = schemas.parse(schemas.NewEntry, data)
    except schemas.Invalid as exc:
        return {}, exc.fields
    return {"author": entry.author.strip(), "message": entry.message.strip()}, {}


def create(author: str, message: str) -> dict[str, Any]:
    """Store a new entry (already validated); drop the cached list so the next read shows it."""
    entry = Entry(author=author, message=message)
    db.session.add(entry)
    db.session.commit()
    cache.delete(LATEST_KEY)
    return as_dict((entry.id, entry.author, entry.message, entry.created_at, entry.updated_at))


def get(entry_id: int) -> dict[str, Any] | None:
    """The entry with this id, or None."""
    rows = read(_ONE, {"id": entry_id})
    return as_dict(rows[0]) if rows else None


def latest(limit: int = LATEST_MAX) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, from the cache for ENTRIES_CACHE_SECONDS (0: no cache).

    The cache holds the newest LATEST_MAX, so every limit is served from one cached list.
    """
    seconds = int(current_app.config["ENTRIES_CACHE_SECONDS"])
    if seconds <= 0:
        return [as_dict(r) for r in read(_LATEST, {"limit": limit})]
    now = clock()
    cached = cache.get(LATEST_KEY)
    # The age check is ours (on `clock`, which tests set); the backend's own timeout only cleans up.
    if cached is None or not 0 <= now - cached[0] < seconds:
        cached = (now, [as_dict(r) for r in read(_LATEST, {"limit": LATEST_MAX})])
        cache.set(LATEST_KEY, cached, timeout=seconds)
    return list(cached[1][:limit])
