"""kopf wiring only: which events reach the reconcile, the webhook and the finalizer. No decisions here."""

# kopf's callback protocols list every keyword it may pass; our handlers declare only what they use.
# mypy: disable-error-code="arg-type"

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

import kopf

from . import inventory, leader, metrics, names, safety, servercheck, webhook
from . import settings as settings_mod
from .kube import FIELD_MANAGER, Kube, is_not_found, merge_patch_diff, own_namespace
from .reconcile import RETRY_MIGRATION, Event, Reconciler, Result
from .safety import summary

log = logging.getLogger("flaskops")
CONFIG = settings_mod.from_env()
FLASKAPPS = (names.GROUP, names.VERSION, names.FLASKAPP_PLURAL)
SERVERS = (names.GROUP, names.VERSION, names.POSTGRESSERVER_PLURAL)
NAMESPACES = ("v1", "namespaces")
CHILD_LABELS = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_APP: kopf.PRESENT}


class _State:
    """Process-wide: one API client, one lock per FlaskApp (kopf runs sync handlers in threads)."""

    def __init__(self) -> None:
        self._kube: Kube | None = None
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._timers: dict[tuple[str, str], threading.Timer] = {}
        self._gates: dict[str, threading.BoundedSemaphore] = {}
        # Event-driven reconciles per app: running, and whether events arrived while it ran (coalescing).
        self._running: set[tuple[str, str]] = set()
        self._dirty: set[tuple[str, str]] = set()
        self._guard = threading.Lock()

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube()
        return self._kube

    def lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @contextlib.contextmanager
    def gate(self, server: str) -> Iterator[None]:
        """At most FLASKOPS_PROVISION_CONCURRENCY provisioning sessions per PostgresServer at once.

        Waits at most GATE_WAIT_SECONDS for a slot, then raises TimeoutError (the reconcile retries later):
        a slow server must not hold kopf's worker threads indefinitely.
        """
        with self._guard:
            sem = self._gates.setdefault(server, threading.BoundedSemaphore(CONFIG.provision_concurrency))
        if not sem.acquire(timeout=GATE_WAIT_SECONDS):
            raise TimeoutError(
                f"no provisioning slot on PostgresServer '{server}' within {GATE_WAIT_SECONDS}s"
            )
        try:
            yield
        finally:
            sem.release()

    def begin(self, key: tuple[str, str]) -> bool:
        """Claim the right to reconcile `key` from an event; False when a claim is held (it runs again)."""
        with self._guard:
            if key in self._running:
                self._dirty.add(key)
                return False
            self._running.add(key)
            return True

    def again(self, key: tuple[str, str]) -> bool:
        """After a reconcile from an event: True when more events came meanwhile (reconcile once more),
        else the claim is released."""
        with self._guard:
            if key in self._dirty:
                self._dirty.discard(key)
                return True
            self._running.discard(key)
            return False

    def retry_later(self, key: tuple[str, str], delay: float, fn: Any) -> None:
        """Run `fn` after `delay` seconds unless a timer for `key` is already armed and has not fired.

        A timer leaves the registry the moment it fires, so whatever its run arms — directly, or through
        another thread's reconcile its nudge coalesced into — is a new timer: a chain of rechecks never
        dies on a timer thread that is still finishing (is_alive() said "pending" for a timer that had
        already run, and the recheck of a stuck rollout was lost).
        """
        with self._guard:
            if key in self._timers:
                return
            # kopf.event finds its API context in context variables: a timer thread starts with none, so
            # the reconcile it runs would lose its Events. It runs in a copy of the arming thread's context.
            context = contextvars.copy_context()

            def fire() -> None:
                with self._guard:
                    if self._timers.get(key) is timer:
                        del self._timers[key]
                context.run(fn)

            timer = threading.Timer(delay, fire)
            timer.daemon = True
            self._timers[key] = timer
            timer.start()


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled-configuration annotation holding digests, not a copy of the object.

    kopf stores the "essence" it last handled (spec, labels, annotations) to tell a real change from noise.
    A verbatim copy of a large spec outgrows the API server's 256 KiB limit on all annotations together,
    after which kopf cannot even remove its finalizer (the app hangs Terminating). The handlers never read
    kopf's diff — every reconcile reads the whole object — so a digest per stanza tells kopf all it
    needs: whether something changed.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        essence = super().build(body=body, extra_fields=extra_fields)
        return _digests(essence)


def _digests(essence: Mapping[str, Any]) -> dict[str, Any]:
    """{"spec": {...}, "metadata": {"labels": {...}}} -> the same keys with a sha256 of each leaf stanza."""
    out: dict[str, Any] = {}
    for key, value in essence.items():
        if key == "metadata" and isinstance(value, Mapping):
            out[key] = _digests(value)
        else:
            blob = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
            out[key] = {"sha256": hashlib.sha256(blob).hexdigest()}
    return out


# How long a reconcile waits for a provisioning slot on a busy PostgresServer before retrying later.
GATE_WAIT_SECONDS = 15.0
STATE = _State()
# How soon a failed reconcile runs again, on every path (kopf's handler retry, the child-event timer).
RETRY_SECONDS = 10.0


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own login through the kubernetes client, which knows no namespace: kopf would post a
    # cluster-scoped PostgresServer's Events in "default". They go to the operator's own namespace, where
    # the chart lets it create Events in every mode.
    info = kopf.login_via_client(**kwargs)
    namespace = own_namespace()
    return dataclasses.replace(info, default_namespace=namespace) if info is not None and namespace else info


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf leaves other loggers at the root's WARNING; the operator's own writes are worth INFO lines
    # (the "flaskops" logger is the parent of every module's logger).
    log.setLevel(logging.INFO)
    # Our own names for kopf's bookkeeping, so several kopf operators never fight over one annotation.
    settings.persistence.finalizer = FOLLOWER_FINALIZER if CONFIG.leader_election else names.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP, v1=False)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration", v1=False
    )
    # Watch only our own children, filtered by the API server rather than in this process.
    selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    settings.watching.label_selectors[("batch", "v1", "jobs")] = selector
    settings.watching.label_selectors[("apps", "v1", "deployments")] = selector
    settings.watching.label_selectors[("v1", "secrets")] = selector
    settings.watching.label_selectors[("v1", "services")] = selector
    if CONFIG.server_selector:  # FLASKOPS_POSTGRESSERVER_SELECTOR: other PostgresServers are never seen
        settings.watching.label_selectors[(names.GROUP, names.POSTGRESSERVER_PLURAL)] = CONFIG.server_selector
    settings.execution.max_workers = CONFIG.max_workers
    # Events say who posted them (`kubectl describe`'s "From" column): the operator, not kopf.
    settings.posting.reporting_component = names.MANAGED_BY
    settings.posting.reporting_instance = os.environ.get("POD_NAME") or socket.gethostname()
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    # A handler that raised (e.g. the API server went away mid-reconcile) is retried by kopf after 60 s by
    # default; an app created just before an outage then waits a minute after it. Retry as soon as the
    # operator's own retries do.
    settings.execution.default_backoff = RETRY_SECONDS
    if CONFIG.webhook_mode != "none":
        from . import admission

        admission.configure(settings, CONFIG)
    CONFIGURED.set()


# --- leader election: every replica serves the webhook (and so keeps the indexes); one reconciles ----------

# A follower runs every kopf handler's filter as False. kopf then treats the FlaskApps as "not ours": it
# stores no diffbase or progress (no change is marked handled behind the leader's back) — but it would
# remove a finalizer it finds and no handler asks for. So a follower's kopf knows the finalizer under this
# name, which no object carries, and the real name is set at the same instant as `leading` (on kopf's
# loop, between two events): no follower ever adds or removes the real finalizer.
FOLLOWER_FINALIZER = f"{names.GROUP}/follower-holds-no-finalizer"
# Written on every FlaskApp by a new leader: an event kopf treats as a resume (an annotation under its own
# prefix is no change), so apps created, changed or deleted while nobody led are handled now.
ANNOTATION_RESUMED = f"{names.ANNOTATION_PREFIX}/resumed-by"
LEADERSHIP: leader.Leadership | None = None
CONFIGURED = threading.Event()
RESUME_ROUNDS = 5


def _leading(**_: Any) -> bool:
    """The handlers' filter: True in the leader (or without leader election), False in a follower."""
    return LEADERSHIP is None or LEADERSHIP.leading


@kopf.on.startup()
async def campaign(settings: kopf.OperatorSettings, flaskapp_db: Any, **_: Any) -> None:
    if not CONFIG.leader_election:
        return
    global LEADERSHIP  # one election per process, read by every handler's filter
    loop = asyncio.get_running_loop()
    # configure() (another startup handler, maybe in a worker thread) sets the follower's finalizer name
    # first. Polled on the loop: waiting in a worker thread could take the last one configure needs.
    deadline = loop.time() + 30
    while not CONFIGURED.is_set() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    STATE.kube.api  # noqa: B018 - loads the client configuration the Lease lock uses

    def flip() -> None:
        settings.persistence.finalizer = names.FINALIZER

    def resume_all() -> None:
        stamp = (
            f"{LEADERSHIP.identity if LEADERSHIP else ''} {datetime.datetime.now(datetime.UTC).isoformat()}"
        )
        todo = [(e["namespace"], e["name"]) for e in _entries(flaskapp_db)]
        # In the election's own thread: a few rounds for the apps whose patch failed (the API server or a
        # webhook replica hiccuped); an app left out is resumed by its next event.
        for _ in range(RESUME_ROUNDS):
            failed = []
            for namespace, name in todo:
                try:
                    STATE.kube.merge_patch(
                        names.FLASKAPP_KIND,
                        namespace,
                        name,
                        {"metadata": {"annotations": {ANNOTATION_RESUMED: stamp}}},
                    )
                except Exception as exc:  # any failure: try again; the loop must reach every app
                    if not is_not_found(exc):  # gone meanwhile: nothing to resume
                        failed.append((namespace, name))
            if not failed:
                return
            todo = failed
            time.sleep(leader.RETRY_PERIOD_SECONDS)
        log.warning("resume failed", extra={"flaskapps": [f"{ns}/{n}" for ns, n in todo]})

    LEADERSHIP = leader.Leadership(
        CONFIG.lease_name, CONFIG.lease_namespace, on_flip=flip, on_leading=resume_all
    )
    LEADERSHIP.start(loop)


@kopf.on.cleanup()
def release_lease(**_: Any) -> None:
    if LEADERSHIP is not None:
        LEADERSHIP.release()


# --- indexes: what every app and server is, in memory, for rule S5 and the webhook ------------------------


@kopf.index(*FLASKAPPS)
def flaskapp_db(
    namespace: str,
    name: str,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    **_: Any,
) -> Any:
    created = str(meta.get("creationTimestamp") or "")
    return {None: inventory.app_entry(namespace, name, spec, status, created)}


@kopf.index(*FLASKAPPS)
def flaskapp_ready(namespace: str, name: str, status: Mapping[str, Any], **_: Any) -> Any:
    # What the metrics endpoint counts (apps by Ready reason, the stalled ones): read at scrape time.
    return {None: metrics.app_key(namespace, name, status)}


@kopf.on.startup()
async def serve_metrics(flaskapp_ready: Any, memo: kopf.Memo, **_: Any) -> None:
    if CONFIG.metrics_port:
        metrics.STATE.apps = lambda: list(flaskapp_ready.get(None, ()))
        try:
            memo["metrics"] = await metrics.serve(CONFIG.metrics_addr, CONFIG.metrics_port)
        except OSError as exc:  # the port is taken: stop with the reason, never run half-configured
            raise kopf.PermanentError(f"cannot serve metrics on port {CONFIG.metrics_port}: {exc}") from exc


@kopf.on.cleanup()
async def stop_metrics(memo: kopf.Memo, **_: Any) -> None:
    if "metrics" in memo:
        await memo["metrics"].cleanup()


@kopf.index(*SERVERS)
def postgresserver_spec(name: str, spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> Any:
    return {name: inventory.server_entry(spec, status)}


@kopf.index(*NAMESPACES)
def namespace_labels(name: str, labels: Mapping[str, str], **_: Any) -> Any:
    # Only the labels: what a PostgresServer's allowedNamespaces selector reads, without an API call.
    return {name: dict(labels)}


def _labels_of(index: Any, namespace: str) -> Mapping[str, str] | None:
    store = index.get(namespace)
    return next(iter(store), None) if store else None


def _indexes(flaskapp_db: Any, postgresserver_spec: Any, namespace_labels: Any) -> dict[str, Any]:
    """The operator's indexes by name, as kopf passes them to handlers."""
    return {
        "flaskapp_db": flaskapp_db,
        "postgresserver_spec": postgresserver_spec,
        "namespace_labels": namespace_labels,
    }


def _servers(index: Any) -> dict[str, Mapping[str, Any]]:
    return {key: next(iter(store)) for key, store in index.items()}


def _entries(index: Any) -> list[Mapping[str, Any]]:
    return list(index.get(None, ()))


# --- the reconcile --------------------------------------------------------------------------------------


def _post(body: Mapping[str, Any], events: list[Event]) -> None:
    for ev in events:
        kopf.event(cast(kopf.Body, body), type=ev.type, reason=ev.reason, message=ev.message)


def run(namespace: str, name: str, indexes: Mapping[str, Any]) -> Result | None:
    """Reconcile one FlaskApp from its freshest state; write status only when it changed."""
    if not _leading():
        return None  # a retry timer armed before a restart as follower: the leader has the app
    kube = STATE.kube
    with STATE.lock((namespace, name)), metrics.reconcile() as measured:
        body = kube.get(names.FLASKAPP_KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        servers = _servers(indexes["postgresserver_spec"])
        entries = _entries(indexes["flaskapp_db"])
        server_ids = inventory.server_ids(entries)
        reconciler = Reconciler(
            kube,
            others=lambda app, ident: inventory.other_apps(
                namespace, name, entries, servers, near=safety.location(ident)
            ),
            connect_timeout=CONFIG.connect_timeout,
            gate=_timed_gate,
            namespace_labels=lambda ns: _labels_of(indexes["namespace_labels"], ns),
            server_id=server_ids.get,
        )
        result = reconciler.reconcile(body)
        old = body.get("status") or {}
        if result.status != old:
            patch = {"status": merge_patch_diff(old, result.status)}
            kube.merge_patch(names.FLASKAPP_KIND, namespace, name, patch, sub="status")
            log.info(
                "status written",
                extra={
                    "namespace": namespace,
                    "flaskapp": name,
                    "generation": result.status.get("observedGeneration"),
                    "changed": _changed_conditions(old.get("conditions") or [], result.status["conditions"]),
                },
            )
        _post(body, result.events)
        measured(old, result.status)
        return result


@contextlib.contextmanager
def _timed_gate(server: str) -> Iterator[None]:
    # The provisioning session's own time, after the wait for a slot.
    with STATE.gate(server), metrics.provisioning(server):
        yield


def _changed_conditions(old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]) -> dict[str, str]:
    """type -> "status/reason" for each condition that changed; Ready also says why (secret-free text)."""

    def show(c: Mapping[str, Any]) -> str:
        text = f"{c.get('status')}/{c.get('reason')}"
        return f"{text}: {c.get('message')}" if c.get("type") == names.READY else text

    before = {c["type"]: show(c) for c in old}
    return {c["type"]: show(c) for c in new if before.get(c["type"]) != show(c)}


def nudge(namespace: str, name: str, indexes: Mapping[str, Any]) -> None:
    """Reconcile an app because one of its inputs changed; retry on a timer if a step asked to.

    Events for one app coalesce, as in controller-runtime's work queue: while a reconcile of it runs,
    further nudges only mark it dirty and return, and it runs once more when done. A burst of events
    (a tenant labelling hundreds of Secrets like an app's children) costs at most two reconciles at a
    time, not one worker thread and one reconcile each.
    """
    key = (namespace, name)
    if not STATE.begin(key):
        return
    delay: float | None = None
    while True:
        try:
            result = run(namespace, name, indexes)
        except Exception:
            log.exception("reconcile failed", extra={"namespace": namespace, "flaskapp": name})
            delay = RETRY_SECONDS
        else:
            delay = (result.retry_after or result.recheck_after) if result else None
        if not STATE.again(key):
            break
    if delay:
        STATE.retry_later((namespace, name), delay, lambda: nudge(namespace, name, indexes))


@kopf.on.resume(*FLASKAPPS, when=_leading)
@kopf.on.create(*FLASKAPPS, when=_leading)
@kopf.on.update(*FLASKAPPS, when=_leading)
def reconcile_flaskapp(
    namespace: str, name: str, flaskapp_db: Any, postgresserver_spec: Any, namespace_labels: Any, **_: Any
) -> None:
    indexes = _indexes(flaskapp_db, postgresserver_spec, namespace_labels)
    result = run(namespace, name, indexes)
    if result is not None and result.recheck_after and not result.retry_after:
        # A look later, not a failure: a timer, so kopf records this change as handled.
        key = (namespace, name)
        STATE.retry_later(key, result.recheck_after, lambda: nudge(namespace, name, indexes))
    if result is not None and result.retry_after:
        ready: Mapping[str, Any] = next(
            (c for c in result.status["conditions"] if c["type"] == names.READY), {}
        )
        raise kopf.TemporaryError(ready.get("message", "retrying"), delay=result.retry_after)


def _retry_pending(annotations: Mapping[str, str], status: Mapping[str, Any], **_: Any) -> bool:
    if not _leading():
        return False
    wanted = annotations.get(RETRY_MIGRATION)
    return bool(wanted) and wanted != ((status or {}).get("migration") or {}).get("retry")


@kopf.on.event(*FLASKAPPS, when=_retry_pending)
def retry_requested(
    namespace: str, name: str, flaskapp_db: Any, postgresserver_spec: Any, namespace_labels: Any, **_: Any
) -> None:
    # kopf's diff ignores every annotation under its own storage prefix (flaskops.dev/), so a user's
    # retry annotation never reaches on.update. An event handler sees it; status.migration.retry records
    # the token a Job was made for, so the handler stops firing once the retry has started.
    nudge(namespace, name, _indexes(flaskapp_db, postgresserver_spec, namespace_labels))


def _child(body: Mapping[str, Any], labels: Mapping[str, str], **kwargs: Any) -> bool:
    """A child of the app its label names: controlled by (an ownerReference to) the FlaskApp of that name.

    The labels alone are anyone's to set: an object that merely carries them (a tenant's decoy) wakes no
    reconcile. A tenant may still point ownerReferences at its own app; nudge() coalesces those events.
    """
    app = labels.get(names.LABEL_APP)
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return _leading(**kwargs) and any(
        ref.get("kind") == names.FLASKAPP_KIND and ref.get("name") == app and ref.get("controller")
        for ref in refs
    )


def _news(type: str | None, body: Mapping[str, Any], **_: Any) -> bool:
    """A Secret or Service event worth a reconcile: a deletion, or a change flaskops did not make.

    The initial listing (type None) is not news (every app is resumed at start-up anyway), nor is the echo
    of the operator's own write: these children are written by flaskops alone, so any other field manager
    means someone else changed a field (managedFields times have one-second granularity, too coarse to
    tell who wrote last).
    """
    if not _child(body=body, labels=(body.get("metadata") or {}).get("labels") or {}):
        return False
    if type == "DELETED":
        return True
    if type not in ("ADDED", "MODIFIED"):
        return False
    entries = (body.get("metadata") or {}).get("managedFields") or []
    return any(entry.get("manager") != FIELD_MANAGER for entry in entries)


@kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS, when=_child)
@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS, when=_child)
@kopf.on.event("v1", "secrets", labels=CHILD_LABELS, when=_news)
@kopf.on.event("v1", "services", labels=CHILD_LABELS, when=_news)
def child_changed(
    namespace: str,
    labels: Mapping[str, str],
    flaskapp_db: Any,
    postgresserver_spec: Any,
    namespace_labels: Any,
    **_: Any,
) -> None:
    # A Job finishing or a rollout progressing is news for the owning app, at once: no polling loop. So is
    # a Secret or Service someone deleted or edited: the reconcile puts it back (drift).
    indexes = _indexes(flaskapp_db, postgresserver_spec, namespace_labels)
    nudge(namespace, labels[names.LABEL_APP], indexes)


def _modified(type: str | None, **_: Any) -> bool:
    return type == "MODIFIED" and _leading()


@kopf.on.event(*NAMESPACES, when=_modified)
def namespace_changed(
    name: str,
    flaskapp_db: Any,
    postgresserver_spec: Any,
    namespace_labels: Any,
    **_: Any,
) -> None:
    # A label may now admit (or no longer admit) the namespace to a PostgresServer's allowedNamespaces.
    # An event handler, not on.update: kopf would store its diffbase in an annotation on the namespace,
    # which the operator may not patch. Only apps on servers that select namespaces are re-judged.
    indexes = _indexes(flaskapp_db, postgresserver_spec, namespace_labels)
    servers = _servers(postgresserver_spec)
    for entry in _entries(flaskapp_db):
        server = servers.get(entry.get("server") or "")
        if (
            entry["namespace"] == name
            and server
            and (server.get("allowedNamespaces") or {}).get("from") == "Selector"
        ):
            nudge(entry["namespace"], entry["name"], indexes)


@kopf.on.create(*SERVERS, when=_leading)
@kopf.on.update(*SERVERS, when=_leading)
def server_changed(
    name: str, flaskapp_db: Any, postgresserver_spec: Any, namespace_labels: Any, **_: Any
) -> None:
    indexes = _indexes(flaskapp_db, postgresserver_spec, namespace_labels)
    for entry in _entries(flaskapp_db):
        if entry.get("server") == name:
            nudge(entry["namespace"], entry["name"], indexes)


# --- PostgresServer status: checked on first sight, on each new generation, then on its own timer ---------


def check_server(name: str, flaskapp_db: Any) -> bool | None:
    """Check one PostgresServer and post its transition Events; whether it is Ready (None: it is gone)."""
    if not _leading():
        return True  # a follower writes no status; its timer keeps the interval until it leads
    with STATE.lock((names.POSTGRESSERVER_KIND, name)):  # cluster-scoped: no namespace to collide with
        worst = [e["connections"] for e in _entries(flaskapp_db) if e.get("server") == name]
        checked = servercheck.check(STATE.kube, name, worst, connect_timeout=CONFIG.connect_timeout)
    if checked is None:
        return None
    _post(checked.body, checked.events)
    return checked.ready


SERVER_CHECKS: servercheck.Scheduler | None = None
# (namespace, app) -> (its server, its worst case) as last seen, so only a change pokes the server's check.
APP_BUDGETS: dict[tuple[str, str], tuple[str | None, int | None]] = {}


def _server_checks(flaskapp_db: Any) -> servercheck.Scheduler:
    # The index object is live: the timers read the apps on the server at each check.
    global SERVER_CHECKS
    if SERVER_CHECKS is None:
        SERVER_CHECKS = servercheck.Scheduler(
            lambda server: check_server(server, flaskapp_db), CONFIG.server_check_seconds
        )
    return SERVER_CHECKS


# Both event handlers below are async on purpose: they only touch memory and arm timers, so they run on
# the event loop instead of taking a worker thread for every watch event (FlaskApp status writes included).


@kopf.on.event(*SERVERS)
async def server_seen(
    type: str | None, name: str, meta: Mapping[str, Any], flaskapp_db: Any, **_: Any
) -> None:
    # An event handler, not a kopf daemon or timer: those put a finalizer on every PostgresServer.
    checks = _server_checks(flaskapp_db)
    if type == "DELETED" or meta.get("deletionTimestamp"):
        checks.forget(name)
    else:
        checks.seen(name, int(meta.get("generation") or 0))


@kopf.on.event(*FLASKAPPS)
async def app_budget_seen(
    type: str | None, namespace: str, name: str, spec: Mapping[str, Any], flaskapp_db: Any, **_: Any
) -> None:
    # A new app, a deleted one, or a new worst case changes its server's connection budget: re-check
    # soon rather than at the next interval. The initial listing (type None) pokes nothing: each
    # server's first check already counts every app.
    key = (namespace, name)
    server = None if type == "DELETED" else (spec.get("database") or {}).get("server")
    seen = (server, inventory.app_entry(namespace, name, spec, {})["connections"] if server else None)
    before = APP_BUDGETS.pop(key, None)
    if type != "DELETED":
        APP_BUDGETS[key] = seen
    if type is None or before == seen:
        return
    for changed in {before[0] if before else None, server} - {None}:
        _server_checks(flaskapp_db).soon(str(changed))


@kopf.on.cleanup()
def stop_server_checks(**_: Any) -> None:
    if SERVER_CHECKS is not None:
        SERVER_CHECKS.stop()


# --- deletion: drop the database only for deletionPolicy Delete (kopf adds the finalizer only then) ------


def _drops_database(spec: Mapping[str, Any], **_: Any) -> bool:
    db = spec.get("database") or {}
    return (
        _leading()
        and bool(db.get("server"))
        and db.get("deletionPolicy") == "Delete"
        and spec.get("environment") != "production"
    )


@kopf.on.delete(*FLASKAPPS, when=_drops_database)
def drop_database(body: Mapping[str, Any], **_: Any) -> None:
    done, events = Reconciler(STATE.kube, connect_timeout=CONFIG.connect_timeout).finalize(body)
    _post(body, events)
    if not done:
        raise kopf.TemporaryError("the database could not be dropped yet", delay=15)


# --- admission ------------------------------------------------------------------------------------------


async def validate_flaskapp(
    body: Mapping[str, Any],
    namespace: str | None,
    name: str | None,
    warnings: list[str],
    flaskapp_db: Any,
    postgresserver_spec: Any,
    namespace_labels: Any,
    operation: str | None = None,
    old: Mapping[str, Any] | None = None,
    **_: Any,
) -> None:
    # async on purpose: kopf runs sync handlers in its thread pool, where reconciles may wait on a slow
    # PostgreSQL; this handler only reads the in-memory indexes, so it runs on the event loop and
    # admission never queues behind database work.
    if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
        # Only a spec change is judged. kopf's own finalizer and annotation patches, a user's label, and
        # the release of an app that predates the webhook must pass, or its deletion would hang.
        metrics.review(metrics.UNCHANGED)
        return
    servers = _servers(postgresserver_spec)
    entries = _entries(flaskapp_db)
    try:
        result = webhook.review(
            body,
            servers,
            inventory.other_apps(namespace or "", name or "", entries, servers),
            namespace_labels=_labels_of(namespace_labels, namespace or ""),
            server_ids=inventory.server_ids(entries),
        )
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # The API server sends only schema-valid objects; anything else is a malformed review. Answer it
        # plainly (400), never with a 500 and Python's text.
        log.warning("malformed admission review", extra={"error": repr(exc)})
        metrics.review(metrics.MALFORMED)
        raise kopf.AdmissionError("malformed FlaskApp in the admission review", code=400) from None
    warnings.extend(result.warnings)
    metrics.review(metrics.ALLOWED if result.allowed else metrics.DENIED)
    if not result.allowed:
        raise kopf.AdmissionError(f"unsafe FlaskApp: {summary(result.violations)}", code=403)


# Only an operator that serves a webhook registers the handler: kopf refuses to start with admission
# handlers and no server, and a webhook-less operator (FLASKOPS_WEBHOOK=none) must still run.
if CONFIG.webhook_mode != "none":
    kopf.on.validate(
        *FLASKAPPS,
        id="validate-flaskapp",
        operations=["CREATE", "UPDATE"],
        ignore_failures=CONFIG.webhook_failure_policy == "Ignore",
    )(validate_flaskapp)
