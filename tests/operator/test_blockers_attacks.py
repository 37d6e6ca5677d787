"""Security review (attack-2) of blockers: whose Warning Events an app quotes in its status."""

from __future__ import annotations

from typing import Any

import pytest

from flaskops import blockers


def _warning(pod: str, msg: str) -> dict[str, Any]:
    return {
        "type": "Warning",
        "reason": "Failed",
        "message": msg,
        "involvedObject": {"kind": "Pod", "name": pod},
        "lastTimestamp": "2026-01-01T00:00:05Z",
    }


@pytest.mark.parametrize(
    "pod",
    [
        "shop-backup-q8wzt",  # Job "shop-backup" (someone else's, same namespace)
        "shop-29412345-x7k2p",  # a Job of CronJob "shop" (<cronjob>-<minutes since epoch>)
    ],
)
def test_a_rollout_never_quotes_the_warnings_of_another_workloads_pods(pod: str) -> None:
    events = [_warning(pod, "Error: ErrImagePull: registry.internal/backup:3 (another workload's)")]
    # Finding 3 (fixed): only the pods of the rollout's own ReplicaSet (<rs>-<5>) are its blockers.
    assert blockers.for_replica_set(events, "shop-7d9f8c6b5", since="2026-01-01T00:00:00Z") is None
