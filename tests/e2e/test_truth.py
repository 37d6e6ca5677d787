"""The reconcile tells the truth (issue 11): a migration is for this image on this database, documented
annotations work, the blocking reason shows in `kubectl get`, and Events come from flaskops."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
import yaml
from e2e_support import FAIL_LABEL, Apps, deployment, flaskapp, jobs
from kubernetes import client

from flaskops import names
from flaskops.steps.migrate import RETRY_MIGRATION
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e


@pytest.mark.usefixtures("operator")
def test_a_database_change_migrates_the_new_database_before_any_rollout(
    kube: Kube, apps: Apps, ns: str, postgres: Any
) -> None:
    """Pointing a (non-production) app at another database migrates that database before any rollout."""
    first, second = f"first_{secrets.token_hex(3)}", f"second_{secrets.token_hex(3)}"
    core = client.CoreV1Api(kube.api)
    for db in (first, second):
        postgres.create_database(db)
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name=db.replace("_", "-")), string_data={"URL": postgres.url(db)}
        )
        core.create_namespaced_secret(ns, secret)
    body = flaskapp("moves", ns, server="unused", environment="testing")
    body["spec"]["database"] = {"existingSecret": {"name": first.replace("_", "-"), "key": "URL"}}
    apps.apply(body)
    apps.wait(ns, "moves", timeout=180)
    before = deployment(kube, ns, "moves")
    first_jobs = {j.metadata.name for j in jobs(kube, ns, "moves")}

    # Same image, another database — whose migration fails: nothing may roll onto the unmigrated database.
    body["spec"]["database"]["existingSecret"]["name"] = second.replace("_", "-")
    body["spec"]["migrations"] = {"podLabels": FAIL_LABEL}
    apps.apply(body)
    failed = apps.wait_reason(ns, "moves", names.MIGRATED, "MigrationFailed", timeout=120)
    assert apps.condition(ns, "moves", names.READY)["status"] == "False", failed
    new_jobs = {j.metadata.name for j in jobs(kube, ns, "moves")} - first_jobs
    assert len(new_jobs) == 1, new_jobs
    after = deployment(kube, ns, "moves")
    assert after.metadata.generation == before.metadata.generation  # the old pods serve on, untouched
    assert apps.get(ns, "moves")["status"]["database"]["name"] == second

    # Fixed: the new database is migrated, then the pods roll.
    body["spec"]["migrations"] = {}
    apps.apply(body)
    apps.wait(ns, "moves", timeout=180)
    assert deployment(kube, ns, "moves").metadata.generation > before.metadata.generation


@pytest.mark.usefixtures("operator")
def test_the_database_of_an_app_cannot_change_in_place(apps: Apps, ns: str, make_server: Any) -> None:
    server = make_server(["development", "testing"])
    body = flaskapp(
        "ledger", ns, server=server, environment="testing", dbname=f"ledger_{secrets.token_hex(3)}"
    )
    apps.apply(body)
    body["spec"]["database"]["name"] = f"other_{secrets.token_hex(3)}"
    out = apps.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert out.returncode != 0 and "spec.database" in out.stderr and "cannot change" in out.stderr


@pytest.mark.usefixtures("operator")
def test_a_production_app_cannot_switch_its_database_secret(kube: Kube, apps: Apps, ns: str) -> None:
    body = flaskapp("vault", ns, server="unused")
    body["spec"]["database"] = {"existingSecret": {"name": "vault-db"}}
    apps.apply(body)
    body["spec"]["database"]["existingSecret"]["name"] = "other-db"
    out = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert out.returncode != 0 and "cannot change its database" in out.stderr


@pytest.mark.usefixtures("operator")
def test_the_retry_annotation_starts_a_new_migration(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["development", "testing"])
    body = flaskapp("flaky", ns, server=server, environment="testing", migrations={"podLabels": FAIL_LABEL})
    apps.apply(body)
    apps.wait_reason(ns, "flaky", names.MIGRATED, "MigrationFailed", timeout=120)
    assert len(jobs(kube, ns, "flaky")) == 1

    kube.kubectl("annotate", "flaskapp", "flaky", "-n", ns, f"{RETRY_MIGRATION}=1")

    def retried() -> bool:
        if len(jobs(kube, ns, "flaky")) != 2:
            raise NotYet(f"{len(jobs(kube, ns, 'flaky'))} Jobs")
        return True

    wait_for(retried, timeout=60, what="a second migration Job after the retry annotation")
    assert apps.get(ns, "flaky")["status"]["migration"]["retry"] == "1"


@pytest.mark.usefixtures("operator")
def test_kubectl_get_shows_the_reason_that_blocks(kube: Kube, apps: Apps, ns: str) -> None:
    apps.apply(flaskapp("typo", ns, server="no-such-server", environment="testing"))
    apps.wait_reason(ns, "typo", names.DATABASE_READY, "ServerNotFound", timeout=60)
    out = kube.kubectl("get", "flaskapp", "typo", "-n", ns, "--no-headers").stdout
    assert "ServerNotFound" in out and "Pending" not in out


@pytest.mark.usefixtures("operator")
def test_events_come_from_flaskops(kube: Kube, apps: Apps, ns: str, make_server: Any) -> None:
    server = make_server(["development", "testing"])
    apps.apply(flaskapp("loud", ns, server=server, environment="testing"))
    apps.wait(ns, "loud", timeout=180)
    events = json.loads(
        kube.kubectl(
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            f"involvedObject.name=loud,involvedObject.kind={names.FLASKAPP_KIND}",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert events
    assert {e.get("reportingComponent") for e in events} == {names.MANAGED_BY}
    assert {e["source"].get("component") for e in events} == {names.MANAGED_BY}


@pytest.mark.usefixtures("operator")
def test_kubectl_scale_scales_the_app(kube: Kube, apps: Apps, ns: str, make_server: Any) -> None:
    server = make_server(["development", "testing"])
    apps.apply(flaskapp("wide", ns, server=server, environment="testing"))
    apps.wait(ns, "wide", timeout=180)
    kube.kubectl("scale", "flaskapp", "wide", "-n", ns, "--replicas=4")

    def scaled() -> bool:
        dep = deployment(kube, ns, "wide")
        if dep.spec.replicas != 4:
            raise NotYet(f"Deployment replicas {dep.spec.replicas}")
        return True

    wait_for(scaled, timeout=60, what="the Deployment scaled through the FlaskApp's scale subresource")
    scale = json.loads(
        kube.kubectl("get", "--raw", f"/apis/{names.API_VERSION}/namespaces/{ns}/flaskapps/wide/scale").stdout
    )
    assert scale["spec"]["replicas"] == 4
    assert scale["status"]["selector"] == f"{names.LABEL_APP}=wide,{names.LABEL_COMPONENT}=web"


@pytest.mark.usefixtures("operator")
def test_a_retry_of_a_migrated_app_is_seen_and_runs_nothing(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["development", "testing"])
    apps.apply(flaskapp("calm", ns, server=server, environment="testing"))
    apps.wait(ns, "calm", timeout=180)
    kube.kubectl("annotate", "flaskapp", "calm", "-n", ns, f"{RETRY_MIGRATION}=again")

    def seen() -> bool:
        recorded = apps.get(ns, "calm")["status"]["migration"].get("retry")
        if recorded != "again":
            raise NotYet(f"status.migration.retry={recorded!r}")
        return True

    wait_for(seen, timeout=60, what="the retry token recorded")
    assert len(jobs(kube, ns, "calm")) == 1


def _quota(kube: Kube, ns: str, pods: int) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "pods", "namespace": ns},
        "spec": {"hard": {"pods": str(pods)}},
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))


@pytest.mark.usefixtures("operator")
def test_a_quota_that_refuses_the_migration_pod_is_named_at_once(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["development", "testing"])
    _quota(kube, ns, 0)
    apps.apply(flaskapp("quota", ns, server=server, environment="testing"))
    cond = apps.wait_reason(ns, "quota", names.MIGRATED, "MigrationBlocked", timeout=90)
    assert "FailedCreate" in cond["message"] and "quota" in cond["message"], cond
    assert apps.condition(ns, "quota", names.READY)["reason"] == "MigrationBlocked"
    assert any(e["reason"] == "MigrationBlocked" and e["type"] == "Warning" for e in apps.events(ns, "quota"))


@pytest.mark.usefixtures("operator")
def test_a_quota_that_refuses_new_web_pods_blocks_the_rollout_by_name(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["development", "testing"])
    body = flaskapp("scaled", ns, server=server, environment="testing")
    apps.apply(body)
    apps.wait(ns, "scaled", timeout=180)
    _quota(kube, ns, 2)  # the two web pods run; a third is refused
    body["spec"]["replicas"] = 3
    apps.apply(body)
    cond = apps.wait_reason(ns, "scaled", names.READY, "RolloutBlocked", timeout=90)
    assert "FailedCreate" in cond["message"] and "quota" in cond["message"], cond
    assert any(e["reason"] == "RolloutBlocked" and e["type"] == "Warning" for e in apps.events(ns, "scaled"))


@pytest.mark.usefixtures("operator")
def test_a_migration_that_never_started_gives_way_when_the_spec_moves_on(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["development", "testing"])
    _quota(kube, ns, 0)
    body = flaskapp("moving", ns, server=server, environment="testing")
    apps.apply(body)
    apps.wait_reason(ns, "moving", names.MIGRATED, "MigrationBlocked", timeout=90)
    (first,) = jobs(kube, ns, "moving")

    body["spec"]["image"] = "registry.example/guestbook:1.0.1"
    apps.apply(body)

    def replaced() -> bool:
        names_now = {j.metadata.name for j in jobs(kube, ns, "moving") if not j.metadata.deletion_timestamp}
        if first.metadata.name in names_now or len(names_now) != 1:
            raise NotYet(f"Jobs {sorted(names_now)}")
        return True

    wait_for(replaced, timeout=60, what="the never-started Job replaced by the new image's")
    assert any(e["reason"] == "MigrationAbandoned" for e in apps.events(ns, "moving"))
    kube.kubectl("delete", "resourcequota", "pods", "-n", ns)
    apps.wait(ns, "moving", timeout=180)
    assert apps.get(ns, "moving")["status"]["servingImage"] == "registry.example/guestbook:1.0.1"
