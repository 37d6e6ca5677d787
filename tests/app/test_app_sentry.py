"""Errors reach Sentry when SENTRY_DSN is set (a local HTTP endpoint stands in for sentry.io), and
nothing is set up when it is not."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk
from app_support import wait_for
from flask import Flask


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def sentry_endpoint() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """A DSN whose ingest endpoint is a local HTTP server, and what that server received."""
    received: list[tuple[str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/42", received
    # Leave no SDK behind for later tests (Sentry's client is process-global).
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    server.shutdown()
    server.server_close()
    thread.join()


def _failing(app: Flask) -> Flask:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as production does

    @app.get("/api/explode")
    def explode() -> str:
        raise RuntimeError("sentry should hear about this")

    return app


def test_an_unhandled_error_is_sent_to_sentry(
    make_app: Callable[..., Flask], sentry_endpoint: tuple[str, list[tuple[str, bytes]]]
) -> None:
    dsn, received = sentry_endpoint
    app = _failing(make_app(SENTRY_DSN=dsn, SENTRY_ENVIRONMENT="ci"))
    assert app.test_client().get("/api/explode").status_code == 500
    sentry_sdk.flush(timeout=30)
    wait_for(lambda: any(b"sentry should hear about this" in body for _, body in received), 30, "the event")
    path, body = next((p, b) for p, b in received if b"sentry should hear about this" in b)
    assert path == "/api/42/envelope/"
    assert b'"RuntimeError"' in body and b'"environment":"ci"' in body.replace(b": ", b":")


def test_without_a_dsn_there_is_no_sentry(
    make_app: Callable[..., Flask], sentry_endpoint: tuple[str, list[tuple[str, bytes]]]
) -> None:
    _, received = sentry_endpoint
    app = _failing(make_app())
    assert app.test_client().get("/api/explode").status_code == 500
    assert not sentry_sdk.get_client().is_active()
    sentry_sdk.flush(timeout=5)
    assert received == []
