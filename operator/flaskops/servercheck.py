"""Checking PostgresServers: one admin session per check, the status written only when it changed, and a
per-server timer that checks again (every `interval` seconds, sooner with backoff while failing).

Why not a kopf daemon or timer: kopf puts a finalizer on every object that has one, so deleting a
PostgresServer would then wait for a running operator. A check here is started by the server's watch
events (first sight, a new generation) and by its own timer; nothing is stored on the object but status.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import conditions as c
from . import names, serverstatus
from .kube import merge_patch_diff
from .postgres import server as pg
from .spec import parse_postgresserver
from .steps.result import Event

log = logging.getLogger(__name__)


@dataclass
class Checked:
    """One check's outcome: the object it judged (for Events), the Events to post, whether it is Ready."""

    body: Mapping[str, Any]
    events: list[Event] = field(default_factory=list)
    ready: bool = False


def check(
    kube: Any,
    name: str,
    worst_cases: Iterable[int],
    *,
    connect_timeout: int = 5,
    now: Callable[[], str] = c.now_iso,
) -> Checked | None:
    """Check PostgresServer `name` and write its status if it changed; None when it is gone or going.

    `worst_cases` are budget.worst_case of every FlaskApp naming the server. Raises only for API errors.
    """
    body = kube.get(names.POSTGRESSERVER_KIND, None, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    server = parse_postgresserver(body)
    where = f"{server.host}:{server.port}"
    facts, failure = _probe(kube, server, connect_timeout)
    old = body.get("status") or {}
    generation = int(body["metadata"].get("generation") or 0)
    new = serverstatus.status(old, generation, where, facts, failure, worst_cases, now())
    if _comparable(new) != _comparable(old):
        kube.merge_patch(
            names.POSTGRESSERVER_KIND, None, name, {"status": merge_patch_diff(old, new)}, sub="status"
        )
        log.info(
            "postgresserver status written",
            extra={"postgresserver": name, "ready": _ready_text(new), "apps": new.get("apps")},
        )
    events = serverstatus.transition_events(old.get("conditions") or [], new["conditions"])
    return Checked(body, events, ready=c.is_true(new["conditions"], names.READY))


def _comparable(status: Mapping[str, Any]) -> Mapping[str, Any]:
    # Only what the check decides; a status written by something else (e.g. an older operator) compares
    # on the same keys.
    return {k: status.get(k) for k in _KEYS}


_KEYS = (
    "observedGeneration",
    "conditions",
    "apps",
    "serverVersion",
    "maxConnections",
    "reservedConnections",
    "connectionBudget",
)


def _ready_text(status: Mapping[str, Any]) -> str:
    cond = c.find(status.get("conditions") or [], names.READY) or {}
    return f"{cond.get('status')}/{cond.get('reason')}"


# (namespace, name) of an admin Secret -> its data as last read and accepted by PostgreSQL. A periodic check
# of a healthy server then sends no API request (the Secret is not the operator's to watch); a refused
# login, or a Secret that was missing, is read again at the next check.
_ADMIN: dict[tuple[str, str], dict[str, str]] = {}


def _probe(
    kube: Any, server: Any, connect_timeout: int
) -> tuple[pg.ServerFacts | None, serverstatus.Failure | None]:
    ref = (server.admin_secret_namespace, server.admin_secret_name)
    secret = f"{ref[0]}/{ref[1]}"
    remembered = _ADMIN.pop(ref, None)
    data = remembered or kube.read_secret_data(*ref)
    keys = (names.ADMIN_USERNAME_KEY, names.ADMIN_PASSWORD_KEY)
    if data is None or any(k not in data for k in keys):
        return None, serverstatus.Failure(
            "secret", f"the admin Secret {secret} is missing or lacks the keys {list(keys)}"
        )
    admin = pg.AdminConnection(
        host=server.host,
        port=server.port,
        sslmode=server.ssl_mode,
        username=data[names.ADMIN_USERNAME_KEY],
        password=data[names.ADMIN_PASSWORD_KEY],
        connect_timeout=connect_timeout,
    )
    try:
        facts = pg.probe_server(admin)
        _ADMIN[ref] = data
        return facts, None
    except pg.AdminAuthFailed as exc:
        if remembered is not None:
            # The remembered credentials were rotated away: judge the Secret as it is now.
            return _probe(kube, server, connect_timeout)
        log.warning("postgresserver check failed", extra={"postgresserver": server.name, "why": exc.reason})
        return None, serverstatus.Failure(
            "auth",
            f"PostgreSQL at {server.host}:{server.port} refused the admin credentials in Secret {secret}; "
            "fix the Secret; the check repeats on its own",
        )
    except pg.AdminPermissionDenied as exc:
        log.warning("postgresserver check failed", extra={"postgresserver": server.name, "why": exc.reason})
        return None, serverstatus.Failure("refused", exc.public)
    except pg.ProvisioningFailed as exc:
        log.warning("postgresserver check failed", extra={"postgresserver": server.name, "why": exc.reason})
        return None, serverstatus.Failure("refused", exc.public)
    except pg.DatabaseUnavailable as exc:
        log.warning("postgresserver check failed", extra={"postgresserver": server.name, "why": exc.reason})
        return None, serverstatus.Failure("unreachable", exc.public)


class Scheduler:
    """One timer per PostgresServer: `seen` on each watch event, `forget` when it is deleted.

    `run(name)` does one check and returns whether the server is Ready (None: it is gone, stop); the
    next check follows after serverstatus.next_delay. Timers run in their own daemon threads, never in kopf's worker pool (a slow
    server must not take a reconcile's thread), with the kopf context of the event that armed them (so
    kopf.event works there).
    """

    def __init__(self, run: Callable[[str], bool | None], interval: float) -> None:
        self._run = run
        self.interval = interval
        self._guard = threading.Lock()
        self._timers: dict[str, threading.Timer] = {}
        self._failures: dict[str, int] = {}
        self._generations: dict[str, int] = {}
        self._due: dict[str, float] = {}  # time.monotonic() of each pending check; absent while it runs

    def seen(self, name: str, generation: int) -> None:
        """A watch event: check now on first sight or a new generation; otherwise keep the schedule."""
        with self._guard:
            if name in self._timers and self._generations.get(name) == generation:
                return
            self._generations[name] = generation
            self._arm(name, 0.0)

    def soon(self, name: str, delay: float = 2.0) -> None:
        """Something the check reads changed (an app on the server, its worst case): check within
        `delay` seconds. Pokes within that window share one check; a server not seen yet is left alone
        (its first check comes with its first event)."""
        with self._guard:
            if name not in self._timers:
                return
            due = self._due.get(name)
            if due is not None and due <= time.monotonic() + delay:
                return
            self._arm(name, delay)

    def forget(self, name: str) -> None:
        with self._guard:
            timer = self._timers.pop(name, None)
            self._failures.pop(name, None)
            self._generations.pop(name, None)
            self._due.pop(name, None)
        if timer is not None:
            timer.cancel()

    def stop(self) -> None:
        with self._guard:
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()

    def _arm(self, name: str, delay: float) -> None:
        # Caller holds the guard. A pending timer is replaced; one already running finishes its check.
        pending = self._timers.get(name)
        if pending is not None and pending is not threading.current_thread():
            pending.cancel()
        ctx = contextvars.copy_context()
        timer = threading.Timer(delay, ctx.run, args=(self._fire, name))
        timer.daemon = True
        timer.name = f"flaskops-check-{name}"
        self._timers[name] = timer
        self._due[name] = time.monotonic() + delay
        timer.start()

    def _fire(self, name: str) -> None:
        with self._guard:
            if self._timers.get(name) is threading.current_thread():
                # Running: a poke from now on may have come too late for this check, so it arms another.
                self._due.pop(name, None)
        ok: bool | None
        try:
            ok = self._run(name)
        except Exception:
            log.exception("postgresserver check failed", extra={"postgresserver": name})
            ok = False
        with self._guard:
            if self._timers.get(name) is not threading.current_thread():
                return  # forgotten, or a newer check was armed meanwhile
            if ok is None:  # the server is gone: its DELETED event may not have arrived yet
                del self._timers[name]
                self._due.pop(name, None)
                return
            failures = 0 if ok else self._failures.get(name, 0) + 1
            self._failures[name] = failures
            self._arm(name, serverstatus.next_delay(failures, self.interval))
