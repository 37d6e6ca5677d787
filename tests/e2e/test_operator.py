"""The operator for real: a kube-apiserver, the controllers, KWOK's simulated kubelets, a real PostgreSQL,
and `python -m flaskops` as a process. Each test is one story a user lives through."""

from __future__ import annotations

import json
import secrets
from typing import Any

import psycopg
import pytest
import yaml
from e2e_support import FAIL_LABEL, ROOT, Apps, OperatorProcess, deployment, flaskapp, jobs, secret_data
from kubernetes import client

from flaskops import names, ownership
from flaskops.postgres import server as pg
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e


def database_exists(postgres: Any, dbname: str) -> bool:
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def served_image(kube: Kube, namespace: str, name: str) -> str:
    return str(deployment(kube, namespace, name).spec.template.spec.containers[0].image)


@pytest.mark.usefixtures("operator")
def test_example_reaches_ready(kube: Kube, apps: Apps, ns: str, postgres: Any, admin_secret: str) -> None:
    """examples/ applied as a user would: Ready, real credentials, migration strictly before rollout."""
    server = yaml.safe_load((ROOT / "examples" / "postgresserver.yaml").read_text())
    server["metadata"]["name"] = f"main-{secrets.token_hex(3)}"
    server["spec"].update(host=postgres.host, port=postgres.port, sslMode="disable")
    server["spec"]["adminSecretRef"]["name"] = admin_secret
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(server))
    app = yaml.safe_load((ROOT / "examples" / "flaskapp.yaml").read_text())
    app["metadata"]["namespace"] = ns
    app["spec"]["database"]["server"] = server["metadata"]["name"]
    try:
        apps.apply(app)
        apps.wait(ns, "guestbook", "Ready", timeout=180)

        got = apps.get(ns, "guestbook")
        status = got["status"]
        assert status["observedGeneration"] == got["metadata"]["generation"]
        assert (
            status["desiredImage"]
            == status["migratedImage"]
            == status["servingImage"]
            == app["spec"]["image"]
        )
        conds = {c["type"]: c for c in status["conditions"]}
        for t in (names.ENVIRONMENT_SAFE, names.DATABASE_READY, names.MIGRATED, names.AVAILABLE, names.READY):
            assert conds[t]["status"] == "True", conds[t]
        assert conds[names.STALLED]["status"] == "False"
        assert conds[names.RECONCILING]["status"] == "False"

        # Every key of the contract, and the generated role really logs in and owns its database.
        data = secret_data(kube, ns, names.db_secret_name("guestbook"))
        assert set(names.DB_SECRET_KEYS) <= set(data)
        with psycopg.connect(data["DATABASE_URL"]) as conn:
            owner, user, superuser = conn.execute(
                "SELECT pg_get_userbyid(datdba), current_user, usesuper FROM pg_database, pg_user "
                "WHERE datname = current_database() AND usename = current_user"
            ).fetchone()
        assert owner == user == data["user"] == status["database"]["user"]
        assert superuser is False
        assert set(secret_data(kube, ns, names.secret_key_secret_name("guestbook"))) >= {names.SECRET_KEY}

        # The migration Job completed before the Deployment existed, with the same image.
        (job,) = jobs(kube, ns, "guestbook")
        dep = deployment(kube, ns, "guestbook")
        assert job.status.succeeded == 1
        assert job.status.completion_time <= dep.metadata.creation_timestamp
        assert job.spec.template.spec.containers[0].image == app["spec"]["image"]
        assert dep.spec.template.spec.containers[0].image == app["spec"]["image"]
        assert dep.status.ready_replicas == app["spec"]["replicas"]

        # What `kubectl get flaskapps` shows: Env, Image, Ready, Reason.
        row = kube.kubectl("get", "flaskapps", "-n", ns, "--no-headers").stdout.split()
        assert row[:5] == ["guestbook", "production", app["spec"]["image"], "True", "Ready"]
        # Events at meaningful transitions only: at most three for an install.
        reasons = [e["reason"] for e in apps.events(ns, "guestbook")]
        assert {"DatabaseCreated", "Migrated", "Ready"} <= set(reasons)
        assert len(reasons) <= 3, reasons
    finally:
        kube.kubectl("delete", "flaskapp", "guestbook", "-n", ns, "--ignore-not-found", "--wait=false")
        kube.kubectl("delete", "postgresserver", server["metadata"]["name"], "--wait=false")


@pytest.mark.usefixtures("operator")
def test_image_change_migrates_then_rolls(kube: Kube, apps: Apps, ns: str, make_server: Any) -> None:
    server = make_server(["production"])
    body = flaskapp("shop", ns, server=server, image="registry.example/shop:1")
    apps.apply(body)
    apps.wait(ns, "shop", timeout=180)
    (first_job,) = jobs(kube, ns, "shop")

    body["spec"]["image"] = "registry.example/shop:2"
    apps.apply(body)

    def rolled() -> bool:
        # Until the new migration Job has succeeded, the Deployment must still run the old image.
        new_jobs = [j for j in jobs(kube, ns, "shop") if j.metadata.name != first_job.metadata.name]
        image = served_image(kube, ns, "shop")
        done = bool(new_jobs) and (new_jobs[0].status.succeeded or 0) >= 1
        if image == "registry.example/shop:2" and not done:
            raise AssertionError("the Deployment rolled before the new migration Job succeeded")
        if image != "registry.example/shop:2":
            raise NotYet(f"still serving {image}; new job done={done}")
        return True

    wait_for(rolled, timeout=120, what="the rollout of shop:2", interval=0.05)
    apps.wait(ns, "shop", timeout=120)
    status = apps.get(ns, "shop")["status"]
    assert status["servingImage"] == status["migratedImage"] == "registry.example/shop:2"
    new_job = next(j for j in jobs(kube, ns, "shop") if j.metadata.name != first_job.metadata.name)
    assert new_job.spec.template.spec.containers[0].image == "registry.example/shop:2"
    rs = client.AppsV1Api(kube.api).list_namespaced_replica_set(ns, label_selector=f"{names.LABEL_APP}=shop")
    new_rs = next(r for r in rs.items if r.spec.template.spec.containers[0].image.endswith(":2"))
    assert new_job.status.completion_time <= new_rs.metadata.creation_timestamp


@pytest.mark.usefixtures("operator")
def test_failed_migration_keeps_old_version_serving(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["production"])
    body = flaskapp("blog", ns, server=server, image="registry.example/blog:1")
    apps.apply(body)
    apps.wait(ns, "blog", timeout=180)

    body["spec"]["image"] = "registry.example/blog:2"
    body["spec"]["migrations"] = {"podLabels": FAIL_LABEL}
    apps.apply(body)
    failed = apps.wait_reason(ns, "blog", names.MIGRATED, "MigrationFailed")
    assert failed["status"] == "False"
    assert "registry.example/blog:1" in failed["message"]  # says what still serves
    status = apps.get(ns, "blog")["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds[names.AVAILABLE]["status"] == "True"
    assert conds[names.READY]["status"] == "False"
    assert conds[names.READY]["reason"] == "MigrationFailed"
    assert conds[names.STALLED]["status"] == "True"
    assert status["servingImage"] == "registry.example/blog:1"
    assert served_image(kube, ns, "blog") == "registry.example/blog:1"
    warnings = [e for e in apps.events(ns, "blog") if e["type"] == "Warning"]
    assert any(e["reason"] == "MigrationFailed" for e in warnings)

    # Fixing the spec recovers on its own: no Job to delete by hand.
    del body["spec"]["migrations"]
    apps.apply(body)
    apps.wait(ns, "blog", timeout=120)
    assert served_image(kube, ns, "blog") == "registry.example/blog:2"
    # The failed Job was cleaned up once a later one succeeded.
    assert all((j.status.succeeded or 0) >= 1 for j in jobs(kube, ns, "blog"))


@pytest.mark.usefixtures("operator")
@pytest.mark.parametrize(
    ("rule", "environment", "server_envs", "dbname"),
    [
        ("S1", "production", ["production"], "guestbook_test"),
        ("S2", "production", ["production"], "guestbook_staging"),
        ("S3", "development", ["development", "testing"], "guestbook_prod"),
        ("S4", "development", ["production"], None),
    ],
)
def test_unsafe_pairing_is_refused_and_creates_nothing(
    kube: Kube,
    apps: Apps,
    ns: str,
    make_server: Any,
    postgres: Any,
    rule: str,
    environment: str,
    server_envs: list[str],
    dbname: str | None,
) -> None:
    server = make_server(server_envs)
    body = flaskapp("risky", ns, server=server, environment=environment, dbname=dbname)
    apps.apply(body)
    cond = apps.wait_reason(ns, "risky", names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing")
    assert rule in cond["message"]
    assert apps.condition(ns, "risky", names.STALLED)["status"] == "True"
    assert apps.condition(ns, "risky", names.READY)["reason"] == "UnsafeDatabasePairing"
    assert any(e["reason"] == "UnsafeDatabasePairing" for e in apps.events(ns, "risky"))
    assert jobs(kube, ns, "risky") == []
    assert (
        client.CoreV1Api(kube.api).list_namespaced_secret(ns, label_selector=f"{names.LABEL_APP}=risky").items
        == []
    )
    assert not database_exists(postgres, body["spec"]["database"]["name"])


@pytest.mark.usefixtures("operator")
def test_s5_one_database_two_environments(apps: Apps, ns: str, make_server: Any) -> None:
    server = make_server(["development", "testing"])
    shared = f"shared_{secrets.token_hex(3)}"
    apps.apply(flaskapp("first", ns, server=server, environment="testing", dbname=shared))
    apps.wait(ns, "first", timeout=180)
    apps.apply(flaskapp("second", ns, server=server, environment="development", dbname=shared))
    cond = apps.wait_reason(ns, "second", names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing")
    assert "S5" in cond["message"] and "another environment" in cond["message"]
    assert ns not in cond["message"] and "first" not in cond["message"]  # nothing of the other app
    first_ready = apps.condition(ns, "first", names.READY)
    assert first_ready["status"] == "True", first_ready


@pytest.mark.usefixtures("operator")
def test_s6_database_stamped_for_another_environment(
    apps: Apps, ns: str, make_server: Any, postgres: Any
) -> None:
    dbname = f"orders_{secrets.token_hex(3)}"
    admin = pg.AdminConnection(postgres.host, postgres.port, "disable", postgres.superuser, postgres.password)
    # The database a production app of the same namespace/name kept (Retain) before it was deleted:
    # re-created as a testing app, it would re-attach to production data.
    retained = ownership.Owner(ns, "intruder", "uid-of-the-deleted-app", "production")
    pg.ensure_database(
        admin, ownership.Claim(retained, dbname, dbname), "pw-" + secrets.token_hex(8), set_password=True
    )
    server = make_server(["development", "testing"])
    apps.apply(flaskapp("intruder", ns, server=server, environment="testing", dbname=dbname))
    cond = apps.wait_reason(ns, "intruder", names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing")
    assert "S6" in cond["message"] and "production" in cond["message"]
    assert pg.read_stamp(admin, dbname) == "production"


@pytest.mark.usefixtures("operator")
def test_running_app_edited_into_unsafe_pairing_keeps_serving(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["production"])
    body = flaskapp("live", ns, server=server, image="registry.example/live:1")
    apps.apply(body)
    apps.wait(ns, "live", timeout=180)
    before = deployment(kube, ns, "live")

    # (The database itself cannot change in place; the environment can, into one the server refuses.)
    body["spec"]["environment"] = "development"
    body["spec"]["image"] = "registry.example/live:2"
    apps.apply(body)
    cond = apps.wait_reason(ns, "live", names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing")
    assert "S4" in cond["message"]
    after = deployment(kube, ns, "live")
    assert after.metadata.generation == before.metadata.generation
    assert after.spec.template.spec.containers[0].image == "registry.example/live:1"
    assert after.status.available_replicas == 2
    assert apps.condition(ns, "live", names.AVAILABLE)["status"] == "True"
    assert len(jobs(kube, ns, "live")) == 1


def test_operator_killed_mid_migration_resumes_without_duplicates(
    kube: Kube, apps: Apps, ns: str, make_server: Any, operator: OperatorProcess
) -> None:
    server = make_server(["production"])
    apps.apply(flaskapp("resume", ns, server=server))
    wait_for(lambda: jobs(kube, ns, "resume"), timeout=60, what="the migration Job", interval=0.05)
    operator.kill()
    password = secret_data(kube, ns, names.db_secret_name("resume"))["password"]
    try:
        assert deployment_absent_or_old(kube, ns)
    finally:
        operator.start()
    apps.wait(ns, "resume", timeout=180)
    assert len(jobs(kube, ns, "resume")) == 1
    assert secret_data(kube, ns, names.db_secret_name("resume"))["password"] == password


def deployment_absent_or_old(kube: Kube, ns: str) -> bool:
    deployment(kube, ns, "resume")  # raises on anything but 404; absent (None) is as fine as old
    return True


@pytest.mark.usefixtures("operator")
def test_deletion_retain_keeps_data_and_delete_drops_it(
    kube: Kube, apps: Apps, ns: str, make_server: Any, postgres: Any
) -> None:
    server = make_server(["testing"])
    keep = flaskapp("keeper", ns, server=server, environment="testing")
    drop = flaskapp(
        "dropper", ns, server=server, environment="testing", database={"deletionPolicy": "Delete"}
    )
    apps.apply(keep)
    apps.apply(drop)
    apps.wait(ns, "keeper", timeout=180)
    apps.wait(ns, "dropper", timeout=180)
    url = secret_data(kube, ns, names.db_secret_name("keeper"))["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE precious (v text)")
        conn.execute("INSERT INTO precious VALUES ('keep me')")

    kube.kubectl("delete", "flaskapp", "keeper", "dropper", "-n", ns, "--timeout=120s")
    keep_db, drop_db = keep["spec"]["database"]["name"], drop["spec"]["database"]["name"]
    assert not database_exists(postgres, drop_db)
    assert database_exists(postgres, keep_db)
    with psycopg.connect(postgres.url(keep_db)) as conn:
        assert conn.execute("SELECT v FROM precious").fetchall() == [("keep me",)]


def test_status_is_quiet_once_ready(
    kube: Kube, apps: Apps, ns: str, make_server: Any, operator: OperatorProcess
) -> None:
    """Once Ready, a reconcile writes nothing: a child event re-runs it and the FlaskApp is not touched."""
    server = make_server(["production"])
    apps.apply(flaskapp("calm", ns, server=server))
    apps.wait(ns, "calm", timeout=180)
    # kopf writes nothing of its own on the app (no change handlers: no last-handled-configuration).
    assert "flaskops.dev/last-handled-configuration" not in (
        apps.get(ns, "calm")["metadata"].get("annotations") or {}
    )
    before = apps.get(ns, "calm")
    rv = before["metadata"]["resourceVersion"]
    events_before = len(apps.events(ns, "calm"))
    (job,) = jobs(kube, ns, "calm")
    handled = "\"Handler 'child_changed' succeeded.\", "
    marker = f'"name": "{job.metadata.name}"'

    def job_events_handled() -> int:
        return sum(1 for line in operator.log_text().splitlines() if handled in line and marker in line)

    seen = job_events_handled()
    # Touch the migration Job (a watched child; annotating a Deployment bumps its generation on 1.36,
    # which is a real rollout signal): its watch fires and the operator reconciles the app again.
    kube.kubectl("annotate", "job", job.metadata.name, "-n", ns, f"nudge={secrets.token_hex(3)}")
    wait_for(lambda: job_events_handled() > seen, timeout=30, what="the operator to handle the Job event")
    after = apps.get(ns, "calm")
    assert after["metadata"]["resourceVersion"] == rv, _diff(before, after)
    assert len(apps.events(ns, "calm")) == events_before


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The fields that changed between two reads of an object, for a readable failure."""
    import difflib

    a = json.dumps(before, indent=1, sort_keys=True).splitlines()
    b = json.dumps(after, indent=1, sort_keys=True).splitlines()
    return "\n".join(line for line in difflib.unified_diff(a, b, lineterm="", n=1))


@pytest.mark.usefixtures("operator")
def test_secret_key_rotation_keeps_the_old_key_and_rolls_the_pods(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["production"])
    body = flaskapp("keys", ns, server=server)
    apps.apply(body)
    apps.wait(ns, "keys", timeout=180)
    old = secret_data(kube, ns, names.secret_key_secret_name("keys"))[names.SECRET_KEY]
    checksum_key = names.ANNOTATION_SECRETS_CHECKSUM
    old_sum = deployment(kube, ns, "keys").spec.template.metadata.annotations[checksum_key]

    body["spec"]["secretKey"] = {"rotation": "2026-11"}
    apps.apply(body)

    def rotated() -> dict[str, str]:
        data = secret_data(kube, ns, names.secret_key_secret_name("keys"))
        if data[names.SECRET_KEY] == old:
            raise NotYet("SECRET_KEY not rotated yet")
        return data

    data = wait_for(rotated, timeout=60, what="the rotated SECRET_KEY")
    assert data[names.SECRET_KEY_FALLBACKS].split(",") == [old]
    wait_for(
        lambda: deployment(kube, ns, "keys").spec.template.metadata.annotations[checksum_key] != old_sum,
        timeout=60,
        what="the pod template to roll on the new key",
    )
    apps.wait(ns, "keys", timeout=120)
    # The same rotation value again changes nothing; nor does removing it (that is not a rotation).
    apps.apply(body)
    del body["spec"]["secretKey"]
    apps.apply(body)
    generation = apps.get(ns, "keys")["metadata"]["generation"]
    wait_for(
        lambda: apps.get(ns, "keys")["status"].get("observedGeneration") == generation,
        timeout=60,
        what="the generation without a rotation observed",
    )
    assert (
        secret_data(kube, ns, names.secret_key_secret_name("keys"))[names.SECRET_KEY]
        == data[names.SECRET_KEY]
    )


@pytest.mark.usefixtures("operator")
def test_existing_secret_url_is_used_and_judged(kube: Kube, apps: Apps, ns: str, postgres: Any) -> None:
    """The user's own DATABASE_URL: the operator provisions nothing, passes the Secret through, and still
    applies the pairing rules to the database named in the URL."""
    good_db, bad_db = f"shop_{secrets.token_hex(3)}", f"shop_{secrets.token_hex(3)}_test"
    for db in (good_db, bad_db):
        postgres.create_database(db)
    core = client.CoreV1Api(kube.api)
    for name, db in (("legacy-db", good_db), ("risky-db", bad_db)):
        core.create_namespaced_secret(
            ns,
            client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"URL": postgres.url(db)}),
        )
    body = flaskapp("legacy", ns, server="unused")
    body["spec"]["database"] = {"existingSecret": {"name": "legacy-db", "key": "URL"}}
    apps.apply(body)
    apps.wait(ns, "legacy", timeout=180)
    (job,) = jobs(kube, ns, "legacy")
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env["DATABASE_URL"].value_from.secret_key_ref.name == "legacy-db"
    assert env["DATABASE_URL"].value_from.secret_key_ref.key == "URL"
    assert apps.get(ns, "legacy")["status"]["database"]["name"] == good_db

    risky = flaskapp("risky", ns, server="unused")
    risky["spec"]["database"] = {"existingSecret": {"name": "risky-db", "key": "URL"}}
    apps.apply(risky)
    cond = apps.wait_reason(ns, "risky", names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing")
    assert "S1" in cond["message"] and bad_db in cond["message"]
    assert jobs(kube, ns, "risky") == []


@pytest.mark.usefixtures("operator")
def test_second_app_cannot_take_over_a_provisioned_database(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    """Two apps on one provisioned database would overwrite each other's password: the newcomer stalls."""
    server = make_server(["testing"])
    shared = f"shared_{secrets.token_hex(3)}"
    apps.apply(flaskapp("web", ns, server=server, environment="testing", dbname=shared))
    apps.wait(ns, "web", timeout=180)
    password = secret_data(kube, ns, names.db_secret_name("web"))["password"]
    apps.apply(flaskapp("worker", ns, server=server, environment="testing", dbname=shared))
    cond = apps.wait_reason(ns, "worker", names.DATABASE_READY, "RoleOwnedElsewhere")
    assert "another FlaskApp" in cond["message"] and "web" not in cond["message"]
    assert apps.condition(ns, "worker", names.STALLED)["status"] == "True"
    assert secret_data(kube, ns, names.db_secret_name("web"))["password"] == password
    with psycopg.connect(secret_data(kube, ns, names.db_secret_name("web"))["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
