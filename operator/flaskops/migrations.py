"""Reading migration Jobs: which one is this spec's, and how it went."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"


@dataclass(frozen=True)
class JobView:
    name: str
    image: str
    outcome: str
    started_at: str | None
    completed_at: str | None
    message: str
    ready: int = 0  # pods running and ready (Job status.ready)
    # Whether no migration container runs or has run: no pod ready, none succeeded or failed (a pod may
    # be pending: refused by a quota, unschedulable, or pulling its image).
    never_ran: bool = False
    created_at: str = ""
    uid: str = ""  # which object this view is of (a delete names it as its precondition)


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def view(job: Mapping[str, Any]) -> JobView:
    """The outcome of a Job from its terminal conditions (Complete / Failed), else Running."""
    status = job.get("status") or {}
    containers = ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    if complete:
        outcome, message = SUCCEEDED, "completed"
        completed = status.get("completionTime") or complete.get("lastTransitionTime")
    elif failed:
        outcome = FAILED
        message = f"{failed.get('reason') or 'Failed'}: {failed.get('message') or 'the migration pod failed'}"
        completed = failed.get("lastTransitionTime")
    else:
        outcome, message, completed = RUNNING, "running", None
    return JobView(
        name=str((job.get("metadata") or {}).get("name", "")),
        image=str(containers[0].get("image", "")),
        outcome=outcome,
        started_at=status.get("startTime"),
        completed_at=completed,
        message=message,
        ready=int(status.get("ready") or 0),
        never_ran=outcome == RUNNING
        and not any(int(status.get(k) or 0) for k in ("ready", "succeeded", "failed")),
        created_at=str((job.get("metadata") or {}).get("creationTimestamp") or ""),
        uid=str((job.get("metadata") or {}).get("uid") or ""),
    )


def running_other_than(jobs: Iterable[Mapping[str, Any]], name: str) -> JobView | None:
    """A migration Job of this app, other than `name`, that is still running (one at a time per app)."""
    for job in jobs:
        v = view(job)
        if (
            v.name != name
            and v.outcome == RUNNING
            and not (job.get("metadata") or {}).get("deletionTimestamp")
        ):
            return v
    return None


def superseded(jobs: Iterable[Mapping[str, Any]], keep: str) -> list[str]:
    """Finished migration Jobs other than `keep`: safe to delete once `keep` has succeeded."""
    return sorted(view(j).name for j in jobs if view(j).name != keep and view(j).outcome != RUNNING)
