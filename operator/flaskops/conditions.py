"""metav1.Condition bookkeeping: lastTransitionTime moves only when status does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import names


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


def true(type_: str, reason: str, message: str) -> Condition:
    return Condition(type_, "True", reason, message)


def false(type_: str, reason: str, message: str) -> Condition:
    return Condition(type_, "False", reason, message)


def unknown(type_: str, reason: str, message: str) -> Condition:
    return Condition(type_, "Unknown", reason, message)


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).strftime(TIME_FORMAT)


def age_seconds(since: str | None, now: str) -> float:
    """Seconds from `since` to `now` (both RFC 3339 to the second, as now_iso writes); 0 without `since`."""
    if not since:
        return 0.0
    return (datetime.strptime(now, TIME_FORMAT) - datetime.strptime(since, TIME_FORMAT)).total_seconds()


def merge(
    existing: Iterable[Mapping[str, Any]],
    updates: Iterable[Condition],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """The conditions after applying updates, in the contract's order; others are kept as they were."""
    by_type = {c["type"]: dict(c) for c in existing}
    for cond in updates:
        old = by_type.get(cond.type)
        transition = old["lastTransitionTime"] if old and old.get("status") == cond.status else now
        by_type[cond.type] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "observedGeneration": generation,
            "lastTransitionTime": transition,
        }
    order = {t: i for i, t in enumerate(names.CONDITION_TYPES)}
    return sorted(by_type.values(), key=lambda c: (order.get(c["type"], len(order)), c["type"]))


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    c = find(conditions, type_)
    return bool(c and c.get("status") == "True")
