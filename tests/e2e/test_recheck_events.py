"""A reconcile that nothing else wakes — a rollout stuck for STUCK_SECONDS, found by the recheck the work
queue schedules (runtime.WorkQueue.add_after) — writes its condition and posts its Event.

History: with per-app timers beside kopf's own handler path, the recheck chain sometimes stopped (1 run in
3), and a timer thread lacked kopf's context variables (LookupError, no Event). One queue now schedules
every reconcile of an app, in workers that carry that context.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import Apps, Kube, OperatorProcess, flaskapp

from flaskops import names
from flaskops.steps.status import ROLLOUT_BLOCKED
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e


def test_a_rollout_blocked_found_by_the_recheck_timer_posts_its_warning(
    operator: OperatorProcess, kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["development", "testing"])
    body = flaskapp("stuck", ns, server=server, environment="testing", migrations={"enabled": False})
    apps.apply(body)
    apps.wait(ns, "stuck", timeout=120)
    # No node has 1000 CPUs: the new pods stay Pending (FailedScheduling), no ReplicaFailure, so only the
    # recheck timer finds the blocker, once the rollout has made no progress for STUCK_SECONDS.
    body["spec"]["resources"] = {"requests": {"cpu": "1000"}}
    apps.apply(body)
    try:
        apps.wait_reason(ns, "stuck", names.READY, ROLLOUT_BLOCKED, timeout=120)
    except TimeoutError:
        # What Kubernetes said meanwhile: the blocker the operator should have quoted, or its absence.
        print(kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout)
        print(kube.kubectl("get", "pods,replicasets", "-n", ns, "-o", "wide").stdout)
        raise

    def warned() -> bool:
        if not any(
            e["reason"] == ROLLOUT_BLOCKED and e["type"] == "Warning" for e in apps.events(ns, "stuck")
        ):
            raise NotYet([e["reason"] for e in apps.events(ns, "stuck")])
        return True

    # Must hold: the documented Warning Event is posted along with the condition.
    wait_for(warned, timeout=20, what="the RolloutBlocked Warning Event")
    assert "LookupError" not in operator.log_text()
