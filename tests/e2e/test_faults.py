"""The fault suite: the operator SIGKILLed, the API server and PostgreSQL stopped under it, many updates
during a restart, generated specs through the real API server, and no secret ever in a log, Event or status.

Every test runs against the real control plane and the operator process (`operator` fixture); the ones that
stop kube-apiserver run only against the local testbed and leave it answering /readyz.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import e2e_support
import psycopg
import pytest
import yaml
from e2e_support import FAIL_LABEL, Apps, OperatorProcess, deployment, flaskapp, jobs
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes import client

from flaskops import names, safety
from flaskops.postgres import naming
from flaskops.postgres import url as dburl
from flaskops_testbed.cluster import KwokCluster
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for
from tests.operator.flaskapp_strategies import (
    BAD_CPU,
    BAD_LABEL_KEY,
    Case,
    case,
    dns_label,
    refused_by_children,
)
from tests.operator.flaskapp_strategies import body as strategy_body

pytestmark = pytest.mark.e2e


# Every secret value a test here has seen: the last test scans the operator log, Events and status for them.
SEEN_SECRETS: set[str] = set()


# --- reading what the operator made ------------------------------------------------------------------------


def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    data = e2e_support.secret_data(kube, namespace, name)
    assert data is not None, f"Secret {namespace}/{name} does not exist"
    remember_secrets(data)
    return data


def remember_secrets(data: dict[str, str]) -> None:
    for key in ("password", "PGPASSWORD", names.SECRET_KEY):
        if data.get(key):
            SEEN_SECRETS.add(data[key])
    SEEN_SECRETS.update(k for k in data.get(names.SECRET_KEY_FALLBACKS, "").split(",") if k)


def conditions(app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (app.get("status") or {}).get("conditions") or []}


def assert_converged(
    kube: Kube, apps: Apps, namespace: str, name: str, image: str | None = None
) -> dict[str, Any]:
    """Ready at the latest spec, and nothing half-done: one Job, complete Secrets, a consistent status."""
    app = apps.get(namespace, name)
    status, spec = app["status"], app["spec"]
    conds = conditions(app)
    assert conds[names.READY]["status"] == "True", conds
    assert conds[names.RECONCILING]["status"] == "False", conds
    assert conds[names.STALLED]["status"] == "False", conds
    assert status["observedGeneration"] == app["metadata"]["generation"]
    assert all(c["observedGeneration"] == app["metadata"]["generation"] for c in conds.values()), conds
    want = image or spec["image"]
    assert spec["image"] == want
    assert status["desiredImage"] == status["migratedImage"] == status["servingImage"] == want
    (job,) = jobs(kube, namespace, name)
    assert job.status.succeeded == 1
    assert job.spec.template.spec.containers[0].image == want
    assert status["migration"]["jobName"] == job.metadata.name
    dep = deployment(kube, namespace, name)
    assert dep.spec.template.spec.containers[0].image == want
    assert dep.status.updated_replicas == dep.status.ready_replicas == spec["replicas"]
    db = secret_data(kube, namespace, names.db_secret_name(name))
    assert set(db) == set(names.DB_SECRET_KEYS)
    assert db["PGPASSWORD"] == db["password"] == unquote(urlsplit(db["DATABASE_URL"]).password or "")
    assert (db["PGDATABASE"], db["PGUSER"]) == (status["database"]["name"], status["database"]["user"])
    assert names.SECRET_KEY in secret_data(kube, namespace, names.secret_key_secret_name(name))
    return app


def logs_in(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute("SELECT current_user = %s", (dburl.parse_database_url(url).user,)).fetchone()[0]


# --- 1. SIGKILL mid-migration and mid-rollout ----------------------------------------------------------------


def test_sigkill_mid_migration_and_mid_rollout(
    kube: Kube, apps: Apps, ns: str, make_server: Any, operator: OperatorProcess
) -> None:
    """Killed three times at the worst moments; each restart picks up the same Job, password and Deployment."""
    server = make_server(["production"])
    body = flaskapp("crashy", ns, server=server, image="registry.example/crashy:1", replicas=3)
    apps.apply(body)

    # (a) Mid-migration of the first version: the Job exists, nothing serves yet.
    (job,) = wait_for(lambda: jobs(kube, ns, "crashy"), timeout=60, what="the migration Job", interval=0.02)
    operator.kill()
    try:
        password = secret_data(kube, ns, names.db_secret_name("crashy"))["password"]
        key = secret_data(kube, ns, names.secret_key_secret_name("crashy"))[names.SECRET_KEY]
        assert deployment(kube, ns, "crashy") is None, "rolled out before the migration was seen to succeed"
    finally:
        operator.start()

    # (b) Mid-rollout: the restarted operator creates the Deployment; kill it before it reports Ready.
    dep = wait_for(lambda: deployment(kube, ns, "crashy"), timeout=60, what="the Deployment", interval=0.02)
    operator.kill()
    try:
        ready = apps.condition(ns, "crashy", names.READY)
        assert ready.get("status") != "True", f"not mid-rollout: already {ready}"
        # The rollout goes on without the operator; its status is stale until it comes back.
        wait_for(
            lambda: (deployment(kube, ns, "crashy").status.ready_replicas or 0) == 3,
            timeout=60,
            what="the Deployment's 3 ready replicas",
        )
    finally:
        operator.start()
    apps.wait(ns, "crashy", timeout=60)
    assert_converged(kube, apps, ns, "crashy")
    (job_after,) = jobs(kube, ns, "crashy")
    assert job_after.metadata.uid == job.metadata.uid, "the migration Job was re-created"
    dep_after = deployment(kube, ns, "crashy")
    assert dep_after.metadata.uid == dep.metadata.uid
    assert dep_after.metadata.generation == dep.metadata.generation, "the Deployment was rewritten on resume"
    assert secret_data(kube, ns, names.db_secret_name("crashy"))["password"] == password
    assert secret_data(kube, ns, names.secret_key_secret_name("crashy"))[names.SECRET_KEY] == key

    # (c) Mid-migration of an upgrade: v1 keeps serving while the v2 Job runs; the operator dies.
    body["spec"]["image"] = "registry.example/crashy:2"
    apps.apply(body)

    def v2_job() -> Any:
        found = [
            j for j in jobs(kube, ns, "crashy") if j.spec.template.spec.containers[0].image.endswith(":2")
        ]
        return found[0] if found else None

    job2 = wait_for(v2_job, timeout=60, what="the v2 migration Job", interval=0.02)
    operator.kill()
    try:
        assert deployment(kube, ns, "crashy").spec.template.spec.containers[0].image.endswith(":1")
    finally:
        operator.start()
    apps.wait(ns, "crashy", timeout=60)
    wait_for(
        lambda: apps.get(ns, "crashy")["status"].get("servingImage") == body["spec"]["image"],
        timeout=60,
        what="crashy serving v2",
    )
    assert_converged(kube, apps, ns, "crashy", image="registry.example/crashy:2")
    (only,) = jobs(kube, ns, "crashy")  # v1's Job was superseded and removed, v2's never duplicated
    assert only.metadata.uid == job2.metadata.uid
    assert secret_data(kube, ns, names.db_secret_name("crashy"))["password"] == password
    assert operator.proc is not None and operator.proc.poll() is None


# --- 2. kube-apiserver stopped and restarted --------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class Component:
    """One control-plane process of a kwokctl cluster, as kwokctl started it: command line, directory, env."""

    def __init__(self, cluster: KwokCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.pid_file = cluster.cluster_dir / "pids" / f"{name}.pid"
        self.pid = int(self.pid_file.read_text().strip())
        proc = Path(f"/proc/{self.pid}")
        self.argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0")[:-1]]
        self.cwd = os.readlink(proc / "cwd")
        raw = (proc / "environ").read_bytes().split(b"\0")
        self.env = dict(e.decode().split("=", 1) for e in raw if b"=" in e)

    def alive(self) -> bool:
        return _pid_alive(self.pid)

    def stop(self, grace: float = 3) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds: kube-apiserver drains watches for up to a minute."""
        os.kill(self.pid, signal.SIGTERM)
        try:
            wait_for(lambda: not self.alive(), timeout=grace, what=f"{self.name} to exit", interval=0.05)
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            wait_for(lambda: not self.alive(), timeout=30, what=f"{self.name} to die", interval=0.05)

    def start(self) -> None:
        """Start it again detached (as kwokctl does), and record the new pid where `kwokctl delete` finds it."""
        log = self.cluster.logs_dir / f"{self.name}.log"
        out = subprocess.run(
            ["/bin/sh", "-c", '"$@" >>"$FAULTS_LOG" 2>&1 </dev/null & echo $!', "sh", *self.argv],
            env={**self.env, "FAULTS_LOG": str(log)},
            cwd=self.cwd,
            start_new_session=True,
            capture_output=True,
            text=True,
            check=True,
        )
        self.pid = int(out.stdout.strip())
        self.pid_file.write_text(f"{self.pid}\n")


@contextlib.contextmanager
def apiserver_stopped(kube: Kube) -> Iterator[None]:
    """kube-apiserver (only it) stopped for the block; started again after it, and /readyz answered.

    kube-controller-manager and kube-scheduler exit when they cannot renew their leader lease for 10s; any
    that did is started again, so the session's later tests find a whole cluster.
    """
    assert kube.cluster is not None
    others = [
        Component(kube.cluster, n) for n in ("kube-controller-manager", "kube-scheduler", "kwok-controller")
    ]
    apiserver = Component(kube.cluster, "kube-apiserver")
    try:
        apiserver.stop()
        yield
    finally:
        apiserver.start()
        restarted = datetime.now(UTC)
        wait_for(
            lambda: kube.kubectl("get", "--raw", "/readyz", check=False, timeout=5).returncode == 0,
            timeout=90,
            what="kube-apiserver /readyz after its restart",
            interval=0.1,
        )
        leases = client.CoordinationV1Api(kube.api)

        def leading_again(comp: Component) -> bool:
            if not comp.alive():
                comp.start()
                raise NotYet(f"{comp.name} had exited; started it again")
            if comp.name == "kwok-controller":
                return True
            lease = leases.read_namespaced_lease(comp.name, "kube-system")
            if lease.spec.renew_time < restarted:
                raise NotYet(f"{comp.name} last renewed its lease at {lease.spec.renew_time}")
            return True

        for comp in others:
            wait_for(lambda c=comp: leading_again(c), timeout=60, what=f"{comp.name} leading again")


def test_apiserver_restart_while_reconciling(
    kube: Kube, apps: Apps, ns: str, make_server: Any, operator: OperatorProcess, postgres: Any
) -> None:
    """The API server goes away under four reconciles; the operator reconnects and finishes every one."""
    if kube.cluster is None:
        pytest.skip("stops kube-apiserver: only against the local testbed, not the cluster in KUBECONFIG")
    server = make_server(["production"])
    app_names = [f"outage-{i}" for i in range(4)]
    for name in app_names[:3]:
        apps.apply(flaskapp(name, ns, server=server))
    wait_for(
        lambda: any(jobs(kube, ns, n) for n in app_names),
        timeout=60,
        what="a first migration Job",
        interval=0.02,
    )
    # The last one is created just before the outage: its first reconcile dies with the API server, before it
    # has any child whose watch event could bring it back.
    apps.apply(flaskapp(app_names[-1], ns, server=server))
    with apiserver_stopped(kube):
        pass  # down for as long as a restart takes: watches and in-flight requests all break
    back = time.monotonic()
    for name in app_names:
        apps.wait(ns, name, timeout=120)
    converged = time.monotonic() - back
    for name in app_names:
        assert_converged(kube, apps, ns, name)
        assert logs_in(secret_data(kube, ns, names.db_secret_name(name))["DATABASE_URL"])
    assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
    # Well inside kopf's default 60 s backoff for a failed handler: the operator retries API errors sooner.
    assert converged < 40, f"took {converged:.0f}s after the API server came back"


# --- 3. PostgreSQL down ----------------------------------------------------------------------------------


@pytest.fixture
def restartable_server(kube: Kube, restartable_postgres: Any, crds: None) -> Iterator[tuple[str, Any]]:
    """A production PostgresServer on the restartable PostgreSQL, with its own admin Secret."""
    pg = restartable_postgres
    name = f"pg-restartable-{secrets.token_hex(3)}"
    core = client.CoreV1Api(kube.api)
    with contextlib.suppress(client.exceptions.ApiException):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="flaskops-system")))
    core.create_namespaced_secret(
        "flaskops-system",
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            string_data={"username": pg.superuser, "password": pg.password},
        ),
    )
    SEEN_SECRETS.add(pg.password)
    server = {
        "apiVersion": names.API_VERSION,
        "kind": names.POSTGRESSERVER_KIND,
        "metadata": {"name": name},
        "spec": {
            "host": pg.host,
            "port": pg.port,
            "sslMode": "disable",
            "adminSecretRef": {"namespace": "flaskops-system", "name": name},
            "environments": ["production"],
        },
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(server))
    try:
        yield name, pg
    finally:
        kube.kubectl("delete", "postgresserver", name, "--ignore-not-found", "--wait=false")
        core.delete_namespaced_secret(name, "flaskops-system")


def app_roles(pg: Any) -> set[str]:
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' AND NOT rolsuper"
        ).fetchall()
    return {r[0] for r in rows}


def test_postgres_down_while_provisioning(
    kube: Kube, apps: Apps, ns: str, restartable_server: tuple[str, Any], operator: OperatorProcess
) -> None:
    """DatabaseReady=False with the reason while the server is down, retried with no spec change on both
    paths (kopf's TemporaryError for create, the timer for a child event); one role, one password."""
    server, pg = restartable_server
    dbname = f"down_{secrets.token_hex(3)}"
    roles_before = app_roles(pg)
    pg.stop()
    apps.apply(flaskapp("patient", ns, server=server, dbname=dbname))
    cond = apps.wait_reason(ns, "patient", names.DATABASE_READY, "DatabaseUnavailable", timeout=60)
    assert cond["status"] == "False"
    assert server in cond["message"] and f"{pg.port}" in cond["message"], cond
    reconciling = apps.condition(ns, "patient", names.RECONCILING)
    assert reconciling["status"] == "True" and "retrying" in reconciling["message"], reconciling
    assert apps.condition(ns, "patient", names.STALLED)["status"] == "False"
    assert any(
        e["reason"] == "DatabaseUnavailable" and e["type"] == "Warning" for e in apps.events(ns, "patient")
    )
    generation = apps.get(ns, "patient")["metadata"]["generation"]
    assert jobs(kube, ns, "patient") == [] and deployment(kube, ns, "patient") is None

    pg.restart()  # back on the same port, as a real server restart looks to its clients
    apps.wait(ns, "patient", timeout=90)  # kopf's TemporaryError retry, nothing else changed
    assert apps.get(ns, "patient")["metadata"]["generation"] == generation
    assert_converged(kube, apps, ns, "patient")
    assert app_roles(pg) - roles_before == {dbname}
    db = secret_data(kube, ns, names.db_secret_name("patient"))
    assert logs_in(db["DATABASE_URL"])

    # The child-event path: the Secret drifts and the server is down again when a Deployment event arrives.
    # Only the timer (no spec change, no kopf retry) can bring the app back.
    pg.stop()
    core = client.CoreV1Api(kube.api)
    core.patch_namespaced_secret(
        names.db_secret_name("patient"), ns, {"stringData": {"PGHOST": "drifted.example"}}
    )
    kube.kubectl("annotate", "deployment", "patient", "-n", ns, f"nudge={secrets.token_hex(3)}")
    apps.wait_reason(ns, "patient", names.DATABASE_READY, "DatabaseUnavailable", timeout=60)
    assert apps.condition(ns, "patient", names.READY)["status"] == "False"
    pg.restart()  # back on the same port, as a real server restart looks to its clients
    apps.wait(ns, "patient", timeout=90)
    app = assert_converged(kube, apps, ns, "patient")
    assert app["metadata"]["generation"] == generation
    after = secret_data(kube, ns, names.db_secret_name("patient"))
    assert after["PGHOST"] == pg.host
    assert after["password"] == db["password"], "the password changed across retries"
    assert app_roles(pg) - roles_before == {dbname}
    assert logs_in(after["DATABASE_URL"])


# --- 4. many updates while the operator restarts -----------------------------------------------------------


def test_many_updates_during_a_restart_end_at_the_latest_spec(
    kube: Kube, apps: Apps, ns: str, make_server: Any, operator: OperatorProcess
) -> None:
    server = make_server(["production"])
    bodies = [flaskapp(f"fleet-{i}", ns, server=server, image="registry.example/fleet:1") for i in range(8)]
    for b in bodies:
        apps.apply(b)
    for b in bodies:
        apps.wait(ns, b["metadata"]["name"], timeout=120)

    operator.kill()
    try:
        for b in bodies:
            b["spec"]["image"] = "registry.example/fleet:2"
            apps.apply(b)
    finally:
        operator.start()
    # While it catches up, half of them change again: the last spec wins, whatever was in flight.
    for b in bodies[::2]:
        b["spec"]["image"] = "registry.example/fleet:3"
        apps.apply(b)

    def all_latest() -> bool:
        lagging = []
        for b in bodies:
            got = apps.get(ns, b["metadata"]["name"])
            st_ = got.get("status") or {}
            ready = conditions(got).get(names.READY, {}).get("status")
            if (
                st_.get("servingImage") != b["spec"]["image"]
                or st_.get("observedGeneration") != got["metadata"]["generation"]
                or ready != "True"
            ):
                lagging.append(f"{b['metadata']['name']}: {st_.get('servingImage')} ready={ready}")
        if lagging:
            raise NotYet("; ".join(lagging))
        return True

    wait_for(all_latest, timeout=150, what="every app at its latest image", interval=0.5)
    for b in bodies:
        assert_converged(kube, apps, ns, b["metadata"]["name"], image=b["spec"]["image"])


# --- 5. generated specs through the real API server -----------------------------------------------------


def _expected_rules(
    c: Case, url: str, namespace: str, host: str, port: int, server_envs: dict[str, list[str]]
) -> set[str]:
    """The pairing rules (S1-S4) this accepted app breaks, computed from its spec as a reader would."""
    spec = c.body["spec"]
    db = spec["database"]
    if db.get("server"):
        dbname = db.get("name") or naming.default_names(namespace, c.body["metadata"]["name"])[0]
        identity = dburl.DatabaseIdentity(host, port, dbname, dbname)
        envs: list[str] | None = server_envs[db["server"]]
    else:
        identity = dburl.parse_database_url(url)
        envs = None
    found = safety.check_pairing(
        spec["environment"],
        identity,
        server_name=db.get("server"),
        server_environments=envs,
        rules=("S1", "S2", "S3", "S4"),
    )
    return {v.rule for v in found}


def _expected_outcome(spec: dict[str, Any]) -> tuple[str | None, str]:
    """For a safe pairing: the step that stalls (and its reason), or None for Ready. Migration comes first."""
    refused = refused_by_children(spec)
    migrations = spec.get("migrations") or {}
    if migrations.get("enabled", True):
        if "Job" in refused:
            return names.MIGRATED, "InvalidSpec"
        if migrations.get("podLabels") == FAIL_LABEL:
            return names.MIGRATED, "MigrationFailed"
    if "Deployment" in refused:
        return names.AVAILABLE, "InvalidSpec"
    return None, "Ready"


def test_generated_specs_are_refused_by_field_or_reconciled(
    kube: Kube, apps: Apps, ns: str, make_server: Any, postgres: Any, operator: OperatorProcess
) -> None:
    """Each generated spec is refused by the CRD schema naming the field, or reconciled to Ready or to Stalled
    with a reason (and the same pairing verdict the rules give); the operator never crashes or loops."""
    server_envs = {
        make_server(["production"]): ["production"],
        make_server(["development", "testing"]): ["development", "testing"],
    }
    counter = itertools.count()
    accepted: dict[str, tuple[Case, set[str]]] = {}
    refused_fields: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    core = client.CoreV1Api(kube.api)

    # The examples share this test's namespace, servers and operator on purpose, so @given decorates an inner
    # function: no function-scoped fixture is re-used behind Hypothesis' back. No shrinking: every replay
    # costs API round trips, and the failing example is printed as drawn.
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(data=st.data())
    def explore(data: st.DataObject) -> None:
        i = next(counter)
        name = f"{data.draw(dns_label, label='name')[:28]}-{i:02d}"
        url_secret = f"userdb-{i:02d}"
        # The user's own database for existingSecret apps: its name carries generated tokens too.
        user_db = data.draw(
            st.lists(
                st.sampled_from(["shop", "test", "prod", "dev", "contest", "live"]), min_size=1, max_size=2
            ).map("_".join),
            label="user db",
        )
        password = secrets.token_urlsafe(12)
        SEEN_SECRETS.add(password)  # a user's password: the operator must never quote it back
        url = f"postgresql://app_owner:{password}@db.internal:5432/{user_db}_{i:02d}"
        c = data.draw(
            case(
                name=name,
                namespace=ns,
                servers=sorted(server_envs),
                existing_secrets=[url_secret],
                extra={
                    "migrations": st.fixed_dictionaries(
                        {}, optional={"enabled": st.booleans(), "podLabels": st.just(FAIL_LABEL)}
                    )
                },
            ),
            label="case",
        )
        submit(c, url, url_secret, i)

    def submit(c: Case, url: str, url_secret: str, i: int) -> None:
        spec_db = c.body["spec"].get("database") or {}
        if c.valid and spec_db.get("name"):
            spec_db["name"] = (
                f"{spec_db['name'][:50]}_{i:02d}"  # one database per app: no S5 between examples
            )
        if c.valid and spec_db.get("existingSecret"):
            core.create_namespaced_secret(
                ns,
                client.V1Secret(
                    metadata=client.V1ObjectMeta(name=url_secret), string_data={"DATABASE_URL": url}
                ),
            )
        # JSON, not YAML: kubectl reads YAML 1.1, where a generated label value such as `n` is a boolean.
        out = kube.kubectl("apply", "-f", "-", input=json.dumps(c.body), check=False)
        if not c.valid:
            assert out.returncode != 0, f"the API server accepted {[m.label for m in c.mutations]}: {c.body}"
            assert any(f in out.stderr for f in c.fields), (c.fields, out.stderr)
            for f in c.fields:
                refused_fields[f] = refused_fields.get(f, 0) + 1
            return
        assert out.returncode == 0, (c.body, out.stderr)
        rules = _expected_rules(c, url, ns, postgres.host, postgres.port, server_envs)
        accepted[c.body["metadata"]["name"]] = (c, rules)

    # The outcomes a random run of 25 may miss, every time: child refused (Job, Deployment), failed migration.
    prod = next(s for s, e in server_envs.items() if e == ["production"])
    for i, extra in enumerate(
        (
            {"resources": {"limits": {"cpu": BAD_CPU}}},
            {"podLabels": {BAD_LABEL_KEY: "x"}},
            {"migrations": {"podLabels": FAIL_LABEL}},
            # No Job: the Deployment's server-side apply meets the bad quantity (a 500 from the API server).
            {"resources": {"limits": {"cpu": BAD_CPU}}, "migrations": {"enabled": False}},
            # Legal values that once broke the server-side apply body: an emoji, C1 controls, NEL.
            {
                "env": [{"name": "GREETING", "value": "hi \U0001f680 \x92\x85"}],
                "podAnnotations": {"example.com/note": "\u2028\U0001e5b9\x1e"},
            },
        ),
        start=90,
    ):
        spec = {
            "environment": "production",
            "image": "registry.example/fixed:1",
            "database": {"server": prod},
        }
        submit(Case(strategy_body(f"fixed-{i}", ns, {**spec, **extra})), "", "", i)
    explore()
    assert accepted, "no generated spec was schema-valid"

    def settled() -> dict[str, dict[str, Any]]:
        items = json.loads(kube.kubectl("get", "flaskapps", "-n", ns, "-o", "json").stdout)["items"]
        by_name = {i["metadata"]["name"]: i for i in items}
        pending = []
        for name in accepted:
            conds = conditions(by_name[name])
            terminal = conds.get(names.READY, {}).get("status") == "True" or (
                conds.get(names.STALLED, {}).get("status") == "True" and conds[names.STALLED].get("reason")
            )
            if not terminal:
                pending.append(f"{name}: {conds.get(names.READY)}")
        if pending:
            raise NotYet("; ".join(pending))
        return by_name

    final = wait_for(settled, timeout=120, what="every accepted app Ready or Stalled", interval=0.5)
    for name, (c, rules) in accepted.items():
        conds = conditions(final[name])
        spec = c.body["spec"]
        if rules:
            safe = conds[names.ENVIRONMENT_SAFE]
            assert safe["status"] == "False" and safe["reason"] == "UnsafeDatabasePairing", (name, spec, safe)
            assert all(r in safe["message"] for r in rules), (name, rules, safe)
            assert conds[names.STALLED]["status"] == "True"
            outcomes["UnsafeDatabasePairing"] = outcomes.get("UnsafeDatabasePairing", 0) + 1
            continue
        step, reason = _expected_outcome(spec)
        if step is None:
            assert conds[names.READY]["status"] == "True", f"{name} {spec}: {json.dumps(conds, indent=1)}"
        else:
            assert (conds[step]["status"], conds[step]["reason"]) == ("False", reason), (name, spec, conds)
            assert conds[names.STALLED]["status"] == "True", (name, conds)
            assert conds[names.READY]["reason"] == reason, (name, conds)
        outcomes[step or "Ready"] = outcomes.get(step or "Ready", 0) + 1
    print(f"generated: {len(accepted)} accepted, outcomes {outcomes}, refused fields {refused_fields}")

    # No loop: while one more app goes all the way to Ready, none of the settled ones is written again.
    versions = {n: final[n]["metadata"]["resourceVersion"] for n in accepted}
    sentinel = flaskapp("sentinel", ns, server=next(s for s, e in server_envs.items() if e == ["production"]))
    apps.apply(sentinel)
    apps.wait(ns, "sentinel", timeout=60)
    items = json.loads(kube.kubectl("get", "flaskapps", "-n", ns, "-o", "json").stdout)["items"]
    after = {
        i["metadata"]["name"]: i["metadata"]["resourceVersion"]
        for i in items
        if i["metadata"]["name"] in accepted
    }
    assert after == versions, "a settled FlaskApp kept being written"
    assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
    log = operator.log_text()
    crashes = [line for line in log.splitlines() if ns in line and "Traceback" in line]
    assert not crashes, crashes[:3]


# --- 6. secrets never leak ------------------------------------------------------------------------------


def test_secrets_never_appear_in_logs_events_or_status(
    kube: Kube, apps: Apps, ns: str, make_server: Any, postgres: Any, operator: OperatorProcess
) -> None:
    """Provision, rotate the key twice, fail a migration, refuse a bad URL; then scan everything for every
    password and key this module has seen (this test runs last, after the faults above)."""
    server = make_server(["production"])
    body = flaskapp("vault", ns, server=server, image="registry.example/vault:1")
    apps.apply(body)
    apps.wait(ns, "vault", timeout=90)
    for rotation in ("r1", "r2"):
        body["spec"]["secretKey"] = {"rotation": rotation}
        apps.apply(body)
        wait_for(
            lambda r=rotation: any(
                e["reason"] == "SecretKeyRotated" and r in e["message"] for e in apps.events(ns, "vault")
            ),
            timeout=60,
            what=f"rotation {rotation}",
        )
    apps.wait(ns, "vault", timeout=60)
    keys = secret_data(kube, ns, names.secret_key_secret_name("vault"))
    assert len([k for k in keys[names.SECRET_KEY_FALLBACKS].split(",") if k]) == 2
    body["spec"]["image"] = "registry.example/vault:2"
    body["spec"]["migrations"] = {"podLabels": FAIL_LABEL}
    apps.apply(body)
    apps.wait_reason(ns, "vault", names.MIGRATED, "MigrationFailed", timeout=60)

    # A user's URL the operator cannot use: its password must not be quoted back.
    leaked = secrets.token_urlsafe(16)
    SEEN_SECRETS.add(leaked)
    client.CoreV1Api(kube.api).create_namespaced_secret(
        ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="broken-url"),
            string_data={"DATABASE_URL": f"mysql://owner:{leaked}@db.internal:notaport/shop"},
        ),
    )
    broken = flaskapp("broken", ns, server=server)
    broken["spec"]["database"] = {"existingSecret": {"name": "broken-url"}}
    apps.apply(broken)
    apps.wait_reason(ns, "broken", names.DATABASE_READY, "InvalidDatabaseURL", timeout=60)
    SEEN_SECRETS.add(postgres.password)
    secret_data(kube, ns, names.db_secret_name("vault"))

    # The ownership refusals and an admin Secret with a wrong password: their messages carry no secret.
    wrong = f"wrong-{secrets.token_urlsafe(12)}"
    SEEN_SECRETS.add(wrong)
    client.CoreV1Api(kube.api).create_namespaced_secret(
        "flaskops-system",
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=f"wrong-{ns}"),
            string_data={"username": postgres.superuser, "password": wrong},
        ),
    )
    locked = make_server(["production"])
    kube.kubectl(
        "patch",
        "postgresserver",
        locked,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"adminSecretRef": {"namespace": "flaskops-system", "name": f"wrong-{ns}"}}}),
    )
    apps.apply(flaskapp("locked", ns, server=locked))
    apps.wait_reason(ns, "locked", names.DATABASE_READY, "AdminAuthFailed", timeout=60)
    vault_db = apps.get(ns, "vault")["spec"]["database"]["name"]
    apps.apply(flaskapp("squatter", ns, server=server, dbname=vault_db))
    apps.wait_reason(ns, "squatter", names.DATABASE_READY, "RoleOwnedElsewhere", timeout=60)
    kube.kubectl("delete", "secret", f"wrong-{ns}", "-n", "flaskops-system")

    # Every Secret the operator generated that still exists, in any namespace (the whole session's apps).
    managed = client.CoreV1Api(kube.api).list_secret_for_all_namespaces(
        label_selector=f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    )
    for sec in managed.items:
        remember_secrets({k: base64.b64decode(v).decode() for k, v in (sec.data or {}).items()})
    assert len(SEEN_SECRETS) >= 6
    haystacks = {"operator log": operator.log_text()}
    events = json.loads(kube.kubectl("get", "events", "-A", "-o", "json").stdout)["items"]
    haystacks["Events"] = "\n".join(f"{e.get('reason')} {e.get('message')} {e.get('note')}" for e in events)
    flaskapps = json.loads(kube.kubectl("get", "flaskapps", "-A", "-o", "json").stdout)["items"]
    haystacks["FlaskApp status"] = json.dumps([f.get("status") for f in flaskapps])
    haystacks["FlaskApp annotations"] = json.dumps([f["metadata"].get("annotations") for f in flaskapps])
    for where, text in haystacks.items():
        for value in SEEN_SECRETS:
            assert value not in text, f"a secret ({value[:4]}...) appears in the {where}"
