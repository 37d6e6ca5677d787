"""Real pods: the project's own images on a real kubelet node (flaskops_testbed.node), driven by the operator.

Where the KWOK tests see simulated pods, these see processes: the migration Job's container runs
`flask db upgrade` against the database the operator provisioned, Gunicorn answers through the pod
network (the host reaches every pod IP on the testbed's bridge), `kubectl logs` reads the container's
JSON lines. PostgreSQL stays on loopback; pods reach it through the node's forwarder at the bridge's
gateway address, which is what the PostgresServer names.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import requests
import yaml
from e2e_support import ROOT, Apps, OperatorProcess, secret_data
from kubernetes import client

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube, RealNodeHandle
from flaskops_testbed.node import NODE_NAME
from flaskops_testbed.waiting import NotYet, wait_for
from tests.chart.chart_support import CHART, fullname
from tests.chart.chart_support import E2E_NAMESPACE as ADMIN_NAMESPACE

pytestmark = pytest.mark.e2e

# Behind an ingress the app trusts one proxy's X-Forwarded-Proto; production forces HTTPS otherwise.
PROXIED = {"X-Forwarded-Proto": "https"}
PROXY_ENV = [{"name": "PROXY_COUNT", "value": "1"}]


@pytest.fixture(scope="module")
def pod_postgres(real_node: RealNodeHandle, postgres: Any) -> tuple[str, int]:
    """Where pods reach the session's PostgreSQL: the node's forwarder on the bridge gateway."""
    return real_node.forward(postgres.port)


@pytest.fixture
def real_ns(kube: Kube, real_node: RealNodeHandle) -> Any:
    name = real_node.namespace("rp")
    yield name
    client.CoreV1Api(kube.api).delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def pod_server(make_server: Callable[..., str], pod_postgres: tuple[str, int]) -> str:
    host, port = pod_postgres
    return make_server(["production"], host=host, port=port)


def example_app(namespace: str, server: str, image: str) -> dict[str, Any]:
    """examples/flaskapp.yaml with the locally built image, on the given PostgresServer."""
    app = yaml.safe_load((ROOT / "examples" / "flaskapp.yaml").read_text())
    app["metadata"]["namespace"] = namespace
    app["spec"]["image"] = image
    app["spec"]["database"]["server"] = server
    app["spec"]["database"]["name"] = f"guestbook_{secrets.token_hex(3)}"
    app["spec"]["env"] = PROXY_ENV
    return dict(app)


def pods(kube: Kube, namespace: str, app: str, component: str) -> list[Any]:
    sel = f"{names.LABEL_APP}={app},{names.LABEL_COMPONENT}={component}"
    return list(client.CoreV1Api(kube.api).list_namespaced_pod(namespace, label_selector=sel).items)


def serving_pods(kube: Kube, namespace: str, app: str) -> list[Any]:
    """The web pods that are Ready and not terminating."""
    return [
        p
        for p in pods(kube, namespace, app, "web")
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    ]


def migration_exit_codes(kube: Kube, namespace: str, app: str) -> dict[str, int]:
    """image (as the pod spec names it) -> exit code of each migration container that has terminated."""
    codes = {}
    for pod in pods(kube, namespace, app, "migration"):
        # Not status.image: the runtime reports one of the tags of the image ID, and two builds of
        # identical content share an ID.
        spec_images = {c.name: c.image for c in pod.spec.containers}
        for status in pod.status.container_statuses or []:
            if status.state and status.state.terminated:
                codes[spec_images[status.name]] = status.state.terminated.exit_code
    return codes


def head_revision() -> str:
    """The newest Alembic revision the guestbook ships (what `flask db upgrade` must reach)."""
    versions = ROOT / "app" / "guestbook" / "migrations" / "versions"
    revisions, parents = set(), set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        revisions.add(re.search(r'^revision = "(\w+)"', text, re.M).group(1))  # type: ignore[union-attr]
        down = re.search(r'^down_revision = "(\w+)"', text, re.M)
        if down:
            parents.add(down.group(1))
    (head,) = revisions - parents
    return head


def url(pod: Any, port: int, path: str) -> str:
    return f"http://{pod.status.pod_ip}:{port}{path}"


@pytest.mark.usefixtures("operator")
def test_example_runs_for_real(
    kube: Kube, apps: Apps, real_ns: str, pod_server: str, real_node: RealNodeHandle
) -> None:
    """The example FlaskApp on the guestbook image: a real migration, then real pods serving."""
    app = example_app(real_ns, pod_server, real_node.images.guestbook)
    apps.apply(app)
    apps.wait(real_ns, "guestbook", "Ready", timeout=300)

    # The Job's container really ran `flask db upgrade`: exit 0, Alembic's own log, schema at head.
    assert migration_exit_codes(kube, real_ns, "guestbook") == {real_node.images.guestbook: 0}
    (job_pod,) = pods(kube, real_ns, "guestbook", "migration")
    assert job_pod.spec.node_name == NODE_NAME
    job_log = kube.kubectl("logs", job_pod.metadata.name, "-n", real_ns).stdout
    assert "Running upgrade" in job_log, job_log
    data = secret_data(kube, real_ns, names.db_secret_name("guestbook"))
    with psycopg.connect(data["DATABASE_URL"]) as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone() or (None,)
    assert version == head_revision()

    # Every replica is a Gunicorn answering through the pod network.
    web = serving_pods(kube, real_ns, "guestbook")
    assert len(web) == app["spec"]["replicas"]
    port = app["spec"]["port"]
    for pod in web:
        assert pod.spec.node_name == NODE_NAME
        assert requests.get(url(pod, port, "/readyz"), timeout=5).status_code == 200
        assert requests.get(url(pod, port, "/livez"), timeout=5).status_code == 200
    message = f"written through the pod network {secrets.token_hex(4)}"
    created = requests.post(
        url(web[0], port, "/api/entries"),
        json={"author": "e2e", "message": message},
        headers=PROXIED,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    listed = requests.get(url(web[-1], port, "/api/entries"), headers=PROXIED, timeout=10).json()
    assert message in [e["message"] for e in listed["entries"]]

    # `kubectl logs` reads the container's JSON lines, the access log of that request among them.
    def access_line() -> dict[str, Any]:
        out = kube.kubectl("logs", web[0].metadata.name, "-n", real_ns).stdout
        for line in out.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "/api/entries" in json.dumps(record) and "201" in json.dumps(record):
                return dict(record)
        raise NotYet(f"no JSON access line for POST /api/entries yet in:\n{out[-2000:]}")

    wait_for(access_line, timeout=30, what="the JSON access log line in `kubectl logs`")


@pytest.mark.usefixtures("operator")
def test_failed_migration_keeps_the_old_pods_serving(
    kube: Kube, apps: Apps, real_ns: str, pod_server: str, real_node: RealNodeHandle
) -> None:
    """A migration that really exits non-zero: MigrationFailed, and the running version keeps serving."""
    app = example_app(real_ns, pod_server, real_node.images.guestbook)
    app["spec"]["replicas"] = 1
    apps.apply(app)
    apps.wait(real_ns, "guestbook", "Ready", timeout=300)
    (before,) = serving_pods(kube, real_ns, "guestbook")

    app["spec"]["image"] = real_node.images.broken_migration
    apps.apply(app)
    failed = apps.wait_reason(real_ns, "guestbook", names.MIGRATED, "MigrationFailed", timeout=180)
    assert failed["status"] == "False"
    codes = migration_exit_codes(kube, real_ns, "guestbook")
    assert codes.get(real_node.images.broken_migration, 0) != 0, codes
    (broken_pod,) = [
        p
        for p in pods(kube, real_ns, "guestbook", "migration")
        if p.spec.containers[0].image == real_node.images.broken_migration
    ]
    failure_log = kube.kubectl("logs", broken_pod.metadata.name, "-n", real_ns).stdout
    assert "division by zero" in failure_log, failure_log

    # The same pod as before still serves real requests, reading and writing the database.
    (after,) = serving_pods(kube, real_ns, "guestbook")
    assert after.metadata.uid == before.metadata.uid
    assert after.spec.containers[0].image == real_node.images.guestbook
    port = app["spec"]["port"]
    assert requests.get(url(after, port, "/readyz"), timeout=5).status_code == 200
    created = requests.post(
        url(after, port, "/api/entries"),
        json={"author": "e2e", "message": "still up"},
        headers=PROXIED,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    status = apps.get(real_ns, "guestbook")["status"]
    assert status["servingImage"] == real_node.images.guestbook
    assert apps.condition(real_ns, "guestbook", names.AVAILABLE)["status"] == "True"


def _session_cookie(response: requests.Response) -> str:
    # The cookie is Secure (production): requests would not send it over plain HTTP, so carry it by hand.
    match = re.search(r"session=([^;]+)", response.headers.get("Set-Cookie", ""))
    assert match, f"no session cookie in {response.headers}"
    return match.group(1)


@pytest.mark.usefixtures("operator")
def test_secret_key_rotation_reaches_the_running_pods(
    kube: Kube, apps: Apps, real_ns: str, pod_server: str, real_node: RealNodeHandle
) -> None:
    """After a rotation the new pods sign with the new key and still accept a session the old key signed."""
    app = example_app(real_ns, pod_server, real_node.images.guestbook)
    app["spec"]["replicas"] = 1
    apps.apply(app)
    apps.wait(real_ns, "guestbook", "Ready", timeout=300)
    (old_pod,) = serving_pods(kube, real_ns, "guestbook")
    port = app["spec"]["port"]

    # Sign the guestbook on the old pod: the redirect carries a session (with the flash) the old key signed.
    page = requests.get(url(old_pod, port, "/"), headers=PROXIED, timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    assert token, page.text[:2000]
    posted = requests.post(
        url(old_pod, port, "/"),
        data={"author": "rotation", "message": "signed before the rotation", "csrf_token": token.group(1)},
        headers={
            **PROXIED,
            "Cookie": f"session={_session_cookie(page)}",
            "Referer": f"https://{old_pod.status.pod_ip}:{port}/",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert posted.status_code == 302, posted.text[:2000]
    old_session = _session_cookie(posted)

    old_key = secret_data(kube, real_ns, names.secret_key_secret_name("guestbook"))[names.SECRET_KEY]
    app["spec"]["secretKey"] = {"rotation": "rotated-once"}
    apps.apply(app)

    def rolled() -> Any:
        web = serving_pods(kube, real_ns, "guestbook")
        if [p.metadata.uid for p in web] == [old_pod.metadata.uid] or len(web) != 1:
            raise NotYet(f"serving pods: {[p.metadata.name for p in web]}")
        return web[0]

    new_pod = wait_for(rolled, timeout=180, what="a new pod on the rotated key")
    data = secret_data(kube, real_ns, names.secret_key_secret_name("guestbook"))
    assert data[names.SECRET_KEY] != old_key
    assert data[names.SECRET_KEY_FALLBACKS].split(",") == [old_key]

    # The new pod shows the flash kept in the session the old key signed: the fallback reached it.
    shown = requests.get(
        url(new_pod, port, "/"), headers={**PROXIED, "Cookie": f"session={old_session}"}, timeout=10
    )
    assert "Thanks for signing the guestbook." in shown.text
    # ... and a session signed with a key it does not know is ignored (no flash), so the check can fail.
    forged = old_session[:-4] + ("AAAA" if not old_session.endswith("AAAA") else "BBBB")
    ignored = requests.get(
        url(new_pod, port, "/"), headers={**PROXIED, "Cookie": f"session={forged}"}, timeout=10
    )
    assert "Thanks for signing the guestbook." not in ignored.text


@pytest.mark.usefixtures("operator")
def test_a_deleted_db_secret_is_repaired_and_real_pods_serve_on_the_new_password(
    kube: Kube, apps: Apps, real_ns: str, pod_server: str, real_node: RealNodeHandle
) -> None:
    """Drift on real pods: `kubectl delete secret <app>-db` gets a new password on the role, and the pods
    that replace the running ones (still on the old, now refused, password) read and write through it."""
    app = example_app(real_ns, pod_server, real_node.images.guestbook)
    app["spec"]["replicas"] = 1
    apps.apply(app)
    apps.wait(real_ns, "guestbook", "Ready", timeout=300)
    (old_pod,) = serving_pods(kube, real_ns, "guestbook")
    secret = names.db_secret_name("guestbook")
    old_password = secret_data(kube, real_ns, secret)["password"]
    kube.kubectl("delete", "secret", secret, "-n", real_ns)

    def rolled() -> Any:
        web = serving_pods(kube, real_ns, "guestbook")
        if len(web) != 1 or web[0].metadata.uid == old_pod.metadata.uid:
            raise NotYet(f"serving pods: {[p.metadata.name for p in web]}")
        return web[0]

    new_pod = wait_for(rolled, timeout=180, what="a pod on the new password")
    assert secret_data(kube, real_ns, secret)["password"] != old_password
    port = app["spec"]["port"]
    assert requests.get(url(new_pod, port, "/readyz"), timeout=5).status_code == 200
    message = f"after the repair {secrets.token_hex(4)}"
    created = requests.post(
        url(new_pod, port, "/api/entries"),
        json={"author": "drift", "message": message},
        headers=PROXIED,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    apps.wait(real_ns, "guestbook", "Ready", timeout=120)


def test_operator_runs_as_a_pod_from_the_chart(
    kube: Kube,
    apps: Apps,
    real_node: RealNodeHandle,
    make_server: Callable[..., str],
    pod_postgres: tuple[str, int],
    operator: OperatorProcess,
) -> None:
    """`helm install` with the operator image, on the real node, as the chart's ServiceAccount: it serves
    the webhook to the real API server and takes the example app to Ready with real pods."""
    release = f"fo-{secrets.token_hex(3)}"
    watched = real_node.namespace("op")
    kube.kubectl("label", "namespace", watched, f"flaskops-real-pods={release}")
    repository, tag = real_node.images.operator.rsplit(":", 1)
    on_real_node = json.dumps({"flaskops.dev/real-node": "true"})
    tolerate = json.dumps([{"key": "flaskops.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}])
    host, port = pod_postgres
    server = make_server(["production"], host=host, port=port)
    # Two operators must never act on one FlaskApp: the session's host process pauses meanwhile.
    operator.stop()
    try:
        kube.helm_run(
            "install",
            release,
            str(CHART),
            "-n",
            ADMIN_NAMESPACE,  # Role-only mode reads PostgresServer admin Secrets in the release namespace
            "--set",
            f"image.repository={repository}",
            "--set",
            f"image.tag={tag}",
            "--set",
            "image.pullPolicy=Never",  # loaded into the node by the testbed: nothing to pull, ever
            "--set",
            "crds.create=false",
            "--set",
            f"operator.watchNamespace={watched}",
            "--set",
            "rbac.aggregateToDefaultRoles=false",
            "--set",
            "tests.enabled=false",
            "--set-json",
            f"operator.nodeSelector={on_real_node}",
            "--set-json",
            f"operator.tolerations={tolerate}",
            "--set-json",
            f'webhook.namespaceSelector={{"matchLabels":{{"flaskops-real-pods":"{release}"}}}}',
            "--wait",
            "--timeout=240s",
            timeout=300,
        )
        listed: Any = client.CoreV1Api(kube.api).list_namespaced_pod(
            ADMIN_NAMESPACE, label_selector=f"app.kubernetes.io/instance={release}"
        )
        # The chart's default: two pods, both serving the webhook, one holding the Lease.
        assert len(listed.items) == 2
        for pod in listed.items:
            assert pod.spec.node_name == NODE_NAME
            assert pod.spec.containers[0].image == real_node.images.operator
            (status,) = pod.status.container_statuses
            assert status.ready and status.restart_count == 0, status
            operator_log = kube.kubectl("logs", pod.metadata.name, "-n", ADMIN_NAMESPACE).stdout
            assert "getpwuid" not in operator_log
        pod_names = {pod.metadata.name for pod in listed.items}

        def holder() -> str:
            lease: Any = client.CoordinationV1Api(kube.api).read_namespaced_lease(
                fullname(release), ADMIN_NAMESPACE
            )
            who = (lease.spec.holder_identity or "").rsplit("_", 1)[0]
            if who not in pod_names:
                raise NotYet(f"Lease held by {who!r}")
            return who

        wait_for(holder, timeout=60, what="one operator pod to hold the Lease")

        # The webhook, served by the pod to the real API server, refuses an unsafe pairing at apply time.
        unsafe = example_app(watched, server, real_node.images.guestbook)
        unsafe["metadata"]["name"] = "guestbook-oops"
        unsafe["spec"]["database"]["name"] = "guestbook_test"

        def refused() -> str:
            result = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(unsafe), check=False)
            if result.returncode == 0:
                kube.kubectl("delete", "flaskapp", "guestbook-oops", "-n", watched, "--wait=false")
                raise NotYet("applied: the API server's webhook cache may not have the configuration yet")
            return result.stderr

        message = wait_for(refused, timeout=60, what="the webhook to refuse an unsafe FlaskApp")
        assert "denied the request" in message and "S1" in message, message

        # The operator in its pod takes the example to Ready: a real migration, real pods serving.
        app = example_app(watched, server, real_node.images.guestbook)
        apps.apply(app)
        apps.wait(watched, "guestbook", "Ready", timeout=300)
        assert migration_exit_codes(kube, watched, "guestbook") == {real_node.images.guestbook: 0}
        for web in serving_pods(kube, watched, "guestbook"):
            assert requests.get(url(web, app["spec"]["port"], "/readyz"), timeout=5).status_code == 200
    finally:
        kube.helm_run("uninstall", release, "-n", ADMIN_NAMESPACE, "--wait", "--timeout=120s", check=False)
        client.CoreV1Api(kube.api).delete_namespace(watched, propagation_policy="Background")
        operator.start()
