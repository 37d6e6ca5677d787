"""Prometheus metrics under a real Gunicorn with 2 workers, scraped from the master's METRICS_PORT."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import requests
from app_support import STRONG_KEY, Server, deployment_command, migrate_to_head
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from flaskops_testbed.postgres import PostgresTarget, free_port
from guestbook import metrics


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


LISTED = (
    "guestbook_http_requests_total",
    (("endpoint", "api.list_entries"), ("method", "GET"), ("status", "200")),
)
TIMED = ("guestbook_http_request_duration_seconds_count", (("endpoint", "api.list_entries"),))
# /livez is answered before Flask (edge.py) and still counted, with the labels Flask's hook gives it.
PROBED = (
    "guestbook_http_requests_total",
    (("endpoint", "probes.livez"), ("method", "GET"), ("status", "200")),
)
PROBE_TIMED = ("guestbook_http_request_duration_seconds_count", (("endpoint", "probes.livez"),))


def test_metrics_add_up_across_workers_on_their_own_port(
    gunicorn: Callable[..., Server],
    postgres: PostgresTarget,
    database_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    url = postgres.url(database_factory("guestbook"))
    migrate_to_head(url)
    port, metrics_port = free_port(), free_port()
    argv = deployment_command(port, workers=2, threads=1)
    # Each worker is replaced after 5 requests, so the 52 below are served by at least 10 processes,
    # most of them gone by the scrape: the sum must still be exact.
    argv[argv.index("--max-requests") + 1] = "5"
    argv[argv.index("--max-requests-jitter") + 1] = "0"
    environ = {
        "APP_ENV": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": STRONG_KEY,
        "FORCE_HTTPS": "false",
        "ENTRIES_CACHE_SECONDS": "0",
        "METRICS_PORT": str(metrics_port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    server = gunicorn(environ, argv, port)
    before = _scrape(metrics_port)
    for _ in range(40):
        assert server.get("/api/entries").status_code == 200
    for _ in range(12):
        assert server.get("/livez").status_code == 200
    after = _scrape(metrics_port)

    assert after[LISTED] - before.get(LISTED, 0) == 40
    assert after[TIMED] - before.get(TIMED, 0) == 40
    assert after[PROBED] - before.get(PROBED, 0) == 12
    assert after[PROBE_TIMED] - before.get(PROBE_TIMED, 0) == 12
    assert after[("guestbook_db_connections_in_use", ())] == 0  # every connection back in its pool
    assert len(list((tmp_path / "metrics").glob("counter_*.db"))) >= 10  # one file per process
    assert server.get("/metrics").status_code == 404  # not on the app's port
    assert server.terminate() == 0


def test_no_metrics_without_the_setting(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    assert metrics._started not in app.before_request_funcs.get(None, [])
    assert app.test_client().get("/metrics").status_code == 404
