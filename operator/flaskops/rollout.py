"""Reading the Gunicorn Deployment: is the current generation fully rolled out, and is it available."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RolloutView:
    exists: bool
    image: str | None
    rolled_out: bool
    available: bool
    replicas: int
    ready_replicas: int
    message: str
    # Why the Deployment cannot progress, from its own conditions: ReplicaFailure (a quota or an admission
    # plugin refused its pods) or ProgressDeadlineExceeded. None when nothing says so.
    failure: str | None = None
    # When the Deployment last made progress (its Progressing condition), RFC 3339; "" when unknown.
    progressed_at: str = ""
    # The ReplicaSet the rollout is making, as the Deployment controller's Progressing message names it
    # ('ReplicaSet "shop-5d8f7c9b6" is progressing.'); "" when it names none.
    replica_set: str = ""


MISSING = RolloutView(False, None, False, False, 0, 0, "the Deployment does not exist yet")


def view(dep: Mapping[str, Any] | None) -> RolloutView:
    """Rolled out = the controller saw this generation and every replica is updated and available."""
    if not dep:
        return MISSING
    meta = dep.get("metadata") or {}
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    avail = int(status.get("availableReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    seen = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    rolled_out = seen and updated == want and total == want and avail == want
    available_cond = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Available"),
        None,
    )
    available = bool(available_cond and available_cond.get("status") == "True")
    if available_cond is None and want == 0 and seen:
        available = True
    if rolled_out:
        message = f"{avail}/{want} replicas available"
    elif not seen:
        message = "waiting for the Deployment controller to observe the new generation"
    else:
        message = f"rolling out: {updated}/{want} updated, {avail}/{want} available, {total} total"
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    failure = None
    replica_failure = conds.get("ReplicaFailure") or {}
    progressing = conds.get("Progressing") or {}
    if replica_failure.get("status") == "True":
        failure = (
            f"{replica_failure.get('reason') or 'ReplicaFailure'}: {replica_failure.get('message') or ''}"
        )
    elif progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        failure = f"ProgressDeadlineExceeded: {progressing.get('message') or ''}"
    progressed = str(progressing.get("lastUpdateTime") or "")
    named = _REPLICA_SET.search(str(progressing.get("message") or ""))
    return RolloutView(
        True,
        containers[0].get("image"),
        rolled_out,
        available,
        total,
        ready,
        message,
        failure,
        progressed,
        named.group(1) if named else "",
    )


# The Deployment controller's Progressing messages (NewReplicaSetReason and friends in
# kubernetes/pkg/controller/deployment/util) name the ReplicaSet in double quotes.
_REPLICA_SET = re.compile(r'ReplicaSet "([a-z0-9.-]+)"')
