"""OpenTelemetry traces from a real Gunicorn worker to an OTLP/HTTP receiver started by the test.

The receiver is a plain HTTP server decoding OTLP protobuf (opentelemetry-proto, which the
exporter already depends on): no collector binary can be installed from PyPI or Debian here. The
SDK's batch exporter runs a thread: spans arriving at all prove it was set up in the worker after
the fork (a thread started in the master does not exist in a forked worker).
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from app_support import STRONG_KEY, Server, deployment_command, migrate_to_head, wait_for
from flask import Flask
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flaskops_testbed.postgres import PostgresTarget, free_port


class _Receiver(BaseHTTPRequestHandler):
    spans: list[tuple[str, str, dict[str, str]]]  # (service.name, span name, attributes)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: a.value.string_value for a in span.attributes}
                    self.spans.append((resource.get("service.name", ""), span.name, attributes))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[tuple[str, str, dict[str, str]]]]]:
    spans: list[tuple[str, str, dict[str, str]]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Receiver", (_Receiver,), {"spans": spans}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", spans
    server.shutdown()
    server.server_close()
    thread.join()


def test_requests_and_sql_are_traced_from_the_worker(
    gunicorn: Callable[..., Server],
    postgres: PostgresTarget,
    database_factory: Callable[..., str],
    otlp_receiver: tuple[str, list[tuple[str, str, dict[str, str]]]],
) -> None:
    endpoint, spans = otlp_receiver
    url = postgres.url(database_factory("guestbook"))
    migrate_to_head(url)
    port = free_port()
    environ = {
        "APP_ENV": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": STRONG_KEY,
        "FORCE_HTTPS": "false",
        "ENTRIES_CACHE_SECONDS": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "guestbook-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within 50 ms instead of 5 s
    }
    server = gunicorn(environ, deployment_command(port, workers=1, threads=1), port)
    assert server.get("/api/entries", headers={"X-Request-ID": "traced-1"}).status_code == 200
    assert server.get("/livez").status_code == 200  # with tracing on, Flask answers it (edge.py)

    def seen(name: str) -> bool:
        return any(span_name == name for _, span_name, _ in spans)

    wait_for(lambda: seen("GET /api/entries"), 30, "the request's span")
    wait_for(lambda: seen("GET /livez"), 30, "the probe's span")
    wait_for(lambda: any(n.startswith("SELECT") for _, n, _ in spans), 30, f"the SELECT span in {spans}")
    assert {service for service, _, _ in spans} == {"guestbook-under-test"}
    (request_span,) = [attrs for _, name, attrs in spans if name == "GET /api/entries"]
    assert request_span["http.route"] == "/api/entries"
    assert server.terminate() == 0


def test_no_tracing_without_an_endpoint(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    assert app.config["TRACING"] is False
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
