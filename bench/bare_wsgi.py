"""The bare baseline: a minimal WSGI app doing the reference app's SQL with the same driver (psycopg 3).

No framework, no ORM, no pool: one autocommit connection per worker process, opened on first use
(after Gunicorn forks), the same SELECT the guestbook's `GET /api/entries` runs, the same JSON shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

SQL = (
    "SELECT id, author, message, created_at, updated_at FROM entries "
    "ORDER BY created_at DESC, id DESC LIMIT 100"
)
_conn: psycopg.Connection[Any] | None = None


def _connection() -> psycopg.Connection[Any]:
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    return _conn


def entries_json() -> bytes:
    rows = _connection().execute(SQL).fetchall()
    entries = [
        {
            "id": r[0],
            "author": r[1],
            "message": r[2],
            "created_at": r[3].isoformat(),
            "updated_at": r[4].isoformat(),
        }
        for r in rows[:50]
    ]
    return json.dumps({"entries": entries}).encode()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/livez":
        body = b'{"status":"ok"}\n'
    elif path == "/api/entries":
        body = entries_json()
    else:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error":"Not Found"}']
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
