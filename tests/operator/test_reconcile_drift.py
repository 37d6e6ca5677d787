"""Drift (fast, on FakeKube): a child someone edits or deletes is put back by the next reconcile, with a
DriftRepaired Warning; what flaskops does not set is not drift, and a settled app writes nothing.
tests/e2e/test_drift.py covers the same against the real API server, operator process and watches."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from flaskops import names
from flaskops.steps.children import DRIFT_REPAIRED
from flaskops_testbed.postgres import PostgresTarget
from tests.operator.behaviour_support import (
    ADMIN_NS,
    APP,
    NS,
    USER,
    flaskapp,
    image_of,
    new_app,
    postgres_server,
    reconcile,
    settle,
)
from tests.operator.fake_kube import FakeKube


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube(namespaces=[NS])
    new_app(kube)
    settle(kube)
    return kube


def _repairs(result: Any) -> list[str]:
    return [e.message for e in result.events if e.reason == DRIFT_REPAIRED and e.type == "Warning"]


def _writes(kube: FakeKube, since: int) -> list[tuple[str, str, str]]:
    return [c for c in kube.calls[since:] if c[0] not in ("get", "list") and c[2] == "flaskops"]


def test_a_settled_app_reconciles_without_a_single_write(kube: FakeKube) -> None:
    before = len(kube.calls)
    for _ in range(3):
        result = reconcile(kube)
        assert result.ready and result.events == []
    assert _writes(kube, before) == []


def test_an_edited_image_and_scale_are_put_back_and_never_reported_as_serving(kube: FakeKube) -> None:
    patch = {
        "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "web", "image": "evil:1"}]}}}
    }
    kube.merge_patch("Deployment", NS, APP, patch, manager=USER)
    kube.roll_out(NS, APP)  # the edit even rolled out before the operator looked
    result = reconcile(kube)
    dep = kube.get("Deployment", NS, APP)
    assert dep is not None and image_of(dep) == "app:1" and dep["spec"]["replicas"] == 2
    assert result.status["servingImage"] == "app:1"
    (repair,) = _repairs(result)
    assert "was changed outside flaskops" in repair and "Deployment 'web'" in repair
    assert ("flaskops", "Apply", "") in [
        (m["manager"], m["operation"], m.get("subresource", "")) for m in dep["metadata"]["managedFields"]
    ]


def test_a_deleted_deployment_is_recreated(kube: FakeKube) -> None:
    old = kube.get("Deployment", NS, APP)
    assert old is not None
    kube.delete("Deployment", NS, APP, manager=USER)
    result = reconcile(kube)
    new = kube.get("Deployment", NS, APP)
    assert new is not None and new["metadata"]["uid"] != old["metadata"]["uid"]
    assert image_of(new) == "app:1"
    assert any("Deployment 'web' was deleted; recreated" in m for m in _repairs(result))
    assert not result.ready  # the new Deployment has not rolled out yet
    kube.roll_out(NS, APP)
    assert reconcile(kube).ready


def test_an_edited_or_deleted_service_is_put_back(kube: FakeKube) -> None:
    # A re-keyed list item (the port 80 changed to 8081): a merge patch puts the list back whole.
    kube.merge_patch(
        "Service",
        NS,
        APP,
        {"spec": {"ports": [{"name": "http", "port": 8081, "targetPort": "http"}]}},
        manager=USER,
    )
    result = reconcile(kube)
    svc = kube.get("Service", NS, APP)
    assert svc is not None and [p["port"] for p in svc["spec"]["ports"]] == [80]
    assert any("Service 'web' was changed outside flaskops" in m for m in _repairs(result))

    kube.delete("Service", NS, APP, manager=USER)
    result = reconcile(kube)
    assert kube.get("Service", NS, APP) is not None
    assert any("Service 'web' was deleted; recreated" in m for m in _repairs(result))


def test_what_flaskops_does_not_set_is_not_drift(kube: FakeKube) -> None:
    patch = {
        "metadata": {"labels": {"team": "shop"}, "annotations": {"deployment.kubernetes.io/revision": "3"}}
    }
    kube.merge_patch("Deployment", NS, APP, patch, manager=USER)
    kube.merge_patch("Service", NS, APP, {"metadata": {"labels": {"team": "shop"}}}, manager=USER)
    kube.roll_out(NS, APP)  # a Deployment's annotations move its generation: its controller observes it
    before = len(kube.calls)
    result = reconcile(kube)
    assert _repairs(result) == [] and _writes(kube, before) == []
    dep = kube.get("Deployment", NS, APP)
    assert dep is not None and dep["metadata"]["labels"]["team"] == "shop"


def test_a_deleted_secret_key_secret_is_recreated_and_the_pods_roll(kube: FakeKube) -> None:
    name = names.secret_key_secret_name(APP)
    old = kube.read_secret_data(NS, name)
    dep = kube.get("Deployment", NS, APP)
    assert old is not None and dep is not None
    checksum = dep["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_SECRETS_CHECKSUM]
    kube.delete("Secret", NS, name, manager=USER)
    result = reconcile(kube)
    new = kube.read_secret_data(NS, name)
    assert new is not None and new[names.SECRET_KEY] != old[names.SECRET_KEY]
    assert any(f"Secret '{name}' was deleted; recreated with a new SECRET_KEY" in m for m in _repairs(result))
    dep = kube.get("Deployment", NS, APP)
    assert dep is not None
    assert dep["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_SECRETS_CHECKSUM] != checksum


def test_a_secret_key_secret_relabelled_is_put_back(kube: FakeKube) -> None:
    # (An edited SECRET_KEY value is taken as the key: flaskops keeps no copy to put back.)
    name = names.secret_key_secret_name(APP)
    before = kube.read_secret_data(NS, name)
    kube.merge_patch(
        "Secret", NS, name, {"metadata": {"labels": {names.LABEL_COMPONENT: "mine"}}}, manager=USER
    )
    reconcile(kube)
    after = kube.get("Secret", NS, name)
    assert after is not None and after["metadata"]["labels"][names.LABEL_COMPONENT] == "secret-key"
    assert kube.read_secret_data(NS, name) == before


# --- the database Secret, provisioned on the session's real PostgreSQL ----------------------------------


@pytest.fixture
def provisioned(postgres: PostgresTarget) -> Iterator[tuple[FakeKube, str]]:
    """A Ready app whose database a PostgresServer on the real PostgreSQL provisioned; dropped afterwards."""
    kube = FakeKube(namespaces=[NS, ADMIN_NS])
    postgres_server(kube, postgres, "pg")
    dbname = f"fake_{secrets.token_hex(4)}"
    body = flaskapp(secret="")
    body["spec"]["database"] = {"server": "pg", "name": dbname, "deletionPolicy": "Delete"}
    kube.create(body, manager=USER)
    settle(kube)
    try:
        yield kube, dbname
    finally:
        app = kube.get(names.FLASKAPP_KIND, NS, APP)
        assert app is not None
        role = app["status"]["database"]["user"]
        with psycopg.connect(postgres.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_deleted_db_secret_is_recreated_with_a_password_that_works(
    provisioned: tuple[FakeKube, str],
) -> None:
    kube, _ = provisioned
    name = names.db_secret_name(APP)
    before = kube.read_secret_data(NS, name)
    assert before is not None
    kube.delete("Secret", NS, name, manager=USER)
    result = reconcile(kube)
    after = kube.read_secret_data(NS, name)
    assert after is not None and after["password"] != before["password"]
    with psycopg.connect(after["DATABASE_URL"], connect_timeout=5) as conn:  # the role took the new one
        assert conn.execute("select current_user").fetchone() == (after["user"],)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(before["DATABASE_URL"], connect_timeout=5).close()
    assert any(f"Secret '{name}' was deleted" in m for m in _repairs(result))


def test_an_edited_db_secret_is_put_back_without_a_new_password(provisioned: tuple[FakeKube, str]) -> None:
    kube, _ = provisioned
    name = names.db_secret_name(APP)
    before = kube.read_secret_data(NS, name)
    kube.merge_patch("Secret", NS, name, {"stringData": {"PGHOST": "evil.example"}}, manager=USER)
    reconcile(kube)
    assert kube.read_secret_data(NS, name) == before  # the password too: nothing else changed
