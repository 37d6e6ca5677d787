"""Reading Jobs and Deployments, the summary conditions and the Events they post — on plain data."""

from flaskops import conditions as c
from flaskops import migrations, names, rollout
from flaskops.spec import parse_flaskapp
from flaskops.steps.status import summary, transition_events

APP = parse_flaskapp(
    {
        "metadata": {"name": "a", "namespace": "n", "generation": 1},
        "spec": {"environment": "testing", "image": "i:2", "replicas": 2, "database": {"server": "s"}},
    }
)


def job(name, *conds, image="i:2"):
    return {
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{"image": image}]}}},
        "status": {
            "conditions": [{"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conds]
        },
    }


def test_job_outcomes():
    assert migrations.view(job("j")).outcome == migrations.RUNNING
    assert migrations.view(job("j", ("Complete", "", ""))).outcome == migrations.SUCCEEDED
    failed = migrations.view(
        job("j", ("Failed", "BackoffLimitExceeded", "Job has reached the backoff limit"))
    )
    assert failed.outcome == migrations.FAILED
    assert "BackoffLimitExceeded" in failed.message
    # Kubernetes >= 1.31 adds FailureTarget/SuccessCriteriaMet before the terminal ones: still running.
    assert migrations.view(job("j", ("FailureTarget", "", ""))).outcome == migrations.RUNNING


def test_one_running_migration_at_a_time():
    jobs = [job("old"), job("done", ("Complete", "", "")), job("new")]
    assert migrations.running_other_than(jobs, "new").name == "old"
    assert migrations.running_other_than(jobs[1:], "new") is None
    assert migrations.superseded(jobs, keep="new") == ["done"]


def deployment(generation=2, observed=2, replicas=2, updated=2, available=2, total=2, avail_cond="True"):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": "i:2"}]}}},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "readyReplicas": available,
            "replicas": total,
            "conditions": [{"type": "Available", "status": avail_cond}],
        },
    }


def test_rollout_view():
    assert rollout.view(None).exists is False
    done = rollout.view(deployment())
    assert done.rolled_out and done.available and done.image == "i:2"
    assert not rollout.view(deployment(observed=1)).rolled_out
    midway = rollout.view(deployment(updated=1, total=3))
    assert midway.available and not midway.rolled_out
    assert "1/2 updated" in midway.message


def step_conds(*conds):
    return c.merge([], conds, 1, "t")


def test_summary_ready_only_when_everything_is_done():
    ok = step_conds(
        c.true(names.ENVIRONMENT_SAFE, "SafePairing", ""),
        c.true(names.DATABASE_READY, "Provisioned", ""),
        c.true(names.MIGRATED, "Migrated", ""),
        c.true(names.AVAILABLE, "MinimumReplicasAvailable", "2/2 replicas available"),
    )
    ready, reconciling, stalled = summary(ok, APP, rolled_out=True, stalled=False, retrying=False)
    assert (ready.status, reconciling.status, stalled.status) == ("True", "False", "False")
    ready, reconciling, _ = summary(ok, APP, rolled_out=False, stalled=False, retrying=False)
    assert (ready.status, ready.reason, reconciling.status) == ("False", "RollingOut", "True")


def test_summary_names_the_blocking_step_and_stalls_on_refusal():
    unsafe = step_conds(c.false(names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing", "S1: ..."))
    ready, reconciling, stalled = summary(unsafe, APP, rolled_out=False, stalled=True, retrying=False)
    assert ready.reason == "UnsafeDatabasePairing"
    assert (reconciling.status, stalled.status) == ("False", "True")
    failing = step_conds(
        c.true(names.ENVIRONMENT_SAFE, "SafePairing", ""),
        c.true(names.DATABASE_READY, "Provisioned", ""),
        c.false(names.MIGRATED, "MigrationFailed", "Job failed"),
        c.true(names.AVAILABLE, "MinimumReplicasAvailable", "2/2"),
    )
    ready, _, stalled = summary(failing, APP, rolled_out=True, stalled=True, retrying=False)
    assert (ready.reason, stalled.reason) == ("MigrationFailed", "MigrationFailed")


def test_events_only_on_transitions():
    before = step_conds(c.false(names.MIGRATED, "Migrating", "running"))
    after = step_conds(c.false(names.MIGRATED, "MigrationFailed", "boom"), c.true(names.READY, "Ready", ""))
    events = transition_events(before, after)
    assert [(e.type, e.reason) for e in events] == [("Warning", "MigrationFailed"), ("Normal", "Ready")]
    assert transition_events(after, after) == []


def test_first_rollout_is_progress_not_a_warning():
    first = step_conds(c.false(names.AVAILABLE, "NotDeployed", "no Deployment yet"))
    assert transition_events([], first) == []
    rolling = step_conds(c.false(names.AVAILABLE, "MinimumReplicasUnavailable", "0/2"))
    assert transition_events(first, rolling) == []
    lost = transition_events(step_conds(c.true(names.AVAILABLE, "MinimumReplicasAvailable", "2/2")), rolling)
    assert [(e.type, e.reason) for e in lost] == [("Warning", "MinimumReplicasUnavailable")]


def test_unreachable_database_warns():
    down = step_conds(c.false(names.DATABASE_READY, "DatabaseUnavailable", "connection refused"))
    assert [e.type for e in transition_events([], down)] == ["Warning"]


def test_the_first_failed_step_blocks_even_before_the_pairing_was_judged():
    # A typo in spec.database.server fails resolving, before EnvironmentSafe is ever evaluated:
    # `kubectl get` must show ServerNotFound, not Pending.
    conds = c.merge(
        [], [c.false(names.DATABASE_READY, "ServerNotFound", "PostgresServer 'mian' does not exist")], 1, "t"
    )
    ready = {x.type: x for x in summary(conds, APP, rolled_out=False, stalled=False, retrying=False)}[
        names.READY
    ]
    assert (ready.status, ready.reason) == ("False", "ServerNotFound")
    pending = {x.type: x for x in summary([], APP, rolled_out=False, stalled=False, retrying=False)}
    assert pending[names.READY].reason == "Pending"


def test_a_migration_is_for_this_image_on_this_database():
    from flaskops import manifests

    assert manifests.migration_job_name(APP, database="h:5432/a?user=a") != manifests.migration_job_name(
        APP, database="h:5432/b?user=b"
    )
