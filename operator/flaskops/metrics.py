"""The operator's Prometheus metrics: the metric objects, tiny record functions, and the /metrics server.

handlers.py and admission.py call the record functions; nothing else knows Prometheus. Labels are bounded
sets (results, reasons and outcomes the code names, PostgresServer names — cluster-scoped objects an admin
creates, a handful per cluster) with one exception: `flaskops_flaskapp_stalled` names the app, because an
alert that cannot say which app is stalled is not actionable; it has a series only while an app is
Stalled, so a healthy fleet exports none. README.md's "Metrics" table lists every metric (a test compares
it with `REGISTERED`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import names

log = logging.getLogger(__name__)

PREFIX = "flaskops_"

RECONCILES = Counter(
    "flaskops_reconcile",
    "FlaskApp reconciles by result: ready, progressing, stalled or error (an exception; retried).",
    ["result"],
)
RECONCILE_ERRORS = Counter(
    "flaskops_reconcile_errors",
    "FlaskApp reconciles that raised, by exception class (kopf or the retry timer runs them again).",
    ["exception"],
)
RECONCILE_SECONDS = Histogram(
    "flaskops_reconcile_duration_seconds",
    "Wall time of one FlaskApp reconcile, including waits on PostgreSQL and the API server.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
MIGRATIONS = Counter(
    "flaskops_migrations",
    "Migration Jobs the operator saw finish, by outcome (Succeeded or Failed).",
    ["outcome"],
)
MIGRATION_SECONDS = Histogram(
    "flaskops_migration_duration_seconds",
    "Migration Job run time (status.startTime to completion), by outcome.",
    ["outcome"],
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
PROVISIONING_SECONDS = Histogram(
    "flaskops_provisioning_duration_seconds",
    "One provisioning session (role, database, ownership checks) on a PostgresServer, success or not.",
    ["server"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROVISIONING_FAILURES = Counter(
    "flaskops_provisioning_failures",
    "Provisioning sessions that failed on a PostgresServer, by reason (the DatabaseReady reason, "
    "e.g. DatabaseUnavailable, AdminAuthFailed, AdminPermissionDenied, ProvisioningFailed).",
    ["server", "reason"],
)
WEBHOOK_REVIEWS = Counter(
    "flaskops_webhook_reviews",
    "Admission reviews answered, by verdict: allowed, denied, malformed, or unchanged (an update that "
    "left the spec alone passes unjudged).",
    ["verdict"],
)

# Verdicts of flaskops_webhook_reviews_total.
ALLOWED, DENIED, MALFORMED, UNCHANGED = "allowed", "denied", "malformed", "unchanged"

# Every metric name as scraped (counters gain `_total`), with its labels: README.md's table must agree.
REGISTERED: dict[str, tuple[str, ...]] = {
    "flaskops_reconcile_total": ("result",),
    "flaskops_reconcile_errors_total": ("exception",),
    "flaskops_reconcile_duration_seconds": (),
    "flaskops_flaskapps": ("ready", "reason"),
    "flaskops_flaskapp_stalled": ("namespace", "flaskapp", "reason"),
    "flaskops_migrations_total": ("outcome",),
    "flaskops_migration_duration_seconds": ("outcome",),
    "flaskops_provisioning_duration_seconds": ("server",),
    "flaskops_provisioning_failures_total": ("server", "reason"),
    "flaskops_webhook_reviews_total": ("verdict",),
    "flaskops_webhook_certificate_expiry_timestamp_seconds": (),
}


# --- record functions -----------------------------------------------------------------------------------


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or () if c.get("type") == type_), {})


def result_label(status: Mapping[str, Any]) -> str:
    """ready | stalled | progressing, from a FlaskApp status's Ready and Stalled conditions."""
    if _condition(status, names.READY).get("status") == "True":
        return "ready"
    if _condition(status, names.STALLED).get("status") == "True":
        return "stalled"
    return "progressing"


@contextlib.contextmanager
def reconcile() -> Iterator[Callable[[Mapping[str, Any], Mapping[str, Any]], None]]:
    """Times one reconcile; the caller reports `(old_status, new_status)` through the yielded function.

    An exception counts as result "error" (and in the errors counter) and propagates. A reconcile that
    reports nothing (the app was gone) is timed but not counted.
    """
    start = time.monotonic()
    reported: list[str] = []

    def done(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        reported.append(result_label(new))
        migration_finished(old.get("migration") or {}, new.get("migration") or {})

    try:
        yield done
    except BaseException as exc:
        RECONCILES.labels("error").inc()
        RECONCILE_ERRORS.labels(type(exc).__name__).inc()
        raise
    finally:
        RECONCILE_SECONDS.observe(time.monotonic() - start)
    if reported:
        RECONCILES.labels(reported[-1]).inc()


def _parse(ts: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None


def migration_finished(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Count a migration once, when a status write first records its Job as Succeeded or Failed."""
    outcome = new.get("outcome")
    if outcome not in ("Succeeded", "Failed"):
        return
    if (old.get("jobName"), old.get("outcome")) == (new.get("jobName"), outcome):
        return  # already counted (this process or an earlier one wrote it)
    MIGRATIONS.labels(outcome).inc()
    start, end = _parse(new.get("startedAt")), _parse(new.get("completedAt"))
    if start and end and end >= start:
        MIGRATION_SECONDS.labels(outcome).observe((end - start).total_seconds())


@contextlib.contextmanager
def provisioning(server: str) -> Iterator[None]:
    """Times one provisioning session on `server`; a failure of the server counts by its reason.

    A refusal (the role or database belongs to someone else, an unsafe pairing) is the tenant's problem,
    not the server's: timed, not counted as a failure.
    """
    # A local import: the steps import psycopg, which a process that only renders metrics does not need.
    from .postgres.errors import DatabaseUnavailable, NotOwned
    from .steps.result import Halt

    start = time.monotonic()
    try:
        yield
    except (NotOwned, Halt):
        raise
    except DatabaseUnavailable as exc:
        PROVISIONING_FAILURES.labels(server, exc.condition_reason).inc()
        raise
    except Exception:
        PROVISIONING_FAILURES.labels(server, "Error").inc()
        raise
    finally:
        PROVISIONING_SECONDS.labels(server).observe(time.monotonic() - start)


def review(verdict: str) -> None:
    """Count one admission review (ALLOWED, DENIED, MALFORMED or UNCHANGED)."""
    WEBHOOK_REVIEWS.labels(verdict).inc()


# --- collected at scrape time ---------------------------------------------------------------------------


def app_key(namespace: str, name: str, status: Mapping[str, Any] | None) -> tuple[str, str, str, str, str]:
    """What the operator's readiness index keeps per FlaskApp: (ready, reason, stalled, namespace, name)."""
    ready = _condition(status or {}, names.READY)
    stalled = _condition(status or {}, names.STALLED).get("status") == "True"
    return (
        str(ready.get("status") or "Unknown"),
        str(ready.get("reason") or "NotObserved"),
        "True" if stalled else "False",
        namespace,
        name,
    )


class StateCollector(Collector):
    """Gauges read at scrape time: apps by Ready status/reason, stalled apps, the webhook cert's expiry."""

    def __init__(self) -> None:
        self.apps: Callable[[], Iterable[tuple[str, str, str, str, str]]] | None = None
        self.cert_file: Path | None = None

    def collect(self) -> Iterable[Metric]:
        if self.apps is not None:
            counts: dict[tuple[str, str], int] = {}
            stalled = GaugeMetricFamily(
                "flaskops_flaskapp_stalled",
                "1 for each FlaskApp that is Stalled (waits for a change to its spec), by Ready reason.",
                labels=["namespace", "flaskapp", "reason"],
            )
            for ready, reason, is_stalled, namespace, name in self.apps():
                counts[(ready, reason)] = counts.get((ready, reason), 0) + 1
                if is_stalled == "True":
                    stalled.add_metric([namespace, name, reason], 1)
            apps = GaugeMetricFamily(
                "flaskops_flaskapps",
                "FlaskApps by their Ready condition's status (True/False/Unknown) and reason.",
                labels=["ready", "reason"],
            )
            for (ready, reason), n in sorted(counts.items()):
                apps.add_metric([ready, reason], n)
            yield apps
            yield stalled
        expiry = certificate_expiry(self.cert_file) if self.cert_file else None
        if expiry is not None:
            yield GaugeMetricFamily(
                "flaskops_webhook_certificate_expiry_timestamp_seconds",
                "When the webhook's serving certificate expires (notAfter, Unix seconds).",
                value=expiry,
            )


def certificate_expiry(path: Path) -> float | None:
    """notAfter of the PEM certificate at `path` in Unix seconds; None when it is missing or unreadable."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc.timestamp()


STATE = StateCollector()
REGISTRY.register(STATE)


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The text exposition of every registered metric (flaskops_*, plus the client's process_*)."""
    return generate_latest(registry)


async def serve(addr: str, port: int) -> Any:
    """Serve GET /metrics on addr:port from the running event loop; returns the aiohttp runner to clean up.

    On the event loop, not in a thread: the scrape reads kopf's index, which only the loop changes.
    """
    import aiohttp.web
    from prometheus_client import CONTENT_TYPE_LATEST

    async def handle(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get("/metrics", handle)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, addr, port).start()
    log.info("serving metrics", extra={"url": f"http://{addr}:{port}/metrics"})
    return runner
