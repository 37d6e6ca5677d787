"""Deletes name the object the operator decided about (DeleteOptions.preconditions.uid): an object someone
re-created under the same name between the decision and the delete is refused by the API server (409) and
left alone. Fast, on FakeKube, which refuses a stale uid as the API server does
(tests/e2e/test_fake_kube_contract.py::delete_preconditions checks that against the real one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flaskops import cache, names
from flaskops.kube import ApiException
from flaskops.reconcile import Reconciler
from tests.operator.behaviour_support import (
    APP,
    NS,
    USER,
    edit_spec,
    new_app,
    reconcile,
    running_jobs,
    settle,
)
from tests.operator.fake_kube import FakeKube


class RacingKube(FakeKube):
    """FakeKube where someone deletes and re-creates an object just before the operator's delete of it
    reaches the API server (`race[kind, name]` makes the replacement)."""

    def __init__(self) -> None:
        super().__init__(namespaces=[NS])
        self.race: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {}
        self.refused: list[tuple[str, str]] = []

    def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        propagation: str = "Background",
        *,
        uid: str | None = None,
        manager: str = "",
    ) -> bool:
        replace = self.race.pop((kind, name), None)
        if replace is not None:
            super().delete(kind, namespace, name, manager=USER)
            replace()
        try:
            return super().delete(kind, namespace, name, propagation, uid=uid, manager=manager)
        except ApiException as exc:
            self.refused.append((kind, name))
            raise exc


def _foreign(kube: FakeKube, kind: str, name: str) -> Callable[[], dict[str, Any]]:
    """Re-creates `name` as someone else's object of `kind` (no ownerReference, not labelled by flaskops)."""
    spec: dict[str, Any]
    if kind == "PodDisruptionBudget":
        body = {
            "apiVersion": "policy/v1",
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"x": "y"}}},
        }
    else:
        spec = {"restartPolicy": "Never", "containers": [{"name": "m", "image": "theirs:1"}]}
        body = {"apiVersion": "batch/v1", "spec": {"suspend": True, "template": {"spec": spec}}}
    return lambda: kube.create(
        {**body, "kind": kind, "metadata": {"name": name, "namespace": NS}}, manager=USER
    )


@pytest.fixture
def kube() -> RacingKube:
    return RacingKube()


def test_the_fake_refuses_a_delete_whose_uid_names_another_object() -> None:
    kube = FakeKube(namespaces=[NS])
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}}
    first = kube.create(secret)["metadata"]["uid"]
    kube.delete("Secret", NS, "s")
    second = kube.create(secret)["metadata"]["uid"]
    with pytest.raises(ApiException) as refused:
        kube.delete("Secret", NS, "s", uid=first)
    assert refused.value.status == 409 and f"({first})" in str(refused.value.body)
    assert kube.get("Secret", NS, "s")["metadata"]["uid"] == second  # type: ignore[index]
    assert kube.delete("Secret", NS, "s", uid=second) is True
    assert kube.delete("Secret", NS, "s", uid=second) is False  # gone: 404 before any precondition


def test_a_disruption_budget_re_created_by_someone_else_is_not_deleted_on_scale_down(
    kube: RacingKube,
) -> None:
    new_app(kube, replicas=2)
    settle(kube)
    ours = kube.get("PodDisruptionBudget", NS, APP)
    assert ours is not None
    edit_spec(kube, {"replicas": 1})
    kube.race["PodDisruptionBudget", APP] = _foreign(kube, "PodDisruptionBudget", APP)
    result = reconcile(kube)

    assert kube.refused == [("PodDisruptionBudget", APP)]
    theirs = kube.get("PodDisruptionBudget", NS, APP)
    assert theirs is not None and theirs["metadata"]["uid"] != ours["metadata"]["uid"]
    assert result.status["conditions"]  # the reconcile went on: the refusal is no error
    # Without a race the scale-down deletes the operator's own budget (the uid it decided about).
    kube.delete("PodDisruptionBudget", NS, APP, manager=USER)
    edit_spec(kube, {"replicas": 2})
    settle(kube)
    assert kube.get("PodDisruptionBudget", NS, APP) is not None
    edit_spec(kube, {"replicas": 1})
    reconcile(kube)
    assert kube.get("PodDisruptionBudget", NS, APP) is None


def test_a_superseded_migration_job_re_created_by_someone_else_is_not_deleted(kube: RacingKube) -> None:
    new_app(kube)
    settle(kube)
    (old,) = kube.list("Job", NS)
    old_name = old["metadata"]["name"]
    edit_spec(kube, {"image": "app:2"})
    reconcile(kube)
    (new,) = running_jobs(kube)
    kube.finish_job(NS, new["metadata"]["name"])
    kube.race["Job", old_name] = _foreign(kube, "Job", old_name)
    reconcile(kube)

    assert kube.refused == [("Job", old_name)]
    theirs = kube.get("Job", NS, old_name)
    assert theirs is not None and theirs["metadata"]["uid"] != old["metadata"]["uid"]


def test_an_abandoned_migration_job_re_created_meanwhile_is_left_and_not_announced(kube: RacingKube) -> None:
    new_app(kube)
    settle(kube)
    edit_spec(kube, {"image": "app:2"})
    reconcile(kube)
    (pending,) = running_jobs(kube)
    name = pending["metadata"]["name"]
    kube.start_job(NS, name, ready=False)  # its pod never starts
    edit_spec(kube, {"image": "app:3"})
    kube.race["Job", name] = _foreign(kube, "Job", name)
    moved = reconcile(kube)

    assert kube.refused == [("Job", name)]
    assert kube.get("Job", NS, name) is not None  # someone else's now: left alone
    assert "MigrationAbandoned" not in [e.reason for e in moved.events]
    assert moved.status["migration"]["image"] == "app:3"  # the new migration goes ahead
    assert names.MIGRATED in {c["type"] for c in moved.status["conditions"]}


class RecordingKube(FakeKube):
    """FakeKube that remembers the uid each delete named."""

    def __init__(self) -> None:
        super().__init__(namespaces=[NS])
        self.deleted: list[tuple[str, str, str | None]] = []

    def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        propagation: str = "Background",
        *,
        uid: str | None = None,
        manager: str = "",
    ) -> bool:
        self.deleted.append((kind, name, uid))
        return super().delete(kind, namespace, name, propagation, uid=uid, manager=manager)


def test_through_the_cache_the_delete_names_the_uid_of_the_view_it_decided_on() -> None:
    kube = RecordingKube()
    new_app(kube, replicas=2)
    settle(kube)
    pdb = kube.get("PodDisruptionBudget", NS, APP)
    assert pdb is not None
    # The cache's view keeps the uid (it is what the delete names), and CachedClient passes it through.
    assert cache.view("PodDisruptionBudget", pdb)["metadata"]["uid"] == pdb["metadata"]["uid"]
    client = cache.CachedClient(kube, cache.ObjectCache())
    edit_spec(kube, {"replicas": 1})
    body = kube.get(names.FLASKAPP_KIND, NS, APP)
    assert body is not None
    Reconciler(client, now=kube.now).reconcile(body)
    assert ("PodDisruptionBudget", APP, pdb["metadata"]["uid"]) in kube.deleted
    assert kube.get("PodDisruptionBudget", NS, APP) is None
