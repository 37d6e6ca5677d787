"""CPU per request of the guestbook, the bare app and Flask alone, in-process: no Gunicorn, no HTTP, no wrk.

    python -m bench.app_cpu [APP_DIR]     # APP_DIR: another tree of the app (e.g. a `git archive`)

Each app is called as a WSGI callable on a fresh local PostgreSQL (200 rows, like app_http), 200
warm-up calls, then the least CPU time (process_time) per call over 7 batches of 300. The minimum
over batches is what the code costs when the machine lets it run; on a shared machine the
throughput benchmark (app_http) swings with other work, this much less. PostgreSQL's own CPU is not
counted: the numbers compare the Python side of the two apps.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.common import ROOT

BATCHES = 7
CALLS = 300


def _environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "bench",
        "HTTP_X_FORWARDED_PROTO": "https",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def _call(app: Callable[..., Iterable[bytes]], path: str) -> None:
    body = app(_environ(path), lambda status, headers, exc=None: None)
    b"".join(body)
    close = getattr(body, "close", None)
    if close:
        close()


def cpu_us(app: Callable[..., Iterable[bytes]], path: str) -> float:
    for _ in range(200):
        _call(app, path)
    best = float("inf")
    for _ in range(BATCHES):
        started = time.process_time()
        for _ in range(CALLS):
            _call(app, path)
        best = min(best, (time.process_time() - started) / CALLS)
    return best * 1e6


def main(app_dir: Path) -> None:
    sys.path.insert(0, str(app_dir))
    from flaskops_testbed.postgres import LocalPostgres

    work = Path(tempfile.mkdtemp(prefix="fbench-cpu-", dir="/tmp"))
    pg = LocalPostgres(work / "pg")
    pg.start()
    try:
        pg.create_database("guestbook_cpu")
        url = pg.url("guestbook_cpu")
        os.environ["DATABASE_URL"] = url  # the bare app's
        import flask_migrate

        from bench import bare_wsgi, flask_alone
        from guestbook import create_app
        from guestbook.extensions import db

        environ = {
            "APP_ENV": "production",
            "DATABASE_URL": url,
            "SECRET_KEY": secrets.token_urlsafe(48),
            "PROXY_COUNT": "1",
            "ENTRIES_CACHE_SECONDS": "0",
        }
        app = create_app("production", environ=environ)
        with app.app_context():
            flask_migrate.upgrade()
        with pg.connect("guestbook_cpu") as conn:
            conn.execute(
                "INSERT INTO entries (author, message) SELECT 'author ' || g, repeat('message ', 10) || g "
                "FROM generate_series(1, 200) AS g"
            )
        print(f"app: {app_dir}")
        for name, wsgi in (("guestbook", app), ("bare", bare_wsgi.app), ("Flask alone", flask_alone.app)):
            for path in ("/livez", "/api/entries"):
                print(f"{name:11} {path:13} {cpu_us(wsgi, path):8.1f} µs CPU per request")
        with app.app_context():
            db.engine.dispose()
    finally:
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "app")
