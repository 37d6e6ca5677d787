"""Why a child makes no progress: the Warning Events Kubernetes posts about it and its pods.

The Job controller posts FailedCreate on a Job whose pods a ResourceQuota or an admission plugin refuses;
the scheduler posts FailedScheduling, and the kubelet Failed (image pull, a missing Secret key) or BackOff
on a pod. None of that shows in the Job's or Deployment's status until a deadline passes (600 s by
default), so the reconcile reads these Events while a child is stuck and names the cause at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Reasons that keep a pod from ever running as it is. Not "Unhealthy": a failing readiness probe is normal
# for the first seconds of every pod, and an app that never turns ready shows as unavailable anyway.
POD_BLOCKERS = frozenset(
    {
        "Failed",
        "BackOff",
        "FailedScheduling",
        "FailedMount",
        "FailedCreatePodSandBox",
        "InspectFailed",
        "ErrImageNeverPull",
        "FailedCreatePodContainer",
    }
)


@dataclass(frozen=True)
class Blocker:
    kind: str  # the object the Event is about: Job, Pod
    name: str
    reason: str  # the Event's reason, e.g. FailedCreate, FailedScheduling, Failed
    message: str

    def describe(self) -> str:
        return f"{self.reason} ({self.kind} {self.name}): {_bounded(self.message)}"


# An Event's message is quoted into status and logs: anyone in the namespace can post one, so at most
# this many characters, without control characters.
QUOTE_LIMIT = 512


def _bounded(text: str) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"


def for_job(events: Iterable[Mapping[str, Any]], job: str, since: str) -> Blocker | None:
    """The newest Warning (at or after `since`, RFC 3339) about Job `job` or one of its pods (`<job>-xxxxx`)."""
    pod = re.compile(rf"^{re.escape(job)}-[a-z0-9]{{5}}$")
    return _newest(
        events,
        since,
        lambda kind, name, reason: (
            (kind == "Job" and name == job and reason == "FailedCreate")
            or (kind == "Pod" and bool(pod.match(name)) and reason in POD_BLOCKERS)
        ),
    )


def for_replica_set(events: Iterable[Mapping[str, Any]], replica_set: str, since: str) -> Blocker | None:
    """The newest Warning (at most GRACE_SECONDS before `since`) about a pod of ReplicaSet `replica_set`.

    `since` is when the Deployment last progressed; a pod it created then may have been refused by the
    scheduler a moment before the Deployment controller wrote that time, and the scheduler does not
    re-stamp a repeated FailedScheduling soon (Event series are flushed rarely): hence the grace.

    The rollout's ReplicaSet, not the Deployment's name, so pods of another workload whose name merely
    starts with the app's (a Job `shop-backup`, a CronJob `shop`'s Jobs) are never quoted.
    """
    if not replica_set:
        return None
    pod = re.compile(rf"^{re.escape(replica_set)}-[a-z0-9]{{5}}$")
    return _newest(
        events,
        _earlier(since, GRACE_SECONDS),
        lambda kind, name, reason: kind == "Pod" and bool(pod.match(name)) and reason in POD_BLOCKERS,
    )


def newest_scaled_up(events: Iterable[Mapping[str, Any]], deployment: str) -> str:
    """The ReplicaSet the Deployment controller last scaled up for Deployment `deployment`, from its
    ScalingReplicaSet Events ("Scaled up replica set shop-5d8f7c9b6 from 0 to 1"); "" when none says.

    A rollout's new ReplicaSet is not always named by the Deployment's Progressing condition: when the new
    pods make no progress at all, the controller leaves the condition naming the previous ReplicaSet
    ("... has successfully progressed"), so only this Event tells which pods to look at.
    """
    best: tuple[str, str] | None = None
    for ev in events:
        found = _SCALED_UP.search(str(ev.get("message") or ev.get("note") or ""))
        about = ev.get("involvedObject") or ev.get("regarding") or {}
        if found and ev.get("reason") == "ScalingReplicaSet" and about.get("name") == deployment:
            when = _time(ev)
            if best is None or when >= best[0]:
                best = (when, found.group(1))
    return best[1] if best else ""


# The Deployment controller's message (kubernetes/pkg/controller/deployment/sync.go, scaleReplicaSet).
_SCALED_UP = re.compile(r"Scaled up replica set ([a-z0-9.-]+)")

# How far before the Deployment's last progress a pod Warning still counts (see for_replica_set).
GRACE_SECONDS = 60


def _earlier(stamp: str, seconds: int) -> str:
    """An RFC 3339 time (second precision) moved `seconds` earlier; "" stays "" (no lower bound)."""
    if not stamp:
        return ""
    when = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S") - timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _newest(events: Iterable[Mapping[str, Any]], since: str, relevant: Any) -> Blocker | None:
    best: tuple[str, Blocker] | None = None
    since = since[:19]
    for ev in events:
        if ev.get("type") != "Warning":
            continue
        obj = ev.get("involvedObject") or ev.get("regarding") or {}
        kind, name, reason = str(obj.get("kind", "")), str(obj.get("name", "")), str(ev.get("reason", ""))
        when = _time(ev)
        if when < since or not relevant(kind, name, reason):
            continue
        if best is None or when >= best[0]:
            best = (when, Blocker(kind, name, reason, str(ev.get("message") or ev.get("note") or "").strip()))
    return best[1] if best else None


def _time(ev: Mapping[str, Any]) -> str:
    """When an Event last happened, as RFC 3339 text (second precision compares as text)."""
    series = (ev.get("series") or {}).get("lastObservedTime")
    stamp = series or ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or ""
    return str(stamp)[:19]
