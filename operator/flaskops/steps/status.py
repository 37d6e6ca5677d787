"""The status of one reconcile, made from its steps' results: the fields they set, the step conditions,
the summary conditions (Ready, Reconciling, Stalled: kstatus) and the Events a transition is worth.
Pure: plain data in, plain data out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .. import conditions as c
from .. import names
from ..spec import FlaskAppSpec
from .migrate import MIGRATION_BLOCKED
from .result import Event, Result, StepResult

# The reason on Ready while the Deployment cannot make its pods (the cause is in the message).
ROLLOUT_BLOCKED = "RolloutBlocked"


def fresh(conds: Iterable[Mapping[str, Any]], type_: str, generation: int) -> bool:
    """Whether a condition is True and was decided for this generation."""
    cond = c.find(conds, type_)
    return bool(cond and cond.get("status") == "True" and cond.get("observedGeneration") == generation)


def fields(app: FlaskAppSpec, previous: Mapping[str, Any], results: Iterable[StepResult]) -> dict[str, Any]:
    """The status fields (no conditions) after `results`, in flow order, on top of `previous`."""
    status: dict[str, Any] = {k: v for k, v in previous.items() if k != "conditions"}
    status["desiredImage"] = app.image
    for result in results:
        status.update(result.status)
    return status


def assemble(
    app: FlaskAppSpec,
    previous: Mapping[str, Any],
    results: Sequence[StepResult],
    now: Callable[[], str],
    *,
    rolled_out: bool,
    blocked: str | None,
) -> Result:
    """The reconcile's Result from its steps' results (in flow order; a halted step, if any, is the last
    but for the availability observed after it).

    Status: `previous` with each step's fields set; conditions merged (lastTransitionTime moves only with
    status) and the summary conditions derived from them. Events: the transitions first, then each step's
    in order. retry_after and stalled come from the halted step; recheck_after from the last step that
    asked for one.
    """
    status = fields(app, previous, results)
    halted = next((r for r in results if r.halt), None)
    recheck = None
    for result in results:
        if result.recheck_after is not None:
            recheck = result.recheck_after
    retry_after = halted.retry_after if halted else None
    before = previous.get("conditions") or []
    conds = c.merge(before, [cond for r in results for cond in r.conditions], app.generation, now())
    summary_conds = summary(
        conds,
        app,
        rolled_out=rolled_out,
        stalled=bool(halted and halted.stalled),
        retrying=retry_after is not None,
        blocked=blocked,
    )
    conds = c.merge(conds, summary_conds, app.generation, now())
    status["conditions"] = conds
    status["observedGeneration"] = app.generation
    events = transition_events(before, conds) + [e for r in results for e in r.events]
    return Result(status=status, events=events, retry_after=retry_after, recheck_after=recheck)


def summary(
    conds: list[dict[str, Any]],
    app: FlaskAppSpec,
    *,
    rolled_out: bool,
    stalled: bool,
    retrying: bool,
    blocked: str | None = None,
) -> list[c.Condition]:
    """Ready, Reconciling and Stalled from the step conditions (kstatus semantics)."""
    by_type = {x["type"]: x for x in conds}
    steps = (names.ENVIRONMENT_SAFE, names.DATABASE_READY, names.MIGRATED, names.AVAILABLE)
    # The first step that failed, in flow order. A step not evaluated yet blocks only when no step failed:
    # resolving the server (DatabaseReady) fails before the pairing (EnvironmentSafe) is ever judged, and
    # `kubectl get` should show that reason (ServerNotFound), not "Pending".
    blocking = next(
        (by_type[t] for t in steps if t in by_type and by_type[t]["status"] != "True"),
        None,
    )
    if blocking is None:
        missing = next((t for t in steps if t not in by_type), None)
        if missing is not None:
            blocking = {"reason": "Pending", "message": f"{missing} not evaluated yet"}
    if blocked and not rolled_out and (blocking is None or blocking is by_type.get(names.AVAILABLE)):
        # Unavailable (or merely rolling) because the Deployment cannot make its pods: say why.
        blocking = {"reason": ROLLOUT_BLOCKED, "message": f"the rollout cannot progress: {blocked}"}
    if blocking is None and not rolled_out:
        blocking = {"reason": "RollingOut", "message": by_type[names.AVAILABLE]["message"]}
    if blocking is None:
        msg = f"serving {app.image}: " + by_type[names.AVAILABLE]["message"]
        return [
            c.true(names.READY, "Ready", msg),
            c.false(names.RECONCILING, "Ready", "nothing to do"),
            c.false(names.STALLED, "Ready", "nothing to do"),
        ]
    reason, message = blocking["reason"], blocking["message"]
    if stalled:
        return [
            c.false(names.READY, reason, message),
            c.false(names.RECONCILING, "Stalled", "waiting for a change to the spec"),
            c.true(names.STALLED, reason, message),
        ]
    return [
        c.false(names.READY, reason, message),
        c.true(names.RECONCILING, reason, message + (" (retrying)" if retrying else "")),
        c.false(names.STALLED, "Progressing", "making progress"),
    ]


# The conditions whose turning True is worth a Normal Event (install: DatabaseCreated, Migrated, Ready).
_GOOD_NEWS = (names.MIGRATED, names.READY)
# Step conditions in flow order, then the summary: Events read like the story of the reconcile.
_EVENT_ORDER = (names.DATABASE_READY, names.MIGRATED, names.AVAILABLE, names.READY)


def transition_events(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]) -> list[Event]:
    """One Event per condition whose status or reason changed (so a steady state posts nothing).

    Warnings are for trouble: a database that cannot be reached, a failed migration, lost availability.
    A step that is merely not done yet (first rollout, migration running) is progress, not news.
    EnvironmentSafe posts its own, richer Event; Reconciling/Stalled/Ready=False echo the step that blocks.
    """
    before = {x["type"]: (x.get("status"), x.get("reason")) for x in old}
    by_type = {x["type"]: x for x in new}
    out: list[Event] = []
    for t in _EVENT_ORDER:
        cond = by_type.get(t)
        if cond is None:
            continue
        now = (cond["status"], cond["reason"])
        was = before.get(t)
        if was == now:
            continue
        if cond["status"] == "True":
            # Success is told twice at most: the migration that ran, and Ready (which names the image and
            # the replicas). DatabaseReady has its own DatabaseCreated Event; Available is in Ready.
            if t in _GOOD_NEWS:
                out.append(Event("Normal", cond["reason"], f"{t}: {cond['message']}"))
            continue
        warn = (
            (t == names.DATABASE_READY)
            or (t == names.MIGRATED and cond["reason"] in ("MigrationFailed", MIGRATION_BLOCKED))
            or (t != names.READY and cond["reason"] == "InvalidSpec")
            # Ready speaks for itself only where no step condition does: a rollout that cannot progress.
            or (t == names.READY and cond["reason"] == ROLLOUT_BLOCKED)
            or (t == names.AVAILABLE and was is not None and was[0] == "True")
        )
        if warn:
            out.append(Event("Warning", cond["reason"], f"{t}: {cond['message']}"))
    return out
