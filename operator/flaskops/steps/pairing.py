"""Step 2, safety: is this environment/database pairing safe (rules S1-S6 in safety.py)? Judged before
anything is written, and again inside the provisioning session once the server has told its identity and
the database its stamp (database.py calls `check`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import conditions as c
from .. import names
from ..safety import OtherApp, check_pairing, summary
from ..spec import FlaskAppSpec
from .resolve import Target
from .result import Event, Halt, StepResult

UNSAFE = "UnsafeDatabasePairing"


def judge(app: FlaskAppSpec, target: Target, others: Iterable[OtherApp], server_id: str | None) -> StepResult:
    """EnvironmentSafe=True, or a stalled halt with EnvironmentSafe=False/UnsafeDatabasePairing and a
    Warning Event naming the rules broken. `others`: the other apps near the same database (for S5);
    `server_id`: the server's system_identifier when known from earlier provisioning."""
    try:
        check(app, target, others, stamp=None, server_id=server_id)
    except Halt as halt:
        return halt.result()
    return StepResult(
        conditions=(
            c.true(names.ENVIRONMENT_SAFE, "SafePairing", "the environment/database pairing is safe"),
        )
    )


def check(
    app: FlaskAppSpec,
    target: Target,
    others: Iterable[OtherApp],
    *,
    stamp: str | None,
    server_id: str | None,
) -> None:
    """Raise the unsafe-pairing Halt when any rule fails; `stamp` is the database's own environment stamp
    (S6), None before the database was asked."""
    violations = check_pairing(
        app.environment,
        target.identity,
        server_name=target.server.name if target.server else None,
        server_environments=target.server.environments if target.server else None,
        others=others,
        stamp=stamp,
        me=(app.created, app.namespace, app.name),
        server_id=server_id,
    )
    if violations:
        message = summary(violations)
        raise Halt(
            c.false(names.ENVIRONMENT_SAFE, UNSAFE, message),
            stalled=True,
            events=[Event("Warning", UNSAFE, f"refusing to act: {message}")],
        )
