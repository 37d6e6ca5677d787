"""FakeKube itself, without a cluster: it serves every verb of flaskops.kube.Kube with the same signature,
its controllers write what the operator's readers (rollout.view, migrations.view, blockers) understand, and
its merge patch undoes flaskops' merge_patch_diff. tests/e2e/test_fake_kube_contract.py compares it with the real
API server."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flaskops import blockers, migrations, rollout
from flaskops.kube import ApiException, Kube, merge_patch_diff
from tests.operator.fake_kube import FakeKube, Selector, merge_patch

NS = "shop"


def test_every_kube_verb_is_served_with_the_same_parameters() -> None:
    verbs = [n for n, f in vars(Kube).items() if inspect.isfunction(f) and not n.startswith("_")]
    assert {"get", "list", "create", "apply", "merge_patch", "delete", "read_secret_data"} <= set(verbs)
    # Kube's reads that are built on its verbs (the ones cache.CachedClient answers from memory) are
    # inherited: they exercise the fake's get/list like the real ones do.
    derived = {"live", "jobs", "verified", "verify"}
    for name in verbs:
        if name in derived:
            continue
        assert name in vars(FakeKube), f"FakeKube does not serve Kube.{name}: add it to the fake"
        real = list(inspect.signature(getattr(Kube, name)).parameters.values())
        fake = list(inspect.signature(getattr(FakeKube, name)).parameters.values())
        if name == "request":
            continue  # refused on purpose: the operator's reconcile uses the verbs
        assert [(p.name, p.default) for p in fake[: len(real)]] == [(p.name, p.default) for p in real], name
        assert all(p.kind is p.KEYWORD_ONLY for p in fake[len(real) :]), name


def _deployment(kube: FakeKube, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": "web"}
    return kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "w", "image": "a:1"}]},
                },
            },
        }
    )


def _job(kube: FakeKube) -> dict[str, Any]:
    return kube.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "web-migrate-1", "namespace": NS},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "a:1"}]}
                }
            },
        }
    )


def test_a_rollout_reads_as_rolled_out_and_available() -> None:
    kube = FakeKube(namespaces=[NS])
    assert not rollout.view(_deployment(kube)).rolled_out  # the controller has not observed it yet
    partial = rollout.view(kube.roll_out(NS, "web", available=1))
    assert not partial.rolled_out and not partial.available
    assert partial.replica_set == kube.replica_set_name(NS, "web") and partial.progressed_at == kube.now()
    done = rollout.view(kube.roll_out(NS, "web"))
    assert done.rolled_out and done.available and done.message == "2/2 replicas available"
    kube.merge_patch("Deployment", NS, "web", {"spec": {"replicas": 3}})
    assert not rollout.view(kube.get("Deployment", NS, "web")).rolled_out  # a new generation


@pytest.mark.parametrize(
    ("reason", "message", "failure"),
    [
        ("ProgressDeadlineExceeded", "", "ProgressDeadlineExceeded: ReplicaSet"),
        ("FailedCreate", 'pods "x" is forbidden: exceeded quota', "FailedCreate: pods"),
    ],
)
def test_a_stalled_rollout_reads_as_failed(reason: str, message: str, failure: str) -> None:
    kube = FakeKube(namespaces=[NS])
    _deployment(kube)
    view = rollout.view(kube.stall_rollout(NS, "web", reason=reason, message=message))
    assert view.failure is not None and view.failure.startswith(failure)
    assert not view.rolled_out


def test_jobs_read_as_running_pending_succeeded_and_failed() -> None:
    kube = FakeKube(namespaces=[NS])
    job = _job(kube)
    assert job["spec"]["backoffLimit"] == 6 and "job-name" in job["spec"]["template"]["metadata"]["labels"]
    assert migrations.view(kube.start_job(NS, "web-migrate-1", ready=False)).never_ran
    assert migrations.view(kube.start_job(NS, "web-migrate-1")).ready == 1
    kube.advance(8)
    done = migrations.view(kube.finish_job(NS, "web-migrate-1"))
    assert done.outcome == migrations.SUCCEEDED and done.completed_at == kube.now()
    with pytest.raises(AssertionError, match="finished already"):
        kube.finish_job(NS, "web-migrate-1")
    kube.delete("Job", NS, "web-migrate-1")
    _job(kube)
    failed = migrations.view(kube.finish_job(NS, "web-migrate-1", succeeded=False))
    assert failed.outcome == migrations.FAILED
    assert failed.message == "BackoffLimitExceeded: Job has reached the specified backoff limit"


def test_warning_events_are_found_by_the_blockers() -> None:
    kube = FakeKube(namespaces=[NS])
    _deployment(kube)
    kube.roll_out(NS, "web", available=0)
    rs = kube.replica_set_name(NS, "web")
    pod = kube.pod_name(rs)
    kube.warning_event(
        NS, {"kind": "Pod", "name": pod}, "FailedScheduling", "0/3 nodes", component="default-scheduler"
    )
    warnings = kube.list("Event", NS, fields="type=Warning")
    found = blockers.for_replica_set(warnings, rs, since=kube.now())
    assert found is not None and (found.name, found.reason) == (pod, "FailedScheduling")
    kube.warning_event(NS, {"kind": "Job", "name": "web-migrate-1"}, "FailedCreate", "quota")
    found = blockers.for_job(kube.list("Event", NS, fields="type=Warning"), "web-migrate-1", since="")
    assert found is not None and found.reason == "FailedCreate"


def test_watchers_see_changes_but_no_write_that_changes_nothing() -> None:
    kube = FakeKube(namespaces=[NS])
    seen: list[tuple[str, str]] = []
    kube.watch(lambda type_, obj: seen.append((type_, obj["metadata"]["resourceVersion"])))
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}, "data": {}}
    kube.apply(body)
    kube.apply(body)
    kube.merge_patch("Secret", NS, "s", {"metadata": {"labels": {"a": "b"}}})
    kube.delete("Secret", NS, "s")
    assert [t for t, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert kube.count(["apply", "patch", "delete"]) == 4 and kube.count(["get", "list"]) == 0


def test_the_garbage_collector_deletes_orphans_only() -> None:
    kube = FakeKube(namespaces=[NS])
    owner = _deployment(kube)
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner["metadata"]["uid"]}
    for name, refs in {"child": [ref], "free": []}.items():
        kube.create({"kind": "Secret", "metadata": {"name": name, "namespace": NS, "ownerReferences": refs}})
    assert kube.collect_garbage() == []
    kube.delete("Deployment", NS, "web")
    assert kube.collect_garbage() == [("Secret", NS, "child")]
    assert kube.get("Secret", NS, "free") is not None


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("a=1", {"a": "1"}, True),
        ("a!=1", {}, True),
        ("a in (1, 2),!b", {"a": "2"}, True),
        ("a notin (1)", {"a": "1"}, False),
        ("a,b", {"a": "1"}, False),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert Selector.parse(selector).matches(labels) is matches


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=12,
)
# Merge patches cannot set a value to null (null means "remove"): objects whose values are never null.
OBJECTS = st.dictionaries(st.text(max_size=2), JSON.filter(lambda v: v is not None), max_size=4).map(
    lambda d: _no_null_values(d)
)


def _no_null_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_null_values(v) for k, v in value.items() if v is not None}
    return value


@given(old=OBJECTS, new=OBJECTS)
def test_merge_patch_applies_what_merge_patch_diff_computes(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert merge_patch(old, merge_patch_diff(old, new)) == new


def test_a_rejected_write_is_refused_like_the_api_server_refuses_it() -> None:
    kube = FakeKube(namespaces=[NS])
    kube.reject(
        "Deployment", lambda body: body["spec"]["replicas"] > 2, 422, 'Deployment.apps "web" is invalid'
    )
    _deployment(kube, replicas=2)
    with pytest.raises(ApiException) as refused:
        kube.merge_patch("Deployment", NS, "web", {"spec": {"replicas": 3}})
    assert refused.value.status == 422 and "is invalid" in (refused.value.body or "")
    assert kube.get("Deployment", NS, "web")["spec"]["replicas"] == 2  # type: ignore[index]
