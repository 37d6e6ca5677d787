"""A PostgresServer's status, decided from one check: pure functions over plain data, no I/O.

servercheck.py runs the check (admin Secret, one admin session) and writes what these functions decide:
the `Ready` condition, the `WithinConnectionBudget` condition, the last known version and connection
slots, how many FlaskApps use the server, and one Event per condition transition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import budget, names
from . import conditions as c
from .steps.result import Event

if TYPE_CHECKING:
    from .postgres.server import ServerFacts

# The server's own condition types, in their order on the object.
WITHIN_CONNECTION_BUDGET = "WithinConnectionBudget"
SERVER_CONDITIONS = (names.READY, WITHIN_CONNECTION_BUDGET)

# The first retry after a failed check; it doubles up to the idle interval (settings.server_check_seconds).
FIRST_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Failure:
    """Why a check did not reach a verdict on the server's facts.

    kind: "secret" (admin Secret missing or incomplete), "auth" (credentials refused), "unreachable" (no
    connection, or it broke), "refused" (the server answered a query with an error). `message` is already
    safe for the PostgresServer's status: no password, no server text beyond a short cause.
    """

    kind: str
    message: str


def ready_condition(facts: ServerFacts | None, failure: Failure | None, where: str) -> c.Condition:
    """`Ready`: the server answered the admin and the admin may create roles and databases.

    `where` is `host:port`. Exactly one of facts and failure is given.
    """
    if failure is not None:
        if failure.kind == "secret":
            return c.false(names.READY, "AdminSecretNotFound", failure.message)
        if failure.kind == "auth":
            return c.false(names.READY, "AdminAuthFailed", failure.message)
        if failure.kind == "refused":
            return c.false(names.READY, "ProvisioningFailed", failure.message)
        return c.false(names.READY, "Unreachable", failure.message)
    assert facts is not None
    missing = missing_rights(facts)
    if missing:
        return c.false(
            names.READY,
            "AdminPermissionDenied",
            f"the admin role at {where} lacks {' and '.join(missing)}; flaskops needs both (or superuser) to "
            "create the apps' roles and databases: grant them (ALTER ROLE ... CREATEROLE CREATEDB)",
        )
    return c.true(
        names.READY,
        "Ready",
        f"PostgreSQL {facts.version} at {where} answers the admin, who may create roles and databases",
    )


def missing_rights(facts: ServerFacts) -> list[str]:
    """The role attributes the admin lacks for provisioning ([] for a superuser)."""
    if facts.superuser:
        return []
    return [name for name, has in (("CREATEROLE", facts.createrole), ("CREATEDB", facts.createdb)) if not has]


def budget_condition(b: budget.Budget) -> c.Condition:
    """`WithinConnectionBudget`: the apps' worst cases together fit in the slots the server gives them."""
    if b.available is None:
        return c.unknown(
            WITHIN_CONNECTION_BUDGET,
            budget.MAX_CONNECTIONS_UNKNOWN,
            "max_connections is not known yet: the server has not answered a check",
        )
    if b.exceeded:
        return c.false(
            WITHIN_CONNECTION_BUDGET,
            budget.BUDGET_EXCEEDED,
            f"the {b.apps} FlaskApp(s) on this server may open up to {b.requested} connections together, "
            f"more than the {b.available} it allows them (max_connections minus reserved slots): lower their "
            "replicas, gunicorn.workers or pool sizes, move apps to another server, or raise max_connections",
        )
    return c.true(
        WITHIN_CONNECTION_BUDGET,
        budget.WITHIN_BUDGET,
        f"the {b.apps} FlaskApp(s) on this server may open up to {b.requested} of the {b.available} "
        "connections it allows them",
    )


def status(
    old: Mapping[str, Any],
    generation: int,
    where: str,
    facts: ServerFacts | None,
    failure: Failure | None,
    worst_cases: Iterable[int],
    now: str,
) -> dict[str, Any]:
    """The whole new status. Facts from an earlier check are kept while the server cannot be reached, so
    admission can still warn against the last known max_connections."""
    version = facts.version if facts else old.get("serverVersion")
    max_conn = facts.max_connections if facts else old.get("maxConnections")
    reserved = facts.reserved_connections if facts else old.get("reservedConnections")
    b = budget.server_budget(worst_cases, max_conn, reserved)
    updates = [ready_condition(facts, failure, where), budget_condition(b)]
    merged = c.merge(old.get("conditions") or [], updates, generation, now)
    order = {t: i for i, t in enumerate(SERVER_CONDITIONS)}
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": sorted(merged, key=lambda x: (order.get(x["type"], len(order)), x["type"])),
        "apps": b.apps,
    }
    if version is not None:
        out["serverVersion"] = version
    if max_conn is not None:
        out["maxConnections"] = max_conn
        out["reservedConnections"] = reserved or 0
        out["connectionBudget"] = {"available": b.available, "requestedByApps": b.requested}
    return out


def transition_events(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]) -> list[Event]:
    """One Event per server condition whose status or reason changed; none for a steady state.

    The Event's reason is the condition's new reason: Normal when it became True, Warning when False.
    Unknown (not checked yet) is no news.
    """
    before = {x["type"]: (x.get("status"), x.get("reason")) for x in old}
    out: list[Event] = []
    for cond in new:
        if cond["type"] not in SERVER_CONDITIONS or cond["status"] == "Unknown":
            continue
        if before.get(cond["type"]) == (cond["status"], cond["reason"]):
            continue
        kind = "Normal" if cond["status"] == "True" else "Warning"
        out.append(Event(kind, cond["reason"], f"{cond['type']}: {cond['message']}"))
    return out


def next_delay(failures: int, interval: float) -> float:
    """Seconds until the next check: `interval` while the server is fine; after `failures` failed checks
    in a row, FIRST_RETRY_SECONDS doubled per failure, at most `interval` (a fixed Secret is noticed soon,
    a server that stays down is not hammered)."""
    if failures <= 0:
        return interval
    return min(interval, FIRST_RETRY_SECONDS * 2 ** (failures - 1))


def available_connections(server_status: Mapping[str, Any] | None) -> int | None:
    """The connections a server allows its apps, as its status last reported (None: never measured)."""
    b = (server_status or {}).get("connectionBudget") or {}
    value = b.get("available")
    return int(value) if value is not None else None
