"""blockers: which Warning Event names why a migration Job or a rollout makes no progress (plain data)."""

from __future__ import annotations

from typing import Any

from flaskops import blockers, rollout


def _event(
    kind: str, name: str, reason: str, at: str, type_: str = "Warning", msg: str = "m"
) -> dict[str, Any]:
    return {
        "type": type_,
        "reason": reason,
        "message": msg,
        "involvedObject": {"kind": kind, "name": name},
        "lastTimestamp": at,
    }


JOB = "shop-migrate-0123456789"


def test_a_quota_refusal_of_the_jobs_pod_is_named() -> None:
    events = [_event("Job", JOB, "FailedCreate", "2026-01-01T00:00:05Z", msg="exceeded quota: pods")]
    got = blockers.for_job(events, JOB, since="2026-01-01T00:00:00Z")
    assert got is not None and got.reason == "FailedCreate" and "exceeded quota" in got.describe()


def test_the_newest_pod_warning_wins_and_older_ones_are_ignored() -> None:
    events = [
        _event("Pod", f"{JOB}-abcde", "FailedScheduling", "2026-01-01T00:00:05Z"),
        _event("Pod", f"{JOB}-abcde", "Failed", "2026-01-01T00:00:09Z", msg="ErrImagePull"),
        _event("Pod", f"{JOB}-zzzzz", "Failed", "2025-12-31T23:00:00Z", msg="an earlier Job's"),
    ]
    got = blockers.for_job(events, JOB, since="2026-01-01T00:00:00Z")
    assert got is not None and got.message == "ErrImagePull"


def test_normal_events_probes_and_other_objects_are_not_blockers() -> None:
    events = [
        _event("Pod", f"{JOB}-abcde", "Pulled", "2026-01-01T00:00:05Z", type_="Normal"),
        _event("Pod", f"{JOB}-abcde", "Unhealthy", "2026-01-01T00:00:05Z"),
        _event("Pod", f"{JOB}x-abcde", "Failed", "2026-01-01T00:00:05Z"),
        _event("Job", "other", "FailedCreate", "2026-01-01T00:00:05Z"),
    ]
    assert blockers.for_job(events, JOB, since="2026-01-01T00:00:00Z") is None


def test_rollout_pods_match_only_the_rollouts_replica_set() -> None:
    rs = "shop-7d9f8c6b5"
    events = [
        _event("Pod", "shop-api-7d9f8c6b5-abcde", "Failed", "2026-01-01T00:00:05Z", msg="another app's"),
        _event("Pod", "shop-migrate-0123456789-abcde", "Failed", "2026-01-01T00:00:05Z", msg="the Job's"),
        _event("Pod", "shop-5f6d7c8b9-abcde", "Failed", "2026-01-01T00:00:05Z", msg="the previous rollout's"),
    ]
    assert blockers.for_replica_set(events, rs, since="2026-01-01T00:00:00Z") is None
    assert blockers.for_replica_set(events, "", since="2026-01-01T00:00:00Z") is None
    events.append(_event("Pod", f"{rs}-abcde", "FailedScheduling", "2026-01-01T00:00:06Z", msg="0/2 nodes"))
    got = blockers.for_replica_set(events, rs, since="2026-01-01T00:00:00Z")
    assert got is not None and got.message == "0/2 nodes"


def test_a_replica_failure_of_the_deployment_is_its_failure() -> None:
    dep = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"image": "shop:1"}]}}},
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "conditions": [
                {"type": "Available", "status": "True"},
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": "exceeded quota",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "lastUpdateTime": "2026-01-01T00:00:00Z",
                    "message": 'ReplicaSet "shop-7d9f8c6b5" is progressing.',
                },
            ],
        },
    }
    view = rollout.view(dep)
    assert view.failure == "FailedCreate: exceeded quota" and view.progressed_at == "2026-01-01T00:00:00Z"
    assert view.replica_set == "shop-7d9f8c6b5"
    dep["status"]["conditions"][1]["status"] = "False"
    dep["status"]["conditions"][2] = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
    }
    assert (rollout.view(dep).failure or "").startswith("ProgressDeadlineExceeded")


def test_a_scheduling_refusal_just_before_the_deployment_recorded_progress_still_counts() -> None:
    """The scheduler may refuse a new pod a moment before the Deployment controller stamps its progress,
    and does not re-stamp the repeated Event soon (a clean-clone CI run missed a RolloutBlocked so)."""
    rs = "shop-7d9f8c6b5"
    events = [_event("Pod", f"{rs}-abcde", "FailedScheduling", "2026-01-01T00:00:58Z", msg="0/2 nodes")]
    got = blockers.for_replica_set(events, rs, since="2026-01-01T00:01:00Z")
    assert got is not None and got.reason == "FailedScheduling"
    old = [_event("Pod", f"{rs}-abcde", "FailedScheduling", "2025-12-31T23:00:00Z")]
    assert blockers.for_replica_set(old, rs, since="2026-01-01T00:01:00Z") is None


def test_the_newest_scaled_up_replica_set_names_the_rollouts_pods():
    """The Progressing condition may still name the previous ReplicaSet when the new pods never progress;
    the controller's ScalingReplicaSet Event names the new one (seen on the testbed, 1.36)."""
    from flaskops.blockers import newest_scaled_up

    def scaled(message, when, reason="ScalingReplicaSet", deployment="stuck"):
        return {
            "type": "Normal",
            "reason": reason,
            "message": message,
            "lastTimestamp": when,
            "involvedObject": {"kind": "Deployment", "name": deployment},
        }

    events = [
        scaled("Scaled up replica set stuck-fdc668bdb from 0 to 2", "2026-12-04T14:36:53Z"),
        scaled("Scaled up replica set stuck-66c5db5c4f from 0 to 1", "2026-12-04T14:36:54Z"),
        scaled("Scaled down replica set stuck-fdc668bdb from 2 to 1", "2026-12-04T14:36:59Z"),
        scaled("Scaled up replica set decoy-1 from 0 to 1", "2026-12-04T14:37:00Z", reason="Custom"),
        scaled("Scaled up replica set other-7f9 from 0 to 1", "2026-12-04T14:37:01Z", deployment="other"),
    ]
    assert newest_scaled_up(events, "stuck") == "stuck-66c5db5c4f"
    assert newest_scaled_up(events, "other") == "other-7f9"
    assert newest_scaled_up([], "stuck") == ""
