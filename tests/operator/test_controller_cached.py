"""The controller end to end on FakeKube, reading from the cache a watch fills: what issue 13 counts.

`controller.process` (the queued reconcile: status policy, Events, finalizer) runs against FakeKube, with
the indexes handlers.py keeps emulated from FakeKube's watch (the views `cache.view` makes, keyed as the
kopf indexes key them), and the database provisioned on the session's real PostgreSQL. The requests the
operator sends are counted per verb: reads per reconcile, writes per install, Events, and nothing at all
once the app is settled. tests/e2e covers the same path with kopf's real watches.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from flaskops import cache, controller, inventory, names
from flaskops.reconcile import Event
from flaskops_testbed.postgres import PostgresTarget
from tests.operator.behaviour_support import ADMIN_NS, APP, NS, USER, flaskapp, postgres_server, running_jobs
from tests.operator.fake_kube import FakeKube

CHILDREN = ("Job", "Deployment", "Secret", "Service", "PodDisruptionBudget")
READS = {"get", "list"}
WRITES = {"create", "apply", "patch", "delete"}


class Index(dict):
    """A kopf index: key -> the values of the objects stored under it (one per object)."""

    def put(self, key: Any, uid: str, value: Any) -> None:
        self.setdefault(key, {})[uid] = value

    def drop(self, uid: str) -> None:
        for key in list(self):
            self[key].pop(uid, None)
            if not self[key]:
                del self[key]

    def get(self, key: Any, default: Any = None) -> Any:
        found = super().get(key)
        return list(found.values()) if found is not None else default

    def items(self):  # type: ignore[override]
        return [(k, list(v.values())) for k, v in super().items()]


class Watches:
    """What handlers.py's indexes hold, fed by FakeKube's watch (label-selected children, as configured)."""

    def __init__(self, kube: FakeKube) -> None:
        self.objects = {kind: Index() for kind in (*CHILDREN, names.FLASKAPP_KIND, names.POSTGRESSERVER_KIND)}
        self.flaskapp_db, self.postgresserver_spec, self.namespace_labels = Index(), Index(), Index()
        kube.watch(self.see)

    def see(self, type_: str, obj: dict[str, Any]) -> None:
        kind, meta = obj["kind"], obj["metadata"]
        uid, ns, name = meta["uid"], meta.get("namespace") or "", meta["name"]
        for index in (
            *self.objects.values(),
            self.flaskapp_db,
            self.postgresserver_spec,
            self.namespace_labels,
        ):
            index.drop(uid)
        if type_ == "DELETED":
            return
        labels = meta.get("labels") or {}
        if kind in CHILDREN and not cache.is_child(kind, obj):
            return  # label-selected by the API server, then handlers._owned_child
        if kind == "Job":
            self.objects[kind].put((ns, labels[names.LABEL_APP]), uid, cache.view(kind, obj))
        elif kind in self.objects:
            self.objects[kind].put((ns, name), uid, cache.view(kind, obj))
        if kind == names.FLASKAPP_KIND:
            entry = inventory.app_entry(
                ns, name, obj["spec"], obj.get("status") or {}, meta["creationTimestamp"]
            )
            self.flaskapp_db.put(None, uid, entry)
        elif kind == names.POSTGRESSERVER_KIND:
            self.postgresserver_spec.put(name, uid, inventory.server_entry(obj["spec"], obj.get("status")))
        elif kind == "Namespace":
            self.namespace_labels.put(name, uid, dict(labels))


@pytest.fixture
def world(
    postgres: PostgresTarget, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeKube, list[Event]]]:
    """FakeKube with a PostgresServer on the real PostgreSQL, the controller wired to it; Events posted
    are collected instead of sent through kopf. The database is dropped afterwards."""
    kube = FakeKube(namespaces=[NS, ADMIN_NS])
    watches = Watches(kube)
    object_cache = cache.ObjectCache()
    for kind, index in watches.objects.items():
        object_cache.attach(kind, index)
    posted: list[Event] = []
    monkeypatch.setattr(controller, "CACHE", object_cache)
    monkeypatch.setattr(controller, "_kube", kube)
    monkeypatch.setattr(controller, "LEADING", lambda: True)
    monkeypatch.setattr(controller, "CLOCK", kube.now)
    monkeypatch.setattr(controller, "_post", lambda body, events: posted.extend(events))
    monkeypatch.setattr(
        controller,
        "INDEXES",
        {
            "flaskapp_db": watches.flaskapp_db,
            "postgresserver_spec": watches.postgresserver_spec,
            "namespace_labels": watches.namespace_labels,
        },
    )
    monkeypatch.setattr(controller, "_echo", {})
    monkeypatch.setattr(controller, "_written_at", {})
    postgres_server(kube, postgres, "pg")
    dbname = f"cached_{secrets.token_hex(4)}"
    body = flaskapp(secret="", replicas=1)
    body["spec"]["database"] = {"server": "pg", "name": dbname}
    kube.create(body, manager=USER)
    try:
        yield kube, posted
    finally:
        with psycopg.connect(postgres.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{dbname}"')


def _process(kube: FakeKube) -> tuple[list[tuple[str, str, str]], float | None]:
    """One queued reconcile of the app; the requests it sent."""
    start = len(kube.calls)
    again = controller.process((NS, APP))
    return kube.calls[start:], again


def _ready(kube: FakeKube) -> bool:
    app = kube.get(names.FLASKAPP_KIND, NS, APP)
    return any(
        c["type"] == names.READY and c["status"] == "True"
        for c in (app or {}).get("status", {}).get("conditions", [])
    )


def test_an_install_reads_almost_nothing_writes_the_minimum_and_a_settled_app_sends_nothing(world) -> None:
    kube, posted = world
    sent: list[tuple[str, str, str]] = []
    for _ in range(8):
        calls, _ = _process(kube)
        sent += calls
        # The controllers' work, and the watch events it causes (each wakes the app once).
        for job in running_jobs(kube):
            kube.finish_job(NS, job["metadata"]["name"])
        if kube.get("Deployment", NS, APP) is not None:
            kube.roll_out(NS, APP)
        kube.advance(1)
        if _ready(kube):
            break
    assert _ready(kube), [c for c in kube.get(names.FLASKAPP_KIND, NS, APP)["status"]["conditions"]]
    reads = [c for c in sent if c[0] in READS]
    writes = [c for c in sent if c[0] in WRITES and c[1] != "Event"]
    # Reads only where a watch cannot tell: the admin Secret (not the operator's), and each child's name
    # before it is first created (someone else's unlabelled object?). Never the FlaskApp, the server,
    # or a child the cache holds.
    assert sorted((v, k) for v, k, _ in reads) == [
        ("get", "Deployment"),
        ("get", "Secret"),
        ("get", "Service"),
    ], reads
    # 2 Secrets, the Job, the Deployment, the Service; status at three transitions at most.
    by_kind = sorted((v, k) for v, k, _ in writes)
    assert [w for w in by_kind if w[1] != names.FLASKAPP_KIND] == [
        ("apply", "Deployment"),
        ("apply", "Service"),
        ("create", "Job"),
        ("create", "Secret"),
        ("create", "Secret"),
    ], writes
    assert len(writes) <= 8, writes
    assert [e.reason for e in posted] == ["DatabaseCreated", "Migrated", "Ready"]

    # Settled: more wake-ups (a child's status echo, a resync) send no request at all.
    for _ in range(3):
        calls, again = _process(kube)
        assert calls == [] and again is None


def test_a_child_edited_behind_the_cache_is_compared_once_then_trusted_again(world) -> None:
    kube, _ = world
    for _ in range(8):
        _process(kube)
        for job in running_jobs(kube):
            kube.finish_job(NS, job["metadata"]["name"])
        if kube.get("Deployment", NS, APP) is not None:
            kube.roll_out(NS, APP)
        if _ready(kube):
            break
    # Another writer's annotation is not content flaskops compares: nothing is read.
    kube.merge_patch("Service", NS, APP, {"metadata": {"annotations": {"team": "web"}}}, manager=USER)
    calls, _ = _process(kube)
    assert calls == []
    # Someone adds a label: the content changed, so the next reconcile reads the Service once, finds
    # nothing flaskops sets was touched, and trusts the new content from then on.
    kube.merge_patch("Service", NS, APP, {"metadata": {"labels": {"team": "web"}}}, manager=USER)
    calls, _ = _process(kube)
    assert [(v, k) for v, k, _ in calls] == [("get", "Service")]
    calls, _ = _process(kube)
    assert calls == []
    # An edit of a field flaskops sets is put back.
    kube.merge_patch(
        "Service",
        NS,
        APP,
        {"spec": {"ports": [{"name": "http", "port": 8081, "targetPort": "http"}]}},
        manager=USER,
    )
    calls, _ = _process(kube)
    assert ("apply", "Service") in [(v, k) for v, k, _ in calls]
    assert kube.get("Service", NS, APP)["spec"]["ports"][0]["port"] == 80
