"""Ownership (fast, on FakeKube): a child's name taken by an object without this FlaskApp's ownerReference
stops the step with NotOwned; flaskops never overwrites, adopts or deletes that object, and carries on once
it is gone. tests/operator/test_ownership*.py cover the pure rules; tests/e2e/test_tenant_*.py the cluster."""

from __future__ import annotations

from typing import Any

import pytest

from flaskops import manifests, names
from flaskops.spec import parse_flaskapp
from flaskops.steps.children import NOT_OWNED
from tests.operator.behaviour_support import (
    APP,
    NS,
    USER,
    conditions,
    new_app,
    reconcile,
    running_jobs,
    settle,
)
from tests.operator.fake_kube import FakeKube

INTRUDER = "someone-else"


def _squatter(kind: str, name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object another tool made under a child's name, with the app's labels but not its ownerReference."""
    labels = {names.LABEL_APP: APP, names.LABEL_COMPONENT: "web", names.LABEL_MANAGED_BY: "someone"}
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    selector = {"app": "theirs"}
    bodies = {
        "Secret": {"apiVersion": "v1", "kind": "Secret", "data": {"SECRET_KEY": "dGhlaXJz"}},
        "Service": {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"selector": selector, "ports": [{"port": 8080}]},
        },
        "Deployment": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": selector},
                    "spec": {"containers": [{"name": "theirs", "image": "theirs:1"}]},
                },
            },
        },
    }
    return {**bodies[kind], "metadata": meta}


def _until_rollout(kube: FakeKube) -> dict[str, Any]:
    """Reconcile past the migration (which needs no Deployment) to the roll-out step."""
    reconcile(kube)
    for job in running_jobs(kube):
        kube.finish_job(NS, job["metadata"]["name"])
    return reconcile(kube).status


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube(namespaces=[NS])


@pytest.mark.parametrize("kind", ["Deployment", "Service"])
def test_a_web_child_name_taken_by_another_object_is_never_touched(kube: FakeKube, kind: str) -> None:
    theirs = kube.create(_squatter(kind, APP), manager=INTRUDER)
    new_app(kube)
    reconcile(kube)
    for job in running_jobs(kube):
        kube.finish_job(NS, job["metadata"]["name"])
    result = reconcile(kube)
    assert conditions(result)[names.AVAILABLE] == ("False", NOT_OWNED)
    assert conditions(result)[names.STALLED] == ("True", NOT_OWNED)
    assert result.retry_after is None
    assert kube.get(kind, NS, APP) == theirs  # not one write: no apply, no patch, no adoption

    # Once the other object is gone, the next reconcile makes the app's own.
    kube.delete(kind, NS, APP, manager=USER)
    reconcile(kube)
    app = kube.get(names.FLASKAPP_KIND, NS, APP)
    child = kube.get(kind, NS, APP)
    assert app is not None and child is not None
    assert [ref["uid"] for ref in child["metadata"]["ownerReferences"]] == [app["metadata"]["uid"]]
    assert conditions(reconcile(kube))[names.AVAILABLE][1] != NOT_OWNED


def test_a_child_owned_by_another_flaskapp_is_not_ours_either(kube: FakeKube) -> None:
    other = new_app(kube, name="other")
    owner = manifests.owner_reference(parse_flaskapp(other))
    theirs = kube.create(_squatter("Deployment", APP, owner), manager="flaskops")
    new_app(kube)
    status = _until_rollout(kube)
    assert {c["type"]: c["reason"] for c in status["conditions"]}[names.AVAILABLE] == NOT_OWNED
    assert kube.get("Deployment", NS, APP) == theirs


def test_a_secret_key_secret_taken_stops_before_any_migration(kube: FakeKube) -> None:
    name = names.secret_key_secret_name(APP)
    theirs = kube.create(_squatter("Secret", name), manager=INTRUDER)
    new_app(kube)
    result = reconcile(kube)
    assert conditions(result)[names.DATABASE_READY] == ("False", NOT_OWNED)
    assert name in next(
        c["message"] for c in result.status["conditions"] if c["type"] == names.DATABASE_READY
    )
    assert kube.get("Secret", NS, name) == theirs
    assert kube.list("Job", NS) == []  # nothing runs with a key the app does not own


def test_a_job_with_our_labels_but_not_ours_is_neither_waited_on_nor_deleted(kube: FakeKube) -> None:
    app = new_app(kube)
    spec = parse_flaskapp(app)
    foreign = manifests.migration_job(spec)
    foreign["metadata"] = {
        "name": "web-migrate-by-hand",
        "namespace": NS,
        "labels": foreign["metadata"]["labels"],
    }
    kube.create(foreign, manager=INTRUDER)
    kube.start_job(NS, "web-migrate-by-hand")  # running: one of ours would make the app wait for it
    result = settle(kube)
    assert result.ready
    assert kube.get("Job", NS, "web-migrate-by-hand") is not None  # superseded Jobs are deleted; not this one
