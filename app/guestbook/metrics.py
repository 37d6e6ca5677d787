"""Prometheus metrics, opt-in: requests by endpoint, method and status, their latency, pool usage.

On when PROMETHEUS_MULTIPROC_DIR is set: prometheus_client's multiprocess mode, where every Gunicorn
worker writes its samples to files in that directory and one exporter adds them up. The exporter
is Gunicorn's master, on METRICS_PORT (gunicorn.conf.py sets both up from METRICS_PORT alone), so
/metrics is never on the app's own port, where probes and users are.

Metrics (label values are bounded: endpoints are route names, "none" for unmatched paths):

- ``guestbook_http_requests_total{endpoint, method, status}`` counter
- ``guestbook_http_request_duration_seconds{endpoint}`` histogram, seconds
- ``guestbook_db_connections_in_use`` gauge, connections checked out of the pool (live workers summed)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy import Engine, event

from .extensions import db

_metrics: dict[str, Any] = {}


def _instruments() -> dict[str, Any]:
    # Module-level singletons: the default registry refuses a second metric of the same name.
    if not _metrics:
        from prometheus_client import Counter, Gauge, Histogram

        _metrics["requests"] = Counter(
            "guestbook_http_requests_total", "HTTP requests answered", ["endpoint", "method", "status"]
        )
        _metrics["latency"] = Histogram(
            "guestbook_http_request_duration_seconds", "Time to answer an HTTP request", ["endpoint"]
        )
        _metrics["in_use"] = Gauge(
            "guestbook_db_connections_in_use",
            "Database connections checked out of the pool",
            multiprocess_mode="livesum",
        )
    return _metrics


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _answered(response: Response) -> Response:
    endpoint = request.endpoint or "none"
    _metrics["requests"].labels(endpoint, request.method, str(response.status_code)).inc()
    started = g.pop("metrics_started", None)
    if started is not None:
        _metrics["latency"].labels(endpoint).observe(time.perf_counter() - started)
    return response


def recorder(app: Flask, endpoint: str, method: str, status: str) -> Callable[[float], None] | None:
    """For a request answered before Flask (edge.py: ``/livez``): count it and observe its duration
    (seconds), with the labels Flask's hooks would give it. None when metrics are off."""
    if not app.config["METRICS"]:
        return None
    count = _metrics["requests"].labels(endpoint, method, status).inc
    observe = _metrics["latency"].labels(endpoint).observe

    def record(seconds: float) -> None:
        count()
        observe(seconds)

    return record


def register_metrics(app: Flask) -> None:
    """Count and time every response, and track pool usage, when METRICS is on (else nothing)."""
    if not app.config["METRICS"]:
        return
    metrics = _instruments()
    # First, so a request another hook answers early (an HTTPS redirect) is still timed.
    app.before_request_funcs.setdefault(None, []).insert(0, _started)
    app.after_request(_answered)
    with app.app_context():
        engine = db.engine
    if isinstance(engine, Engine):
        event.listen(engine, "checkout", lambda *_: metrics["in_use"].inc())
        event.listen(engine, "checkin", lambda *_: metrics["in_use"].dec())
