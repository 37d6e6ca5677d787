"""Leader election on a coordination.k8s.io/v1 Lease: every replica serves the webhook, one reconciles.

The `kubernetes` client's own elector (kubernetes.leaderelection with its LeaseLock) does the acquiring
and renewing, with controller-runtime's timings. Around it this module adds what the operator needs:

- leadership is one-way. `leading` turns True once, on the asyncio loop (so it never changes in the middle
  of kopf's processing of one event, between its filter check and its finalizer check), and never turns
  back: a leader that cannot renew within RENEW_DEADLINE_SECONDS, or whose renewal thread is stuck, exits
  the process (controller-runtime does the same) and restarts as a follower. A half-leader that still
  writes while another replica already leads is what the election exists to prevent.
- on becoming leader, `on_flip` runs on the loop with the flip, then `on_leading` once in the election
  thread (the handlers resume every app).
- on a clean shutdown the leader releases the Lease, so a rolling update hands over in seconds, not 15.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger(__name__)

# controller-runtime's defaults (and cert-manager's): a dead leader is replaced within
# LEASE_DURATION + RETRY_PERIOD seconds; a live one gives up after RENEW_DEADLINE without a renewal.
LEASE_DURATION_SECONDS = 15
RENEW_DEADLINE_SECONDS = 10
RETRY_PERIOD_SECONDS = 2
EXIT_CODE_LOST = 3


class _Lock(LeaseLock):
    """The client's LeaseLock, which stops writing once the process is shutting down: the elector has no
    stop of its own, and one more renewal after the release would make the next leader wait 15 s."""

    stopped = False

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        return False if self.stopped else bool(super().create(name, namespace, election_record))

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        return False if self.stopped else bool(super().update(name, namespace, updated_record))


def identity() -> str:
    """Who holds the Lease: the pod name (or host name) plus a random suffix, as controller-runtime does,
    so two processes on one host (or a restarted pod with the same name) never share an identity."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class Leadership:
    """This process's view of the Lease `namespace/name`; `leading` is what the handlers' filters read."""

    def __init__(
        self,
        name: str,
        namespace: str,
        on_flip: Callable[[], None] = lambda: None,
        on_leading: Callable[[], None] = lambda: None,
        exit_process: Callable[[int], Any] = os._exit,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.identity = identity()
        self.leading = False
        self._on_flip = on_flip
        self._on_leading = on_leading
        self._exit = exit_process
        self._lock: _Lock | None = None
        self._elector: leaderelection.LeaderElection | None = None
        self._flipped = threading.Event()
        self._stopping = threading.Event()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start campaigning in a daemon thread; `loop` is kopf's (where `leading` is flipped)."""
        self._lock = _Lock(self.name, self.namespace, self.identity)
        config = electionconfig.Config(
            self._lock,
            lease_duration=LEASE_DURATION_SECONDS,
            renew_deadline=RENEW_DEADLINE_SECONDS,
            retry_period=RETRY_PERIOD_SECONDS,
            onstarted_leading=lambda: self._started(loop),
            onstopped_leading=self._stopped,
        )
        self._elector = leaderelection.LeaderElection(config)
        threading.Thread(target=self._elector.run, name="leader-election", daemon=True).start()
        log.info(
            "campaigning for the lease",
            extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity},
        )

    def _flip(self) -> None:
        # On kopf's loop: on_flip and `leading` change together, between two kopf processing steps.
        self._on_flip()
        self.leading = True
        self._flipped.set()

    def _started(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon_threadsafe(self._flip)
        self._flipped.wait()
        log.info(
            "became the leader", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity}
        )
        threading.Thread(target=self._watchdog, name="leader-watchdog", daemon=True).start()
        self._on_leading()

    def _last_renewal_age(self) -> float:
        elector = self._elector
        if elector is None or not elector.observed_time_milliseconds:
            return 0.0
        return time.time() - elector.observed_time_milliseconds / 1000

    def _watchdog(self) -> None:
        # The elector renews in a plain loop; a request that hangs would stall it silently while this
        # process still believed it led. Its last successful renewal must stay younger than the deadline.
        while not self._stopping.wait(RETRY_PERIOD_SECONDS / 2):
            age = self._last_renewal_age()
            if age > RENEW_DEADLINE_SECONDS:
                log.error("lease not renewed within the deadline", extra={"seconds": round(age, 1)})
                self._stopped()
                return

    def _stopped(self) -> None:
        if self._stopping.is_set():
            return
        log.error(
            "lost the lease: exiting so that no second leader writes",
            extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity},
        )
        self._exit(EXIT_CODE_LOST)

    def release(self) -> None:
        """On a clean shutdown: hand the Lease back (holder cleared, 1 s duration) if this process holds it."""
        self._stopping.set()
        if self._lock is not None:
            self._lock.stopped = True
        if not self.leading:
            return
        api = client.CoordinationV1Api()
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace, _request_timeout=5)
            spec = lease.spec
            if spec is None or spec.holder_identity != self.identity:
                return
            spec.holder_identity = None
            spec.lease_duration_seconds = 1
            spec.renew_time = datetime.now(UTC)
            api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=5)
            log.info("released the lease", extra={"lease": f"{self.namespace}/{self.name}"})
        except ApiException as exc:  # the next leader waits out the lease instead
            log.warning("could not release the lease", extra={"status": exc.status})
