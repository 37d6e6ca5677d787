"""The connection budget: how many PostgreSQL connections an app can open at worst, and whether the apps
on one server fit in its max_connections. Pure functions over plain specs; no I/O.

The worst case of one app (what its role's CONNECTION LIMIT is set to):

    (replicas + surge) x gunicorn workers x per-process connections  +  per-process connections

- replicas is `spec.replicas`. An HorizontalPodAutoscaler scales a FlaskApp through its scale subresource,
  which writes `spec.replicas` (the CRD's specReplicasPath): the limit follows the autoscaler, and each
  change re-provisions the role before the Deployment gets the new replica count.
- surge is the rolling update's extra pods (the Deployment's maxSurge, 25 % rounded up): during a rollout
  old and new pods hold their pools at once. When the Deployment still runs more pods than that (a
  scale-down), provisioning counts those instead, so the pods that stay can take over the load of the
  ones leaving; the limit comes down at the next provisioning (the next spec change).
- per-process connections is the pool bound of one Gunicorn worker: `DB_POOL_SIZE + DB_MAX_OVERFLOW`
  from `spec.env` (the reference app's variables, defaults 5 and 5 as in app/guestbook/config.py). A value
  taken from a Secret or ConfigMap (valueFrom) cannot be read at admission and counts as its default. An
  unbounded overflow (negative, as SQLAlchemy allows) is bounded by the worker's threads. A `testing`
  app of the reference app uses NullPool, one connection per in-flight request, so there the bound is at
  least `gunicorn.threads`.
- the last term is one more process: the migration Job (one process with the app's pool) or a one-off
  `flask` command.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .spec import FlaskAppSpec

# The reference app's defaults (app/guestbook/config.py; tests/operator/test_budget.py fails if they drift).
DEFAULT_POOL_SIZE = 5
DEFAULT_MAX_OVERFLOW = 5
POOL_SIZE_ENV = "DB_POOL_SIZE"
MAX_OVERFLOW_ENV = "DB_MAX_OVERFLOW"
# The Deployment's rollingUpdate.maxSurge (manifests.py; the same test compares them).
MAX_SURGE_PERCENT = 25

WITHIN_BUDGET = "WithinBudget"
BUDGET_EXCEEDED = "ConnectionBudgetExceeded"
MAX_CONNECTIONS_UNKNOWN = "MaxConnectionsUnknown"


def _env_int(env: Iterable[Mapping[str, Any]], name: str, default: int) -> int:
    """The literal integer value of env var `name`, else `default` (absent, valueFrom, or not a number)."""
    for var in env:
        if var.get("name") == name and "value" in var:
            try:
                return int(str(var["value"]).strip())
            except ValueError:
                return default  # the app refuses to start with it; nothing connects
    return default


def per_process(app: FlaskAppSpec) -> int:
    """Connections one worker process can hold at once (>= 1)."""
    size = max(1, _env_int(app.env, POOL_SIZE_ENV, DEFAULT_POOL_SIZE))
    overflow = _env_int(app.env, MAX_OVERFLOW_ENV, DEFAULT_MAX_OVERFLOW)
    bound = size + overflow if overflow >= 0 else max(size, app.gunicorn.threads)
    if app.environment == "testing":
        bound = max(bound, app.gunicorn.threads)
    return max(1, bound)


def surge(replicas: int) -> int:
    """Extra pods a rolling update may add (Kubernetes rounds a percentage maxSurge up)."""
    return math.ceil(replicas * MAX_SURGE_PERCENT / 100)


def pods(app: FlaskAppSpec, running: int = 0) -> int:
    """Pods that may hold connections at once: replicas plus the rollout's surge, or the `running` pods
    of the Deployment when there are more (a scale-down: the pods on their way out keep their sessions
    for up to their grace period, while the remaining ones take over their load)."""
    return max(app.replicas + surge(app.replicas), running)


def worst_case(app: FlaskAppSpec, running: int = 0) -> int:
    """The most connections the app's role can need at once: its CONNECTION LIMIT (>= 1). `running`:
    the Deployment's current pods (status.replicas), 0 when unknown."""
    one = per_process(app)
    return pods(app, running) * app.gunicorn.workers * one + one


def describe(app: FlaskAppSpec) -> str:
    """The worst case spelled out, for messages: `3 pods x 2 workers x 10 + 10 = 70`."""
    one = per_process(app)
    return f"{pods(app)} pods x {app.gunicorn.workers} workers x {one} + {one} = {worst_case(app)}"


@dataclass(frozen=True)
class Budget:
    """A server's budget: connections its apps may request together against what it allows them."""

    available: int | None  # max_connections minus the reserved slots; None when never measured
    requested: int  # sum of the apps' worst cases
    apps: int

    @property
    def exceeded(self) -> bool:
        return self.available is not None and self.requested > self.available


def available(max_connections: int | None, reserved: int | None) -> int | None:
    """Connections non-superuser roles may open: max_connections minus superuser_reserved_connections
    (and PostgreSQL 16's reserved_connections); None when max_connections is unknown."""
    if max_connections is None:
        return None
    return max(0, max_connections - (reserved or 0))


def server_budget(worst_cases: Iterable[int], max_connections: int | None, reserved: int | None) -> Budget:
    """The budget of a server from its apps' worst cases (one int per FlaskApp naming it)."""
    cases = list(worst_cases)
    return Budget(available(max_connections, reserved), sum(cases), len(cases))


def app_warning(app: FlaskAppSpec, server_name: str, server_available: int | None) -> str | None:
    """Admission advice when this app alone can exceed what its server allows, else None."""
    if server_available is None:
        return None
    need = worst_case(app)
    if need <= server_available:
        return None
    return (
        f"this app alone may open {need} connections ({describe(app)}; per process "
        f"{POOL_SIZE_ENV} + {MAX_OVERFLOW_ENV}) but PostgresServer '{server_name}' allows "
        f"{server_available} (max_connections minus reserved): lower replicas, gunicorn.workers or the "
        "pool size, or ask for a larger server; the role's CONNECTION LIMIT will refuse the excess"
    )
