"""What a step returns, and what the reconcile returns once the flow has merged its steps' results.

A step never writes into a status or an Event list it shares with another step: it returns a `StepResult`
(the conditions it decided, the status fields it sets, its Events, when to look again, whether the flow
stops here). `Halt` is how code deep inside one step stops that step; the step's public function turns it
into a result with `halt=True`, so no exception crosses from a step into the flow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import conditions as c
from .. import names

# How soon a step that waits on something outside the operator (a Secret, a PostgreSQL server) runs again.
RETRY_DATABASE_SECONDS = 10.0
# A child that makes no progress is looked at again this often (nothing else wakes the reconcile: a Job
# whose pods a quota refuses never changes).
RECHECK_SECONDS = 15.0


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class StepResult:
    """One step's decisions.

    conditions: the step conditions it decided (metav1 shape is made when the flow merges them).
    status: top-level status fields it sets, each replaced whole (e.g. {"migration": {...}}).
    events: its Events, in the order they happened.
    recheck_after: seconds until a child that makes no progress should be looked at again (None: on news).
    halt: the flow stops after this step; `stalled` (waiting for a spec change) and `retry_after`
    (seconds until a retry) then say why.
    """

    conditions: tuple[c.Condition, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    recheck_after: float | None = None
    halt: bool = False
    stalled: bool = False
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the step went through and every condition it decided is True."""
        return not self.halt and all(cond.status == "True" for cond in self.conditions)


R = TypeVar("R", bound=StepResult)


class Halt(Exception):
    """Stop the step (and the flow) here with these conditions (the rest keep their earlier values).

    Raised inside a step only; its public function returns `halt.result(...)`. The provisioning gate
    (metrics.provisioning) tells a Halt raised inside it from a server failure.
    """

    def __init__(
        self,
        *conds: c.Condition,
        stalled: bool = False,
        retry_after: float | None = None,
        events: Iterable[Event] = (),
    ) -> None:
        super().__init__(conds[0].message if conds else "halt")
        self.conds = conds
        self.stalled = stalled
        self.retry_after = retry_after
        self.events = list(events)

    def result(
        self,
        cls: type[R] = StepResult,  # type: ignore[assignment]
        *,
        events: Iterable[Event] = (),
        status: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> R:
        """The halted step's result: `events` it had posted before the halt come first, then the halt's."""
        return cls(
            conditions=tuple(self.conds),
            status=dict(status or {}),
            events=(*events, *self.events),
            halt=True,
            stalled=self.stalled,
            retry_after=self.retry_after,
            **fields,
        )


@dataclass
class Result:
    """What a reconcile decided: the full new status, Events to post, and whether to come back later."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    # Nothing failed, but a child makes no progress that would wake the reconcile: look again this soon.
    recheck_after: float | None = None

    @property
    def ready(self) -> bool:
        return c.is_true(self.status.get("conditions") or [], names.READY)
