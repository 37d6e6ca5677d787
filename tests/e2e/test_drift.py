"""Drift (issue 11): every kind of child someone deletes or edits is put back, and the app says so.

Each test starts from a Ready app, breaks one child the way a user or another tool would (kubectl
delete / patch / scale), and waits for the operator to notice through its label-selected watches (no
polling: nothing else triggers a reconcile here) and repair it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from e2e_support import Apps, deployment, flaskapp, jobs, secret_data
from kubernetes import client

from flaskops import names
from flaskops.steps.children import DRIFT_REPAIRED
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


@pytest.fixture
def ready_app(kube: Kube, apps: Apps, ns: str, make_server: Any) -> str:
    server = make_server(["development", "testing"])
    name = "drifty"
    apps.apply(
        flaskapp(name, ns, server=server, environment="testing", dbname=f"drift_{secrets.token_hex(3)}")
    )
    apps.wait(ns, name, timeout=180)
    return name


def _repairs(apps: Apps, ns: str, name: str) -> list[str]:
    return [e["message"] for e in apps.events(ns, name) if e.get("reason") == DRIFT_REPAIRED]


def _until(check: Callable[[], Any], what: str, timeout: int = 60) -> Any:
    def probe() -> Any:
        value = check()
        if not value:
            raise NotYet(what)
        return value

    return wait_for(probe, timeout=timeout, what=what)


def test_a_deleted_db_secret_is_recreated_with_a_password_that_works(
    kube: Kube, apps: Apps, ns: str, ready_app: str
) -> None:
    secret = names.db_secret_name(ready_app)
    before = secret_data(kube, ns, secret)
    checksum_before = _pod_checksum(kube, ns, ready_app)
    assert before is not None
    kube.kubectl("delete", "secret", secret, "-n", ns)

    after = _until(lambda: secret_data(kube, ns, secret), f"Secret {secret} recreated")
    assert after["password"] != before["password"]
    with psycopg.connect(after["DATABASE_URL"], connect_timeout=5) as conn:  # the role took the new one
        assert conn.execute("select current_user").fetchone() == (after["user"],)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(before["DATABASE_URL"], connect_timeout=5).close()
    # The pods roll to the new password: their template's Secret checksum changed.
    _until(
        lambda: _pod_checksum(kube, ns, ready_app) != checksum_before, "the pods to roll to the new password"
    )
    apps.wait(ns, ready_app, timeout=120)
    assert any("was deleted" in m and secret in m for m in _repairs(apps, ns, ready_app))


def test_an_edited_db_secret_is_put_back(kube: Kube, apps: Apps, ns: str, ready_app: str) -> None:
    secret = names.db_secret_name(ready_app)
    before = secret_data(kube, ns, secret)
    assert before is not None
    patch = json.dumps({"stringData": {"PGHOST": "evil.example"}})
    kube.kubectl("patch", "secret", secret, "-n", ns, "--type=merge", "-p", patch)
    _until(lambda: (secret_data(kube, ns, secret) or {}).get("PGHOST") == before["PGHOST"], "PGHOST put back")
    assert secret_data(kube, ns, secret) == before  # the password too: nothing else changed


def test_a_deleted_secret_key_secret_is_recreated(kube: Kube, apps: Apps, ns: str, ready_app: str) -> None:
    secret = names.secret_key_secret_name(ready_app)
    before = secret_data(kube, ns, secret)
    assert before is not None
    kube.kubectl("delete", "secret", secret, "-n", ns)
    after = _until(lambda: secret_data(kube, ns, secret), f"Secret {secret} recreated")
    assert after[names.SECRET_KEY] and after[names.SECRET_KEY] != before[names.SECRET_KEY]
    _until(lambda: any(secret in m for m in _repairs(apps, ns, ready_app)), "a DriftRepaired Event")


def test_a_removed_label_on_a_secret_is_put_back(kube: Kube, ns: str, ready_app: str) -> None:
    secret = names.db_secret_name(ready_app)
    kube.kubectl("label", "secret", secret, "-n", ns, f"{names.LABEL_COMPONENT}=mine", "--overwrite")

    def label() -> str:
        sec = client.CoreV1Api(kube.api).read_namespaced_secret(secret, ns)
        return str(sec.metadata.labels.get(names.LABEL_COMPONENT))

    _until(lambda: label() == "db-credentials", "the component label put back")


def test_a_deleted_deployment_is_recreated(kube: Kube, apps: Apps, ns: str, ready_app: str) -> None:
    uid = deployment(kube, ns, ready_app).metadata.uid
    kube.kubectl("delete", "deployment", ready_app, "-n", ns, "--wait=false")
    _until(
        lambda: (d := deployment(kube, ns, ready_app)) is not None and d.metadata.uid != uid,
        "a new Deployment",
    )
    apps.wait(ns, ready_app, timeout=120)
    assert any("Deployment" in m and "was deleted" in m for m in _repairs(apps, ns, ready_app))


def test_an_edited_image_and_scale_are_put_back_and_never_reported_as_serving(
    kube: Kube, apps: Apps, ns: str, ready_app: str
) -> None:
    before = deployment(kube, ns, ready_app)
    image, replicas = before.spec.template.spec.containers[0].image, before.spec.replicas
    kube.kubectl(
        "set", "image", f"deployment/{ready_app}", f"web=unmigrated:{secrets.token_hex(3)}", "-n", ns
    )
    kube.kubectl("scale", "deployment", ready_app, "-n", ns, "--replicas=5")

    def restored() -> bool:
        dep = deployment(kube, ns, ready_app)
        return bool(dep.spec.template.spec.containers[0].image == image and dep.spec.replicas == replicas)

    _until(restored, "image and replicas put back")
    apps.wait(ns, ready_app, timeout=120)
    status = apps.get(ns, ready_app)["status"]
    assert status["servingImage"] == image == status["migratedImage"]
    assert any("was changed outside flaskops" in m for m in _repairs(apps, ns, ready_app))


def test_a_deleted_or_edited_service_is_put_back(kube: Kube, apps: Apps, ns: str, ready_app: str) -> None:
    core = client.CoreV1Api(kube.api)
    port = core.read_namespaced_service(ready_app, ns).spec.ports[0].port
    kube.kubectl(
        "patch",
        "service",
        ready_app,
        "-n",
        ns,
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/ports/0/port", "value": 8081}]),
    )
    _until(
        lambda: core.read_namespaced_service(ready_app, ns).spec.ports[0].port == port, "the port put back"
    )
    kube.kubectl("delete", "service", ready_app, "-n", ns)

    def recreated() -> bool:
        try:
            return bool(core.read_namespaced_service(ready_app, ns).spec.ports[0].port == port)
        except client.exceptions.ApiException as exc:
            if exc.status == 404:
                return False
            raise

    _until(recreated, "the Service recreated")


def test_a_finished_migration_job_deleted_is_not_run_again(
    kube: Kube, apps: Apps, ns: str, ready_app: str
) -> None:
    (job,) = jobs(kube, ns, ready_app)
    kube.kubectl("delete", "job", job.metadata.name, "-n", ns, "--wait=true")
    # Then a change the operator visibly repairs: the reconcile that puts the Service back reads the world
    # after the Job was gone, and the recorded migration must keep it from starting another.
    core = client.CoreV1Api(kube.api)
    uid = core.read_namespaced_service(ready_app, ns).metadata.uid
    kube.kubectl("delete", "service", ready_app, "-n", ns)

    def service_back() -> bool:
        try:
            return bool(core.read_namespaced_service(ready_app, ns).metadata.uid != uid)
        except client.exceptions.ApiException as exc:
            if exc.status == 404:
                return False
            raise

    _until(service_back, "the Service recreated")
    assert jobs(kube, ns, ready_app) == []
    assert apps.get(ns, ready_app)["status"]["migration"]["jobName"] == job.metadata.name


def _pod_checksum(kube: Kube, ns: str, name: str) -> str:
    annotations = deployment(kube, ns, name).spec.template.metadata.annotations or {}
    return str(annotations.get(names.ANNOTATION_SECRETS_CHECKSUM, ""))
