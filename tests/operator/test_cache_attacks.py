"""A hostile tenant against the cache (cache.py), the kopf index filter (handlers.py) and the Event lists.

Each test passes when the operator is safe; a real, unfixed finding is marked xfail(strict=True) with the
mechanism in its reason (security review of the read/schedule rewrite since f412737). The three findings
of that review are fixed: only the operator's own child names are indexed (decoys cost no memory), a
foreign object read live is never kept in the overlay (an app recovers once it is gone), and a quoted
Event message is bounded.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from flaskops import blockers, cache, handlers, names
from tests.operator.behaviour_support import APP, NS, USER, annotate
from tests.operator.fake_kube import FakeKube
from tests.operator.test_controller_cached import _process, world  # noqa: F401 - the fixture

APP_UID = "11111111-2222-3333-4444-555555555555"


def _decoy_secret(name: str, *, uid: str, size: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"decoy-{name}",
            "resourceVersion": "7",
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_APP: APP},
            "ownerReferences": [
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.FLASKAPP_KIND,
                    "name": APP,
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "type": "Opaque",
        "data": {"blob": base64.b64encode(b"x" * size).decode()},
    }


def test_a_tenants_decoy_children_do_not_grow_the_operators_memory() -> None:
    admitted = 0
    for i in range(20):
        # Even with the app's real uid: names the operator never creates (web-db, web-secret-key, ...).
        decoy = _decoy_secret(f"decoy-{i}", uid=APP_UID, size=256 * 1024)
        if handlers._owned_child(body=decoy):
            admitted += len(cache.pack("Secret", decoy))
    assert admitted < 64 * 1024, f"{admitted} bytes of tenant decoys held by the index"


def test_a_decoy_without_an_owner_reference_is_not_indexed() -> None:
    decoy = _decoy_secret("decoy", uid=APP_UID, size=16)
    decoy["metadata"]["ownerReferences"] = []
    assert not handlers._owned_child(body=decoy)
    # ...nor one owned by another app than its label names.
    decoy = _decoy_secret("decoy", uid=APP_UID, size=16)
    decoy["metadata"]["labels"][names.LABEL_APP] = "other"
    assert not handlers._owned_child(body=decoy)


def test_cache_keys_never_cross_namespaces() -> None:
    object_cache = cache.ObjectCache()
    a = _decoy_secret("web-db", uid=APP_UID, size=8)
    b = _decoy_secret("web-db", uid=APP_UID, size=8)
    b["metadata"]["namespace"] = "other-tenant"
    b["data"] = {"blob": "b3RoZXI="}
    object_cache.wrote(a)
    object_cache.verify(cache.view("Secret", a), "desired")
    assert object_cache.get("Secret", "other-tenant", "web-db") is None
    assert not object_cache.verified(cache.view("Secret", b), "desired")
    object_cache.wrote(b)
    assert object_cache.get("Secret", NS, "web-db")["data"] == a["data"]
    # Deleting an app forgets only its own namespace's entries.
    object_cache.forget_app("other-tenant", APP)
    assert object_cache.get("Secret", NS, "web-db") is not None
    # The shared Event lists are keyed by namespace: one tenant's list is never served to another.
    served = object_cache.shared_list(("Event", NS, "", "type=Warning"), lambda: [{"tenant": NS}])
    other = object_cache.shared_list(("Event", "other-tenant", "", "type=Warning"), lambda: [])
    assert served == [{"tenant": NS}] and other == []


def test_a_forged_warning_event_is_not_quoted_at_unbounded_length() -> None:
    rs = "web-5d8f7c9b6"
    forged = {
        "type": "Warning",
        "reason": "Failed",
        "involvedObject": {"kind": "Pod", "name": f"{rs}-abcde"},
        "lastTimestamp": "2099-01-01T00:00:00Z",
        "message": "A" * 200_000,
    }
    blocker = blockers.for_replica_set([forged], rs, since="2026-01-01T00:00:00Z")
    assert blocker is not None
    assert len(blocker.describe()) <= 4096


def test_a_forged_scaling_event_can_only_name_a_replica_set_of_the_apps_own_deployment_name() -> None:
    # Informational: the controller's Event is matched by the Deployment's name in the namespace; a forged one
    # with a later time wins (the tenant's own app only: the list is per namespace).
    real = {
        "reason": "ScalingReplicaSet",
        "involvedObject": {"kind": "Deployment", "name": APP},
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "message": "Scaled up replica set web-111 from 0 to 1",
    }
    forged = dict(
        real, lastTimestamp="2099-01-01T00:00:00Z", message="Scaled up replica set evil-222 from 0 to 1"
    )
    other_app = dict(forged, involvedObject={"kind": "Deployment", "name": "other"})
    assert blockers.newest_scaled_up([real, other_app], APP) == "web-111"
    assert blockers.newest_scaled_up([real, forged], APP) == "evil-222"


def _conditions(kube: FakeKube) -> dict[str, tuple[str, str]]:
    app = kube.get(names.FLASKAPP_KIND, NS, APP) or {}
    return {c["type"]: (c["status"], c["reason"]) for c in (app.get("status") or {}).get("conditions") or []}


def _drive(kube: FakeKube, rounds: int = 8) -> None:
    from tests.operator.behaviour_support import running_jobs

    for _ in range(rounds):
        _process(kube)
        for job in running_jobs(kube):
            kube.finish_job(NS, job["metadata"]["name"])
        if kube.get("Deployment", NS, APP) is not None:
            kube.roll_out(NS, APP)
        kube.advance(1)


def test_an_app_recovers_once_a_foreign_object_that_blocked_it_is_gone(world) -> None:  # noqa: F811
    kube, _ = world
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": APP, "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "someone-else"}},
        },
        manager=USER,
    )
    _drive(kube)
    assert _conditions(kube).get(names.AVAILABLE, ("", ""))[1] == "NotOwned", _conditions(kube)
    kube.delete("Service", NS, APP)
    annotate(kube, "poke", "1")  # the user's edit wakes the app
    _drive(kube)
    svc = kube.get("Service", NS, APP)
    assert svc is not None and svc["metadata"].get("ownerReferences"), svc
    assert _conditions(kube).get(names.AVAILABLE, ("", ""))[1] != "NotOwned", _conditions(kube)


def _child_deployment(rv: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "shop",
            "namespace": "team",
            "uid": "u1",
            "resourceVersion": rv,
            "labels": {names.LABEL_APP: "shop", names.LABEL_MANAGED_BY: names.MANAGED_BY},
        },
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "shop:1"}]}}},
    }


def test_a_watched_deletion_retires_a_write_recorded_before_it_and_keeps_a_newer_one() -> None:
    """The claim of cache.watched_deletion holds for the order it was written for: a write the watch
    reports deleted goes; a re-creation newer than the deletion stays (it is the object there now)."""
    c = cache.ObjectCache()
    c.attach("Deployment", {})
    c.wrote(_child_deployment("100"))
    c.watched_deletion("Deployment", "team", "shop", _child_deployment("101"))
    assert c.get("Deployment", "team", "shop") is None
    c.wrote(_child_deployment("102"))
    c.watched_deletion("Deployment", "team", "shop", _child_deployment("101"))
    assert (c.get("Deployment", "team", "shop") or {})["metadata"]["resourceVersion"] == "102"


def test_a_write_recorded_after_the_watch_reported_its_deletion_is_not_served() -> None:
    """Finding 4 (fixed): a deleted child was served as present (and, verified, never recreated until
    its spec changed or the operator restarted) when a reconcile thread recorded an answer from before
    the deletion after the event loop had handled the watch's DELETED event."""
    c = cache.ObjectCache()
    c.attach("Deployment", {})
    # The tenant deletes the Deployment while a reconcile's GET (or apply) of version 100 is in flight:
    # the watch's DELETED event (version 101) is handled first, the thread records version 100 after.
    c.watched_deletion("Deployment", "team", "shop", _child_deployment("101"))
    c.wrote(_child_deployment("100"))
    assert c.get("Deployment", "team", "shop") is None
    # The operator's own re-creation (a newer version) is recorded as ever.
    c.wrote(_child_deployment("105"))
    assert (c.get("Deployment", "team", "shop") or {})["metadata"]["resourceVersion"] == "105"


def test_watched_deletions_are_remembered_for_a_while_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """What finding 4's fix keeps: one entry per child deleted in the last RECENT_DELETION_SECONDS."""
    now = [1000.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: now[0])
    c = cache.ObjectCache()
    for i in range(50):
        c.watched_deletion("Job", "team", f"shop-migrate-{i}", _child_deployment(str(100 + i)))
    assert len(c._deletions) == 50
    now[0] += cache.RECENT_DELETION_SECONDS + 1
    c.watched_deletion("Job", "team", "shop-migrate-x", _child_deployment("200"))
    assert list(c._deletions) == [("Job", "team", "shop-migrate-x")]
