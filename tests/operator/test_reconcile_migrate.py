"""Migrate, then roll out (fast, on FakeKube): no Deployment runs an image before its migration Job
succeeded on the database the pods use; a failed migration keeps the old image serving until a retry.
tests/e2e/test_operator.py and test_truth.py cover the same rules against the real API server."""

from __future__ import annotations

import pytest

from flaskops import names
from flaskops.steps.migrate import MIGRATION_ABANDONED, MIGRATION_BLOCKED, RETRY_MIGRATION
from flaskops.steps.status import ROLLOUT_BLOCKED
from tests.operator.behaviour_support import (
    APP,
    NS,
    annotate,
    conditions,
    edit_spec,
    events,
    image_of,
    message,
    new_app,
    reconcile,
    running_jobs,
    settle,
    status,
    url_secret,
)
from tests.operator.fake_kube import FakeKube


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube(namespaces=[NS])


def _job(kube: FakeKube) -> str:
    (job,) = running_jobs(kube)
    return str(job["metadata"]["name"])


def test_no_deployment_before_the_migration_job_succeeded(kube: FakeKube) -> None:
    new_app(kube)
    first = reconcile(kube)
    assert conditions(first)[names.MIGRATED] == ("False", "Migrating")
    assert conditions(first)[names.AVAILABLE] == ("False", "NotDeployed")
    job = _job(kube)
    assert kube.get("Deployment", NS, APP) is None and kube.get("Service", NS, APP) is None

    kube.start_job(NS, job)
    reconcile(kube)
    assert kube.get("Deployment", NS, APP) is None  # running is not migrated

    kube.finish_job(NS, job)
    done = reconcile(kube)
    assert conditions(done)[names.MIGRATED] == ("True", "Migrated")
    dep = kube.get("Deployment", NS, APP)
    assert dep is not None and image_of(dep) == "app:1"
    assert not done.ready and "servingImage" not in done.status  # created, not rolled out yet

    kube.roll_out(NS, APP)
    ready = reconcile(kube)
    assert ready.ready and ready.status["servingImage"] == "app:1"


def test_an_upgrade_migrates_first_while_the_old_image_serves(kube: FakeKube) -> None:
    new_app(kube)
    settle(kube)
    edit_spec(kube, {"image": "app:2"})
    result = reconcile(kube)
    assert conditions(result)[names.MIGRATED] == ("False", "Migrating")
    assert result.status["servingImage"] == "app:1" and result.status["desiredImage"] == "app:2"
    dep = kube.get("Deployment", NS, APP)
    assert dep is not None and image_of(dep) == "app:1"
    (job,) = running_jobs(kube)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "app:2"

    kube.finish_job(NS, job["metadata"]["name"])
    reconcile(kube)
    dep = kube.get("Deployment", NS, APP)
    assert dep is not None and image_of(dep) == "app:2"
    assert status(kube)["servingImage"] == "app:1"  # until the new pods are available
    kube.roll_out(NS, APP)
    assert reconcile(kube).status["servingImage"] == "app:2"
    # The superseded migration Job of app:1 is deleted once app:2's succeeded.
    assert [j["metadata"]["name"] for j in kube.list("Job", NS)] == [job["metadata"]["name"]]


def test_a_failed_migration_keeps_the_old_image_serving_until_a_retry(kube: FakeKube) -> None:
    new_app(kube)
    settle(kube)
    before = kube.get("Deployment", NS, APP)
    edit_spec(kube, {"image": "app:2"})
    reconcile(kube)
    failed_job = _job(kube)
    kube.finish_job(NS, failed_job, succeeded=False)

    result = reconcile(kube)
    assert conditions(result)[names.MIGRATED] == ("False", "MigrationFailed")
    assert conditions(result)[names.STALLED] == ("True", "MigrationFailed")
    assert conditions(result)[names.AVAILABLE] == ("True", "MinimumReplicasAvailable")
    assert "BackoffLimitExceeded" in message(result, names.MIGRATED)
    assert result.status["servingImage"] == "app:1"
    after = kube.get("Deployment", NS, APP)
    assert after == before  # not one write to the serving Deployment
    assert [e["type"] for e in events(kube, "MigrationFailed")] == ["Warning"]
    # Reconciling again (any event) starts no second Job for the same failed spec.
    reconcile(kube)
    assert len(kube.list("Job", NS)) == 2 and running_jobs(kube) == []

    annotate(kube, RETRY_MIGRATION, "1")
    retried = reconcile(kube)
    job = _job(kube)
    assert job != failed_job
    assert conditions(retried)[names.MIGRATED] == ("False", "Migrating")
    kube.finish_job(NS, job)
    reconcile(kube)
    kube.roll_out(NS, APP)
    final = reconcile(kube)
    assert final.ready and final.status["servingImage"] == "app:2"
    assert final.status["migration"]["retry"] == "1"
    # The same token again is no new retry.
    reconcile(kube)
    assert running_jobs(kube) == []


def test_one_migration_at_a_time_and_a_job_that_never_started_is_abandoned(kube: FakeKube) -> None:
    new_app(kube)
    settle(kube)
    edit_spec(kube, {"image": "app:2"})
    reconcile(kube)
    running = _job(kube)
    kube.start_job(NS, running)  # its pod runs: never killed
    edit_spec(kube, {"image": "app:3"})
    waiting = reconcile(kube)
    assert conditions(waiting)[names.MIGRATED] == ("False", "Migrating")
    assert f"waiting for migration Job '{running}'" in message(waiting, names.MIGRATED)
    assert [j["metadata"]["name"] for j in running_jobs(kube)] == [running]

    # Had it never started (its pod pending), the spec's move on deletes it and migrates app:3.
    kube.delete("Job", NS, running)
    edit_spec(kube, {"image": "app:4"})
    reconcile(kube)
    pending = _job(kube)
    kube.start_job(NS, pending, ready=False)
    edit_spec(kube, {"image": "app:5"})
    moved = reconcile(kube)
    assert [e.reason for e in moved.events if e.reason == MIGRATION_ABANDONED] == [MIGRATION_ABANDONED]
    (job,) = running_jobs(kube)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "app:5"


def test_moving_to_another_database_migrates_it_before_the_pods_move(kube: FakeKube) -> None:
    new_app(kube)
    settle(kube)
    url_secret(kube, "other-db", "postgresql://shop:pw@elsewhere.internal:5432/shop")
    edit_spec(kube, {"database": {"existingSecret": {"name": "other-db", "key": "URL"}}})
    reconcile(kube)
    job = _job(kube)
    dep = kube.get("Deployment", NS, APP)
    assert dep is not None
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "legacy-db"  # still the old one
    kube.finish_job(NS, job)
    reconcile(kube)
    dep = kube.get("Deployment", NS, APP)
    assert dep is not None
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "other-db"


def test_a_migration_whose_pod_cannot_run_says_why(kube: FakeKube) -> None:
    new_app(kube)
    reconcile(kube)
    job = _job(kube)
    kube.start_job(NS, job, ready=False)
    kube.advance(5)
    pod = kube.pod_name(job)
    kube.warning_event(NS, {"kind": "Pod", "name": pod}, "Failed", 'Error: secret "x" not found')
    result = reconcile(kube)
    assert conditions(result)[names.MIGRATED] == ("False", MIGRATION_BLOCKED)
    assert f"Failed (Pod {pod})" in message(result, names.MIGRATED)
    assert result.recheck_after is not None


def test_a_rollout_the_cluster_refuses_says_why(kube: FakeKube) -> None:
    new_app(kube)
    reconcile(kube)
    kube.finish_job(NS, _job(kube))
    reconcile(kube)
    quota = 'pods "web-x" is forbidden: exceeded quota: compute, requested: cpu=1, limited: cpu=1'
    kube.stall_rollout(NS, APP, reason="FailedCreate", message=quota)
    result = reconcile(kube)
    assert conditions(result)[names.READY] == ("False", ROLLOUT_BLOCKED)
    assert "exceeded quota" in message(result, names.READY)
    assert any(e.type == "Warning" and e.reason == ROLLOUT_BLOCKED for e in result.events)
