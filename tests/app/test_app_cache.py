"""Flask-Caching: the entries list is cached briefly and invalidated when an entry is created."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app_support import wait_for
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


def test_cached_list_expires(make_app: Callable[..., Flask]) -> None:
    app = make_app(ENTRIES_CACHE_SECONDS="1")
    client = app.test_client()
    client.get("/api/entries")
    with app.app_context():
        db.session.add(Entry(author="b", message="later"))
        db.session.commit()

    def listed() -> list[str]:
        return [e["message"] for e in client.get("/api/entries").get_json()["entries"]]

    assert listed() == []  # still cached
    wait_for(lambda: listed() == ["later"], timeout=5, what="the cached list to expire")


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
