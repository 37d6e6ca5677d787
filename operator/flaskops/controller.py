"""The FlaskApp controller: what an event means for the work queue, and one queued reconcile end to end.

handlers.py (kopf) calls the `*_event` functions on its event loop; they only touch memory and put keys on
the queue. The queue's workers (runtime.py) call `process(key)`, which reads the app from the cache, runs
the reconcile (reconcile.py), writes status when it changed in a way that matters, posts Events and
manages the app's finalizer. Nothing here decides how an app should look: that is reconcile.py's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

import kopf

from . import cache, inventory, metrics, names, safety, servercheck
from . import conditions as c
from . import runtime as runtime_mod
from . import settings as settings_mod
from .kube import FIELD_MANAGER, Kube, is_conflict, is_not_found, merge_patch_diff, own_namespace
from .postgres import pool as pg_pool
from .reconcile import Event, Reconciler, Result

log = logging.getLogger("flaskops")
CONFIG = settings_mod.from_env()
# Admin connections kept per PostgresServer: as many as its provisioning gate lets run at once.
pg_pool.configure(max_size=CONFIG.provision_concurrency, max_idle=CONFIG.admin_idle_seconds)
__all__ = ["FIELD_MANAGER", "own_namespace"]

# How soon a failed reconcile runs again.
RETRY_SECONDS = 10.0
# How long a reconcile waits for a provisioning slot on a busy PostgresServer before retrying later.
GATE_WAIT_SECONDS = 15.0
# Status that changed only in progress details (condition messages, replica counts, a start time) is
# written at most this often; a change of any condition's status or reason is written at once.
PROGRESS_SECONDS = 10.0
# How soon a finalizer that could not drop the database yet tries again.
FINALIZE_RETRY_SECONDS = 15.0

CACHE = cache.ObjectCache()
# The indexes the reconcile reads besides the cache (kopf's, attached at start-up by handlers.start).
INDEXES: dict[str, Any] = {}
# The wall clock the reconcile reads (RFC 3339 text): a test drives it with its fake API server's clock.
CLOCK: Any = c.now_iso
# Whether this process leads (replaced by handlers.start under leader election).
LEADING: Any = lambda: True  # noqa: E731 - a swappable hook, not a function definition

_kube: Kube | None = None
_runtime: runtime_mod.Runtime | None = None
# (namespace, name) -> the resourceVersion of the FlaskApp as the operator's last write left it: the
# watch's echo of that write is no reason to reconcile.
_echo: dict[tuple[str, str], str] = {}
# (namespace, name) -> when its status was last written (monotonic seconds), for PROGRESS_SECONDS.
_written_at: dict[tuple[str, str], float] = {}
# PostgresServer name -> the generation last seen (a new one re-judges the apps on it).
_server_generations: dict[str, int] = {}
# (namespace, app) -> (its server, its worst case) as last seen, so only a change pokes the server's check.
_app_budgets: dict[tuple[str, str], tuple[str | None, int | None]] = {}
SERVER_CHECKS: servercheck.Scheduler | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


def client() -> cache.CachedClient:
    """The reconcile's API access: reads from the cache, writes to the API server."""
    return cache.CachedClient(kube(), CACHE)


def runtime() -> runtime_mod.Runtime:
    global _runtime
    if _runtime is None:
        _runtime = runtime_mod.Runtime(
            process,
            workers=CONFIG.max_workers,
            retry_seconds=RETRY_SECONDS,
            gate_limit=CONFIG.provision_concurrency,
            gate_wait_seconds=GATE_WAIT_SECONDS,
        )
    return _runtime


# --- the indexes as the reconcile and the webhook read them ---------------------------------------------


def servers_of(index: Any) -> dict[str, Mapping[str, Any]]:
    return {key: next(iter(store)) for key, store in index.items()}


def entries_of(index: Any) -> list[Mapping[str, Any]]:
    return list(index.get(None, ()))


def labels_of(index: Any, namespace: str) -> Mapping[str, str] | None:
    store = index.get(namespace)
    return next(iter(store), None) if store else None


# --- events -> queue ------------------------------------------------------------------------------------


def enqueue(namespace: str, name: str) -> None:
    if LEADING():
        runtime().queue.add((namespace, name))


def enqueue_all() -> None:
    """Every app the cache knows (a new leader's first round)."""
    for entry in entries_of(INDEXES.get("flaskapp_db") or {}):
        runtime().queue.add((entry["namespace"], entry["name"]))


def flaskapp_event(type: str | None, namespace: str, name: str, body: Mapping[str, Any]) -> None:
    """A FlaskApp was listed, added, changed or deleted."""
    key = (namespace, name)
    spec = body.get("spec") or {}
    _budget_seen(type, key, spec)
    if type == "DELETED":
        _echo.pop(key, None)
        _written_at.pop(key, None)
        CACHE.forget_app(namespace, name)
        runtime().forget(key)
        return
    CACHE.seen(names.FLASKAPP_KIND, namespace, name, (body.get("metadata") or {}).get("resourceVersion"))
    if _echo.get(key) == (body.get("metadata") or {}).get("resourceVersion"):
        return  # our own status or finalizer write coming back
    enqueue(namespace, name)


def _budget_seen(type: str | None, key: tuple[str, str], spec: Mapping[str, Any]) -> None:
    # A new app, a deleted one, or a new worst case changes its server's connection budget: re-check
    # soon rather than at the next interval. The initial listing (type None) pokes nothing: each
    # server's first check already counts every app.
    server = None if type == "DELETED" else (spec.get("database") or {}).get("server")
    seen = (server, inventory.app_entry(key[0], key[1], spec, {})["connections"] if server else None)
    before = _app_budgets.pop(key, None)
    if type != "DELETED":
        _app_budgets[key] = seen
    if type is None or before == seen:
        return
    for changed in {before[0] if before else None, server} - {None}:
        server_checks().soon(str(changed))


def namespace_event(name: str) -> None:
    """A namespace's labels may have changed: re-judge the apps in it on servers that select namespaces."""
    servers = servers_of(INDEXES.get("postgresserver_spec") or {})
    for entry in entries_of(INDEXES.get("flaskapp_db") or {}):
        server = servers.get(entry.get("server") or "")
        if (
            entry["namespace"] == name
            and server
            and (server.get("allowedNamespaces") or {}).get("from") == "Selector"
        ):
            enqueue(entry["namespace"], entry["name"])


def server_event(type: str | None, name: str, meta: Mapping[str, Any]) -> None:
    """A PostgresServer was listed, changed or deleted: keep its check scheduled; a new generation (a spec
    change) or a deletion re-judges every app on it."""
    checks = server_checks()
    generation = int(meta.get("generation") or 0)
    if type == "DELETED" or meta.get("deletionTimestamp"):
        checks.forget(name)
        _server_generations.pop(name, None)
        changed = True
    else:
        checks.seen(name, generation)
        changed = _server_generations.get(name) not in (None, generation)
        _server_generations[name] = generation
    if changed and type is not None:
        for entry in entries_of(INDEXES.get("flaskapp_db") or {}):
            if entry.get("server") == name:
                enqueue(entry["namespace"], entry["name"])


# --- one queued reconcile -------------------------------------------------------------------------------


def process(key: tuple[str, str]) -> float | None:
    """Reconcile the app `key` from the cache; seconds until it should run again (None: on news only)."""
    if not LEADING():
        return None  # a key queued before this process lost the lease: the leader has the app
    namespace, name = key
    found = CACHE.get(names.FLASKAPP_KIND, namespace, name)
    if found is None:
        return None
    body: Mapping[str, Any] = found
    meta = body["metadata"]
    wants_finalizer = _drops_database(body.get("spec") or {})
    has_finalizer = names.FINALIZER in (meta.get("finalizers") or ())
    if meta.get("deletionTimestamp"):
        return _finalize(body) if has_finalizer else None
    if wants_finalizer != has_finalizer:
        # Before any database exists: a Delete-policy app is never left without its finalizer.
        try:
            body = _set_finalizer(body, wants_finalizer)
        except Exception as exc:
            if is_conflict(exc) or is_not_found(exc):
                return None  # changed or gone meanwhile: its watch event queues it again
            raise
    with metrics.reconcile() as measured:
        result = reconciler().reconcile(body)
        old = body.get("status") or {}
        again = result.retry_after or result.recheck_after
        if result.status != old:
            delay = _write_status(key, body, old, result)
            if delay is not None:
                again = min(again or delay, delay)
        _post(body, result.events)
        measured(old, result.status)
    return again


def reconciler() -> Reconciler:
    indexes = INDEXES
    servers = servers_of(indexes["postgresserver_spec"])
    entries = entries_of(indexes["flaskapp_db"])
    server_ids = inventory.server_ids(entries)
    return Reconciler(
        client(),
        others=lambda app, ident: inventory.other_apps(
            app.namespace, app.name, entries, servers, near=safety.location(ident)
        ),
        now=CLOCK,
        connect_timeout=CONFIG.connect_timeout,
        gate=_timed_gate,
        namespace_labels=lambda ns: labels_of(indexes["namespace_labels"], ns),
        server_id=server_ids.get,
    )


@contextlib.contextmanager
def _timed_gate(server: str) -> Iterator[None]:
    # The provisioning session's own time, after the wait for a slot.
    with runtime().gate(server), metrics.provisioning(server):
        yield


def _essential(status: Mapping[str, Any]) -> dict[str, Any]:
    """Status without its progress details: what a user or a controller acts on."""
    out = {k: v for k, v in status.items() if k not in ("replicas", "readyReplicas", "conditions")}
    out["conditions"] = sorted(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
        for c in status.get("conditions") or []
    )
    migration = dict(out.get("migration") or {})
    migration.pop("startedAt", None)
    out["migration"] = migration
    return out


def _write_status(
    key: tuple[str, str], body: Mapping[str, Any], old: Mapping[str, Any], result: Result
) -> float | None:
    """Patch the status; a progress-only change waits until PROGRESS_SECONDS after the last write.
    Returns the seconds until a deferred write is due (None: written)."""
    now = time.monotonic()
    if _essential(old) == _essential(result.status):
        wait = PROGRESS_SECONDS - (now - _written_at.get(key, -PROGRESS_SECONDS))
        if wait > 0:
            return wait
    namespace, name = key
    patch = {"status": merge_patch_diff(old, result.status)}
    written = client().merge_patch(names.FLASKAPP_KIND, namespace, name, patch, sub="status")
    _echo[key] = written["metadata"]["resourceVersion"]
    _written_at[key] = now
    log.info(
        "status written",
        extra={
            "namespace": namespace,
            "flaskapp": name,
            "generation": result.status.get("observedGeneration"),
            "changed": _changed_conditions(old.get("conditions") or [], result.status["conditions"]),
        },
    )
    return None


def _changed_conditions(old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]) -> dict[str, str]:
    """type -> "status/reason" for each condition that changed; Ready also says why (secret-free text)."""

    def show(c: Mapping[str, Any]) -> str:
        text = f"{c.get('status')}/{c.get('reason')}"
        return f"{text}: {c.get('message')}" if c.get("type") == names.READY else text

    before = {c["type"]: show(c) for c in old}
    return {c["type"]: show(c) for c in new if before.get(c["type"]) != show(c)}


def _post(body: Mapping[str, Any], events: list[Event]) -> None:
    for ev in events:
        kopf.event(cast(kopf.Body, body), type=ev.type, reason=ev.reason, message=ev.message)


# --- the finalizer: only apps whose database is dropped on deletion carry it ------------------------------


def _drops_database(spec: Mapping[str, Any]) -> bool:
    db = spec.get("database") or {}
    return (
        bool(db.get("server"))
        and db.get("deletionPolicy") == "Delete"
        and spec.get("environment") != "production"
    )


def _set_finalizer(body: Mapping[str, Any], present: bool) -> Mapping[str, Any]:
    """Add or remove the operator's finalizer; the app as the API server returned it.

    The whole list is sent with the resourceVersion read, so a finalizer someone else added meanwhile is
    never dropped: the API server refuses the stale write (409) and the reconcile runs again.
    """
    meta = body["metadata"]
    others = [f for f in meta.get("finalizers") or () if f != names.FINALIZER]
    patch = {
        "metadata": {
            "finalizers": [*others, names.FINALIZER] if present else others,
            "resourceVersion": meta["resourceVersion"],
        }
    }
    written = client().merge_patch(names.FLASKAPP_KIND, meta["namespace"], meta["name"], patch)
    _echo[(meta["namespace"], meta["name"])] = written["metadata"]["resourceVersion"]
    return cache.view(names.FLASKAPP_KIND, written)


def _finalize(body: Mapping[str, Any]) -> float | None:
    """Drop the database of a deleted app whose policy is Delete, then release it."""
    done, events = Reconciler(client(), connect_timeout=CONFIG.connect_timeout).finalize(body)
    _post(body, events)
    if not done:
        return FINALIZE_RETRY_SECONDS
    try:
        _set_finalizer(body, False)
    except Exception as exc:
        if not is_not_found(exc) and not is_conflict(exc):
            raise
        return None if is_not_found(exc) else 1.0  # gone already / changed meanwhile: look again
    log.info(
        "finalized", extra={"namespace": body["metadata"]["namespace"], "flaskapp": body["metadata"]["name"]}
    )
    return None


# --- PostgresServer status: checked on first sight, on each new generation, then on its own timer ---------


def check_server(name: str) -> bool | None:
    """Check one PostgresServer and post its transition Events; whether it is Ready (None: it is gone)."""
    if not LEADING():
        return True  # a follower writes no status; its timer keeps the interval until it leads
    with runtime().lock((names.POSTGRESSERVER_KIND, name)):
        entries = entries_of(INDEXES.get("flaskapp_db") or {})
        worst = [e["connections"] for e in entries if e.get("server") == name]
        checked = servercheck.check(client(), name, worst, connect_timeout=CONFIG.connect_timeout)
    if checked is None:
        return None
    _post(checked.body, checked.events)
    return checked.ready


def server_checks() -> servercheck.Scheduler:
    global SERVER_CHECKS
    if SERVER_CHECKS is None:
        SERVER_CHECKS = servercheck.Scheduler(check_server, CONFIG.server_check_seconds)
    return SERVER_CHECKS
