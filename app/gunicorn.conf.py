"""Gunicorn settings for the guestbook, fit for a container with a read-only root filesystem.

Every value can come from the environment; command-line flags (what the flaskops Deployment passes:
--workers --threads --timeout --graceful-timeout --max-requests --bind) override this file.
"""

from __future__ import annotations

import gc
import os
import tempfile
from typing import Any

from gunicorn.glogging import Logger


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


# Where to listen: GUNICORN_BIND, else every interface on PORT (8000).
bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{_int('PORT', 8000)}"

# Set workers explicitly: cpu_count() inside a container sees the node's cores, not the pod's limit.
workers = _int("GUNICORN_WORKERS", _int("WEB_CONCURRENCY", 2))
threads = _int("GUNICORN_THREADS", 1)  # more than 1 selects the gthread worker
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 25)  # < terminationGracePeriodSeconds
keepalive = _int("GUNICORN_KEEPALIVE", 5)
max_requests = _int("GUNICORN_MAX_REQUESTS", 1000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", max(max_requests // 10, 0))

# The app is created in each worker after fork (no preload): no database connection, pool or
# socket is ever shared between processes.
preload_app = False


def _reset_metrics_dir() -> None:
    # Samples left by an earlier run (a container restart keeps /dev/shm) would be added to this one.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))


def when_ready(server: Any) -> None:
    """Serve the workers' summed metrics on METRICS_PORT from the master (no app, no database)."""
    if not metrics_port:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(metrics_port, addr=os.environ.get("METRICS_ADDR", "0.0.0.0"), registry=registry)  # noqa: S104


def child_exit(server: Any, worker: Any) -> None:
    """A finished worker's live gauges leave the sum; its counters and histograms stay in it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_starting(server: Any) -> None:
    """Import the app's modules (Flask, SQLAlchemy, psycopg, pydantic, ...) once, in the master.

    Workers fork with them loaded and only run create_app(): a worker replaced after max_requests
    starts in milliseconds instead of re-importing for ~0.6 s while its share of requests waits.
    Importing creates no app, engine or connection, so nothing but code crosses the fork.
    """
    # The engine loads its dialect and driver on first use, so those are named here, and so are
    # the modules create_app() and a worker's first request import on first use (extensions' CLI
    # commands, Flask-Caching's Jinja extension, werkzeug's IDNA host encoding): ~4 ms of every
    # worker's start otherwise. tests/app/test_app_gunicorn.py fails when this list falls behind.
    import encodings.idna  # noqa: F401

    import flask_caching.jinja2ext  # noqa: F401
    import flask_migrate.cli  # noqa: F401
    import flask_sqlalchemy.cli  # noqa: F401
    import psycopg  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

    import guestbook  # noqa: F401

    _reset_metrics_dir()


def pre_fork(server: Any, worker: Any) -> None:
    """Move everything the master holds into the collector's permanent generation before each fork.

    A worker's collector then never walks the ~90 MB of objects it inherited: not in its full
    collections, and not in the one at interpreter exit, after max_requests. Walking them wrote to
    every page of them (copy-on-write: each worker ended up copying the master's heap) and cost a
    worker ~150-200 ms of CPU to exit, ~0.2 ms per request it had served. The objects stay shared,
    and the worker collects what it creates itself as usual. (Python's gc.freeze documentation.)
    """
    gc.freeze()


# Read-only root filesystem: heartbeat files in memory, and no control socket in $HOME (25.1+).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
control_socket_disable = True

# Prometheus metrics (guestbook/metrics.py), only when METRICS_PORT is set: the workers write samples
# to PROMETHEUS_MULTIPROC_DIR (default: a directory in memory, like the heartbeat files) and this
# master serves their sum on METRICS_PORT, away from the app's port.
metrics_port = _int("METRICS_PORT", 0)
if metrics_port:
    # One directory per master (the workers inherit the variable): two servers never mix samples.
    _metrics_dir = os.path.join(worker_tmp_dir or tempfile.gettempdir(), f"guestbook-metrics-{os.getpid()}")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _metrics_dir)

# Logs: JSON lines on stdout, the access line carrying the request id the app echoes.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")


class JsonAccessLogger(Logger):
    """Writes one structured access record per request instead of an Apache-style line."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        self.access_log.info(
            "%s %s %s",
            atoms["m"],
            atoms["U"],
            atoms["s"],
            extra={
                "request_id": atoms.get("{x-request-id}o", "-"),
                "method": atoms["m"],
                "path": atoms["U"],
                "query": atoms["q"],
                "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
                "bytes": atoms["B"],
                "duration_ms": round(int(atoms["D"]) / 1000, 3),
                "remote_addr": atoms["h"],
                "user_agent": atoms["a"],
            },
        )


logger_class = JsonAccessLogger

_json = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(levelname)s %(name)s %(message)s",
    "rename_fields": {"levelname": "level", "name": "logger"},
    "timestamp": True,
}
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": _json},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
    },
    "root": {"level": "WARNING", "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}
