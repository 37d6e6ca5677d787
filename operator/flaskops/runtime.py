"""How reconciles are scheduled: one work queue for every FlaskApp, worker threads, locks and gates.

Every reason to reconcile an app — its own change, a child's event, a server's or a namespace's change, a
retry after a failure, a recheck of a stuck child — puts its key on one queue, as controller-runtime's
work queue does (client-go `util/workqueue`):

- a key is queued at most once: adds while it waits coalesce;
- a key is processed by one worker at a time: an add while it runs marks it dirty, and it is queued again
  when its run ends (nothing is lost, nothing runs twice at once);
- `add_after` is the only timer: a later add for a key replaces a later-or-equal pending one, an earlier
  wins, so a retry, a recheck and an event never make two schedules for one app;
- ready keys are served round-robin across groups (namespaces), FIFO within a group: a tenant who
  queues a thousand apps delays another namespace's next reconcile by one turn per worker, not by a
  thousand — the idea of the API server's fair queuing (API Priority and Fairness), without priorities.

kopf only feeds the queue (handlers.py); the reconcile itself runs here, in `workers` threads.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import ctypes.util
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Any

log = logging.getLogger(__name__)

# After this many reconciles, a queue that runs dry gives the C heap's free pages back (release_memory); and
# so does a timer every TRIM_SECONDS, whatever runs (kopf's watches allocate too, on their own thread).
TRIM_AFTER_RECONCILES = 50
TRIM_SECONDS = 30.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on a C library without it (musl, macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_memory() -> bool:
    """Return the C heap's free pages to the OS (glibc `malloc_trim(0)`); False where there is no such call.

    Large transient allocations (JSON bodies of watch events and API answers, Event lists: larger than
    CPython's 512-byte small objects, so glibc's) leave freed space mapped: one trim released 4-20 MiB
    after such garbage in the bench (bench/NOTES.md, 2026-12-04). The trim costs a few milliseconds.
    """
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class WorkQueue:
    """Keys to process: deduplicated, one at a time per key, with delayed adds. Thread-safe.

    `get()` blocks until a key is ready (None once `shut_down()` was called); `done(key)` must follow
    every key `get()` returned. `group(key)` names the key's fairness group (default: the first item of a
    tuple key, the namespace of a `(namespace, name)`); ready keys are served round-robin across groups.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        group: Callable[[Hashable], Hashable] | None = None,
    ) -> None:
        self._clock = clock
        self._group = group or _first_item
        # Ready keys: one FIFO per group, and the groups that have any, in the order they are served.
        self._ready: dict[Hashable, deque[Hashable]] = {}
        self._turns: deque[Hashable] = deque()
        self._queued: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        # Delayed adds: a heap of (due, sequence, key); `_due` holds each key's earliest due time, so a
        # superseded heap entry is recognised and skipped when it comes up.
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._shutdown = False

    def add(self, key: Hashable) -> None:
        """Queue `key` now (once; or once more after its current run)."""
        with self._cond:
            self._add(key)

    def _add(self, key: Hashable) -> None:
        self._due.pop(key, None)  # a pending delayed add is overtaken
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            group = self._group(key)
            if group not in self._ready:
                self._ready[group] = deque()
                self._turns.append(group)
            self._ready[group].append(key)
            self._cond.notify()

    def _pop(self) -> Hashable:
        group = self._turns.popleft()
        keys = self._ready[group]
        key = keys.popleft()
        if keys:
            self._turns.append(group)  # its next key waits for every other group's turn
        else:
            del self._ready[group]
        return key

    def add_after(self, key: Hashable, delay: float) -> None:
        """Queue `key` in `delay` seconds, unless it is queued or due sooner already."""
        with self._cond:
            if key in self._queued:
                return
            due = self._clock() + max(delay, 0.0)
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._delayed, (due, next(self._seq), key))
            self._cond.notify()

    def _promote(self) -> float | None:
        """Move due delayed keys to the queue; seconds until the next one (None: none pending)."""
        now = self._clock()
        while self._delayed:
            due, _, key = self._delayed[0]
            if self._due.get(key) != due:
                heapq.heappop(self._delayed)  # superseded by an earlier add or a direct one
                continue
            if due > now:
                return due - now
            heapq.heappop(self._delayed)
            self._add(key)
        return None

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next key to process, marked processing; None on shutdown or when `timeout` passes."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                wait = self._promote()
                if self._shutdown:
                    return None
                if self._turns:
                    key = self._pop()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, key: Hashable) -> None:
        """End a run of `key`; queue it again when it was added meanwhile."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add(key)

    def shut_down(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def idle(self) -> bool:
        """Nothing queued and nothing running (keys waiting on a timer do not count)."""
        with self._cond:
            return not self._queued and not self._processing

    def pending(self) -> dict[str, int]:
        """How many keys are queued, running and waiting on a timer (for metrics and tests)."""
        with self._cond:
            return {
                "queued": len(self._queued),
                "processing": len(self._processing),
                "delayed": len(self._due),
            }


def _first_item(key: Hashable) -> Hashable:
    return key[0] if isinstance(key, tuple) and key else key


class Runtime:
    """The queue's workers, the per-object locks and the per-server provisioning gates.

    `process(key)` runs one reconcile and returns the seconds after which to run it again (None: only
    when something changes). An exception is logged and retried after `retry_seconds`.
    """

    def __init__(
        self,
        process: Callable[[Any], float | None],
        *,
        workers: int,
        retry_seconds: float,
        gate_limit: int,
        gate_wait_seconds: float,
    ) -> None:
        self.queue = WorkQueue()
        self._process = process
        self._workers = workers
        self._retry_seconds = retry_seconds
        self._gate_limit = gate_limit
        self._gate_wait = gate_wait_seconds
        self._threads: list[threading.Thread] = []
        self._locks: dict[Hashable, threading.Lock] = {}
        self._gates: dict[str, threading.BoundedSemaphore] = {}
        self._guard = threading.Lock()
        self._since_trim = 0
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start the workers (idempotent). They run in a copy of the caller's context variables: kopf
        finds its API settings for posting Events there."""
        with self._guard:
            if self._threads:
                return
            for i in range(self._workers):
                context = contextvars.copy_context()
                thread = threading.Thread(
                    target=context.run, args=(self._work,), name=f"reconcile-{i}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            if _TRIM is not None:
                trimmer = threading.Thread(target=self._trim_periodically, name="malloc-trim", daemon=True)
                self._threads.append(trimmer)
                trimmer.start()

    def _trim_periodically(self) -> None:
        # A quiet operator runs no reconcile that would trim; kopf's loop and the webhook allocate anyway.
        while not self._stopped.wait(TRIM_SECONDS):
            release_memory()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self.queue.shut_down()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            again: float | None
            try:
                again = self._process(key)
            except Exception:
                log.exception("reconcile failed", extra={"key": str(key)})
                again = self._retry_seconds
            finally:
                self.queue.done(key)
            if again:
                self.queue.add_after(key, again)
            self._after_burst()

    def _after_burst(self) -> None:
        """When the queue runs dry after TRIM_AFTER_RECONCILES reconciles: release_memory()."""
        with self._guard:
            self._since_trim += 1
            if self._since_trim < TRIM_AFTER_RECONCILES or not self.queue.idle():
                return
            self._since_trim = 0
        release_memory()

    def lock(self, key: Hashable) -> threading.Lock:
        """The lock of one object: a reconcile and a finalizer (kopf's thread) never run at once."""
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def forget(self, key: Hashable) -> None:
        """Drop the lock of an object that is gone for good."""
        with self._guard:
            self._locks.pop(key, None)

    @contextlib.contextmanager
    def gate(self, server: str) -> Iterator[None]:
        """At most `gate_limit` provisioning sessions per PostgresServer at once.

        Waits at most `gate_wait_seconds` for a slot, then raises TimeoutError (the reconcile retries
        later): a slow server must not hold every worker.
        """
        with self._guard:
            sem = self._gates.setdefault(server, threading.BoundedSemaphore(self._gate_limit))
        if not sem.acquire(timeout=self._gate_wait):
            raise TimeoutError(
                f"no provisioning slot on PostgresServer '{server}' within {self._gate_wait:g}s"
            )
        try:
            yield
        finally:
            sem.release()
