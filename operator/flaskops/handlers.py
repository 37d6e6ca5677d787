"""kopf wiring only: what the watches feed the cache and the work queue, the webhook. No decisions here.

kopf watches; every object the operator reads lands in an index as a compact view (cache.py); an event
that matters puts the owning FlaskApp's key on the work queue (runtime.py), whose workers run the
reconcile (controller.py) from the cache. There are no kopf change handlers (on.create/update/
resume/delete): kopf then writes nothing of its own on the objects (no last-handled-configuration, no
progress annotations, no finalizer) — the reconcile is level-triggered and manages its one finalizer.
"""

# kopf's callback protocols list every keyword it may pass; our handlers declare only what they use.
# mypy: disable-error-code="arg-type"

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from . import cache, controller, inventory, leader, metrics, names, webhook
from .safety import summary

log = logging.getLogger("flaskops")
CONFIG = controller.CONFIG
FLASKAPPS = (names.GROUP, names.VERSION, names.FLASKAPP_PLURAL)
SERVERS = (names.GROUP, names.VERSION, names.POSTGRESSERVER_PLURAL)
NAMESPACES = ("v1", "namespaces")
JOBS = ("batch", "v1", "jobs")
DEPLOYMENTS = ("apps", "v1", "deployments")
SECRETS = ("v1", "secrets")
SERVICES = ("v1", "services")
PDBS = ("policy", "v1", "poddisruptionbudgets")
CHILD_LABELS = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_APP: kopf.PRESENT}
# How soon a failed reconcile runs again (kopf's API retries use settings.networking.error_backoffs).
RETRY_SECONDS = controller.RETRY_SECONDS


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own login through the kubernetes client, which knows no namespace: kopf would post a
    # cluster-scoped PostgresServer's Events in "default". They go to the operator's own namespace, where
    # the chart lets it create Events in every mode.
    info = kopf.login_via_client(**kwargs)
    namespace = controller.own_namespace()
    return dataclasses.replace(info, default_namespace=namespace) if info is not None and namespace else info


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf leaves other loggers at the root's WARNING; the operator's own writes are worth INFO lines
    # (the "flaskops" logger is the parent of every module's logger).
    log.setLevel(logging.INFO)
    # Watch only our own children, filtered by the API server rather than in this process.
    selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    for resource in (JOBS, DEPLOYMENTS, SECRETS, SERVICES, PDBS):
        settings.watching.label_selectors[resource] = selector
    if CONFIG.server_selector:  # FLASKOPS_POSTGRESSERVER_SELECTOR: other PostgresServers are never seen
        settings.watching.label_selectors[(names.GROUP, names.POSTGRESSERVER_PLURAL)] = CONFIG.server_selector
    # kopf's own thread pool only runs the few sync handlers left (none of them reconciles).
    settings.execution.max_workers = 2
    # kopf's per-object worker keeps the last watch event (the whole body, ~40 KB as Python objects for a
    # Deployment) while it idles for the next one: 5 s by default, ~400 bodies in flight at 1000 apps.
    settings.queueing.idle_timeout = 0.5
    # Events say who posted them (`kubectl describe`'s "From" column): the operator, not kopf.
    settings.posting.reporting_component = names.MANAGED_BY
    settings.posting.reporting_instance = os.environ.get("POD_NAME") or socket.gethostname()
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    settings.execution.default_backoff = RETRY_SECONDS
    if CONFIG.webhook_mode != "none":
        from . import admission

        admission.configure(settings, CONFIG)
    CONFIGURED.set()


# --- leader election: every replica serves the webhook and keeps the cache; one reconciles ---------------

LEADERSHIP: leader.Leadership | None = None
CONFIGURED = threading.Event()


def _leading(**_: Any) -> bool:
    """True in the leader (or without leader election), False in a follower."""
    return LEADERSHIP is None or LEADERSHIP.leading


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Attach the indexes to the cache, then (with leader election) campaign. The reconcile workers start
    with the first watch event (_started), whose context holds what kopf.event needs."""
    for kind, index in (
        (names.FLASKAPP_KIND, kwargs["flaskapp_objects"]),
        (names.POSTGRESSERVER_KIND, kwargs["postgresserver_objects"]),
        ("Job", kwargs["job_objects"]),
        ("Deployment", kwargs["deployment_objects"]),
        ("Secret", kwargs["secret_objects"]),
        ("Service", kwargs["service_objects"]),
        ("PodDisruptionBudget", kwargs["pdb_objects"]),
    ):
        controller.CACHE.attach(kind, index)
    controller.INDEXES.update(
        flaskapp_db=kwargs["flaskapp_db"],
        postgresserver_spec=kwargs["postgresserver_spec"],
        namespace_labels=kwargs["namespace_labels"],
    )
    if not CONFIG.leader_election:
        return
    global LEADERSHIP  # one election per process, read by every filter
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not CONFIGURED.is_set() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    controller.kube().api  # noqa: B018 - loads the client configuration the Lease lock uses
    # A new leader reconciles every app it knows (the cache is complete: kopf fills indexes first),
    # so apps created, changed or deleted while nobody led are handled now.
    LEADERSHIP = leader.Leadership(
        CONFIG.lease_name, CONFIG.lease_namespace, on_flip=lambda: None, on_leading=controller.enqueue_all
    )
    controller.LEADING = lambda: LEADERSHIP is None or LEADERSHIP.leading
    LEADERSHIP.start(loop)


@kopf.on.cleanup()
def stop(**_: Any) -> None:
    if LEADERSHIP is not None:
        LEADERSHIP.release()
    controller.runtime().stop()
    if controller.SERVER_CHECKS is not None:
        controller.SERVER_CHECKS.stop()
    controller.pg_pool.close_all()


# --- indexes: compact views of everything the reconcile and the webhook read -----------------------------


@kopf.index(*FLASKAPPS)
def flaskapp_db(
    namespace: str,
    name: str,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    **_: Any,
) -> Any:
    # Which database every app uses (rule S5, the webhook, the server's connection budget).
    created = str(meta.get("creationTimestamp") or "")
    return {None: inventory.app_entry(namespace, name, spec, status, created)}


@kopf.index(*FLASKAPPS)
def flaskapp_ready(namespace: str, name: str, status: Mapping[str, Any], **_: Any) -> Any:
    # What the metrics endpoint counts (apps by Ready reason, the stalled ones): read at scrape time.
    return {None: metrics.app_key(namespace, name, status)}


@kopf.index(*FLASKAPPS)
def flaskapp_objects(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): cache.pack(names.FLASKAPP_KIND, body)}


@kopf.index(*SERVERS)
def postgresserver_spec(name: str, spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> Any:
    return {name: inventory.server_entry(spec, status)}


@kopf.index(*SERVERS)
def postgresserver_objects(name: str, body: kopf.Body, **_: Any) -> Any:
    return {("", name): cache.pack(names.POSTGRESSERVER_KIND, body)}


@kopf.index(*NAMESPACES)
def namespace_labels(name: str, labels: Mapping[str, str], **_: Any) -> Any:
    # Only the labels: what a PostgresServer's allowedNamespaces selector reads, without an API call.
    return {name: dict(labels)}


# The operator's children, label-selected by the API server (configure) and controlled by the FlaskApp their
# label names: anyone may put the labels on an object, and a tenant's decoys must not grow the operator's
# memory. An object left out is still found where it matters: before a child is first written, its name is
# read from the API server (someone else's object there is never overwritten). Jobs by app: one lookup
# lists an app's migration Jobs; the rest by name.


def _owned_child(body: Mapping[str, Any], **_: Any) -> bool:
    return cache.is_child(str(body.get("kind") or ""), body)


@kopf.index(*JOBS, labels=CHILD_LABELS, when=_owned_child)
def job_objects(namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> Any:
    return {(namespace, labels[names.LABEL_APP]): cache.pack("Job", body)}


@kopf.index(*DEPLOYMENTS, labels=CHILD_LABELS, when=_owned_child)
def deployment_objects(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): cache.pack("Deployment", body)}


@kopf.index(*SECRETS, labels=CHILD_LABELS, when=_owned_child)
def secret_objects(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): cache.pack("Secret", body)}


@kopf.index(*SERVICES, labels=CHILD_LABELS, when=_owned_child)
def service_objects(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): cache.pack("Service", body)}


@kopf.index(*PDBS, labels=CHILD_LABELS, when=_owned_child)
def pdb_objects(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): cache.pack("PodDisruptionBudget", body)}


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


# --- events: each puts a key on the work queue and returns (async: no thread per watch event) -------------


@kopf.on.event(*FLASKAPPS)
async def flaskapp_changed(type: str | None, namespace: str, name: str, body: kopf.Body, **_: Any) -> None:
    _started()
    controller.flaskapp_event(type, namespace, name, body)


def _started() -> None:
    # kopf sets the context variables kopf.event reads (its Event queue and loop) only around the
    # processing of watch events: workers started from here copy them. Idempotent.
    controller.runtime().start()


def _child(body: Mapping[str, Any], labels: Mapping[str, str], **_: Any) -> bool:
    """A child of the app its label names: controlled by (an ownerReference to) the FlaskApp of that name.

    The labels alone are anyone's to set: an object that merely carries them (a tenant's decoy) wakes no
    reconcile. A tenant may still point ownerReferences at its own app; the queue coalesces those events.
    """
    app = labels.get(names.LABEL_APP)
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return any(
        ref.get("kind") == names.FLASKAPP_KIND and ref.get("name") == app and ref.get("controller")
        for ref in refs
    )


def _news(type: str | None, body: Mapping[str, Any], **_: Any) -> bool:
    """A Secret, Service or PodDisruptionBudget event worth a reconcile: a deletion, or a change flaskops
    did not make.

    The initial listing (type None) is not news (every app is reconciled at start-up anyway), nor is the
    echo of the operator's own write: these children are written by flaskops alone, so any other field
    manager means someone else changed a field (managedFields times have one-second granularity, too
    coarse to tell who wrote last).
    """
    if not _child(body=body, labels=(body.get("metadata") or {}).get("labels") or {}):
        return False
    if type == "DELETED":
        return True
    if type not in ("ADDED", "MODIFIED"):
        return False
    entries = (body.get("metadata") or {}).get("managedFields") or []
    return any(entry.get("manager") != controller.FIELD_MANAGER for entry in entries)


@kopf.on.event(*JOBS, labels=CHILD_LABELS, when=_child)
@kopf.on.event(*DEPLOYMENTS, labels=CHILD_LABELS, when=_child)
@kopf.on.event(*SECRETS, labels=CHILD_LABELS, when=_news)
@kopf.on.event(*SERVICES, labels=CHILD_LABELS, when=_news)
@kopf.on.event(*PDBS, labels=CHILD_LABELS, when=_news)
async def child_changed(
    type: str | None, namespace: str, name: str, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> None:
    # A Job finishing or a rollout progressing is news for the owning app, at once: no polling loop. So is
    # a child someone deleted or edited: the reconcile puts it back (drift). The initial listing is not.
    if type == "DELETED":
        # The index forgets it by itself; what the operator itself wrote of it must go too.
        controller.CACHE.watched_deletion(str(body.get("kind")), namespace, name, body)
    else:
        controller.CACHE.seen(str(body.get("kind")), namespace, name, body["metadata"].get("resourceVersion"))
    if type is not None:
        _started()
        controller.enqueue(namespace, labels[names.LABEL_APP])


@kopf.on.event(*NAMESPACES)
async def namespace_changed(type: str | None, name: str, **_: Any) -> None:
    # A label may now admit (or no longer admit) the namespace to a PostgresServer's allowedNamespaces.
    if type == "MODIFIED":
        _started()
        controller.namespace_event(name)


@kopf.on.event(*SERVERS)
async def server_changed(type: str | None, name: str, meta: Mapping[str, Any], **_: Any) -> None:
    # A new generation re-judges every app on the server; every event keeps its status check scheduled.
    # An event handler, not a kopf daemon or timer: those put a finalizer on every PostgresServer.
    _started()
    controller.server_event(type, name, meta)


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
    servers = controller.servers_of(postgresserver_spec)
    # With a client CA the TLS handshake already refused every caller but the API server. Without one,
    # other apps and namespaces are not even read: the answer, its errors and its time (O(apps in the
    # cluster) to build) then depend on nothing outside the request and its PostgresServer.
    authenticated = bool(CONFIG.webhook_client_ca)
    entries = controller.entries_of(flaskapp_db) if authenticated else []
    try:
        result = webhook.review(
            body,
            servers,
            inventory.other_apps(namespace or "", name or "", entries, servers) if authenticated else (),
            namespace_labels=controller.labels_of(namespace_labels, namespace or "")
            if authenticated
            else None,
            server_ids=inventory.server_ids(entries) if authenticated else None,
            authenticated=authenticated,
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
