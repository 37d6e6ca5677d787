"""Flask-Caching: the entries list is cached briefly and invalidated when an entry is created."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from guestbook import entries
from guestbook.extensions import cache, db
from guestbook.models import Entry


def test_list_is_served_from_the_cache_until_an_entry_is_created(app: Flask) -> None:
    client = app.test_client()
    client.post("/api/entries", json={"author": "a", "message": "one"})
    assert [e["message"] for e in client.get("/api/entries").get_json()["entries"]] == ["one"]

    # A row written behind the app's back is not seen while the cached list is fresh...
    with app.app_context():
        db.session.add(Entry(author="b", message="behind the cache"))
        db.session.commit()
        assert cache.get(entries.LATEST_KEY) is not None
    assert [e["message"] for e in client.get("/api/entries").get_json()["entries"]] == ["one"]
    assert "behind the cache" not in client.get("/").get_data(as_text=True)  # the page shares it

    # ...and creating through the app drops the cache, so the next read sees everything.
    client.post("/api/entries", json={"author": "c", "message": "three"})
    listed = [e["message"] for e in client.get("/api/entries").get_json()["entries"]]
    assert listed == ["three", "behind the cache", "one"]


def test_cached_list_expires(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    # Time is the test's, not the machine's: a slow run cannot expire the list early or late.
    now = [1_000_000.0]
    monkeypatch.setattr(entries, "clock", lambda: now[0])
    app = make_app(ENTRIES_CACHE_SECONDS="60")
    client = app.test_client()
    client.get("/api/entries")
    with app.app_context():
        db.session.add(Entry(author="b", message="later"))
        db.session.commit()

    def listed() -> list[str]:
        return [e["message"] for e in client.get("/api/entries").get_json()["entries"]]

    now[0] += 59
    assert listed() == []  # still cached
    now[0] += 1
    assert listed() == ["later"]  # 60 s old: read again
    with app.app_context():
        db.session.add(Entry(author="c", message="even later"))
        db.session.commit()
    now[0] -= 3600  # a clock stepped back (NTP) does not pin a stale list forever
    assert listed() == ["even later", "later"]


def test_cache_backend_comes_from_configuration(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app(CACHE_TYPE="FileSystemCache", CACHE_DIR=str(tmp_path))
    app.test_client().get("/api/entries")
    assert list(tmp_path.iterdir())  # the list went to the configured backend


def test_zero_seconds_disables_the_cache(make_app: Callable[..., Flask]) -> None:
    app = make_app(ENTRIES_CACHE_SECONDS="0")
    client = app.test_client()
    client.get("/api/entries")
    with app.app_context():
        assert cache.get(entries.LATEST_KEY) is None
        db.session.add(Entry(author="b", message="seen at once"))
        db.session.commit()
    assert [e["message"] for e in client.get("/api/entries").get_json()["entries"]] == ["seen at once"]
