"""`make demo` on a cluster it did not start (issue 11, item 4): names and labels of its own, no change to
anyone else's objects, consent first. Runs the demo's cluster-object steps and its operator against the
session's cluster, where a user's PostgresServer `main` and Secret `flaskops-system/pg-admin` (the
README's names) exist.

"Untouched" is judged by content and by who wrote: another flaskops operator of the same test session
(tests/e2e runs one cluster-wide) may record its own annotations on `main`, so resourceVersions are not
compared; the demo's writers (kubectl apply, field manager flaskops-demo) must never appear on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flaskops_testbed import demo
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
ACCESS = demo.ServerAccess("127.0.0.1", 5432, "postgres", "demo-password")
USER_SERVER = {
    "apiVersion": "flaskops.dev/v1alpha1",
    "kind": "PostgresServer",
    "metadata": {"name": "main"},
    "spec": {
        "host": "pg.users.example",
        "port": 5432,
        "adminSecretRef": {"namespace": "flaskops-system", "name": "pg-admin"},
        "environments": ["production"],
    },
}
# The field managers of the demo's own writes (kubectl apply, and server-side apply for CRDs).
DEMO_WRITERS = {"kubectl-client-side-apply", "flaskops-demo"}
USERS = {
    "server": ("postgresserver", "main"),
    "secret": ("secret", "pg-admin", "-n", "flaskops-system"),
    "crd": ("crd", "postgresservers.flaskops.dev"),
}


def get(kube: Kube, *args: str) -> dict[str, Any] | None:
    out = kube.kubectl("get", *args, "-o", "json", "--ignore-not-found").stdout
    return json.loads(out) if out.strip() else None


def version(kube: Kube, *args: str) -> str:
    body = get(kube, *args)
    assert body is not None, args
    return str(body["metadata"]["resourceVersion"])


def content(kube: Kube, *args: str) -> dict[str, Any]:
    """What a user wrote into an object (kopf's bookkeeping aside), and whether the demo ever wrote to it."""
    body = get(kube, *args)
    assert body is not None, args
    meta = body["metadata"]
    return {
        "spec": body.get("spec"),
        "data": body.get("data"),
        "labels": meta.get("labels") or {},
        "annotations": {
            k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("flaskops.dev/")
        },
        "demo's writes": sorted({f["manager"] for f in meta.get("managedFields") or []} & DEMO_WRITERS),
    }


@pytest.fixture
def users_objects(kube: Kube) -> Iterator[dict[str, dict[str, Any]]]:
    """The CRDs (installed without the demo's labels, as a chart or `kubectl apply` would), a user's
    PostgresServer `main` and Secret `flaskops-system/pg-admin`; what they hold."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for crd in ("flaskapps.flaskops.dev", "postgresservers.flaskops.dev"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    created: list[tuple[str, ...]] = []
    if get(kube, "namespace", "flaskops-system") is None:
        kube.kubectl("create", "namespace", "flaskops-system")
        created.append(("namespace", "flaskops-system"))
    if get(kube, *USERS["secret"]) is None:
        kube.kubectl(
            "create", "secret", "generic", "pg-admin", "-n", "flaskops-system",
            "--from-literal=username=admin", "--from-literal=password=users-password",
        )  # fmt: skip
        created.append(USERS["secret"])
    if get(kube, *USERS["server"]) is None:
        kube.kubectl("create", "-f", "-", input=json.dumps(USER_SERVER))
        created.append(USERS["server"])
    yield {key: content(kube, *args) for key, args in USERS.items()}
    # Whatever the test left of the demo's names, then what this fixture made.
    for obj in reversed(demo.DEMO_OBJECTS):
        where = ["-n", obj.namespace] if obj.namespace else []
        kube.kubectl("delete", obj.resource, obj.name, *where, "--ignore-not-found", "--wait=false")
    kube.kubectl("wait", "--for=delete", f"namespace/{demo.NAMESPACE}", "--timeout=120s", check=False)
    assert get(kube, "namespace", demo.NAMESPACE) is None, "the demo namespace is still being deleted"
    for args in reversed(created):
        kube.kubectl("delete", *args, "--ignore-not-found")


def assert_users_objects_untouched(kube: Kube, before: dict[str, dict[str, Any]]) -> None:
    for key, args in USERS.items():
        assert content(kube, *args) == before[key], key
    crd = get(kube, *USERS["crd"])
    assert crd is not None and not demo.is_ours(crd)


def test_the_demo_uses_its_own_labelled_objects_and_removes_only_them(
    kube: Kube, users_objects: dict[str, dict[str, Any]]
) -> None:
    env = kube.env()
    server = demo.prepare_cluster_objects(env, ACCESS)
    assert server["metadata"]["name"] == demo.SERVER != "main"
    assert_users_objects_untouched(kube, users_objects)
    for obj in demo.DEMO_OBJECTS[:3]:  # the FlaskApp is applied later, by run()
        body = demo.get_object(env, obj)
        assert body is not None and demo.is_ours(body), obj
    made = get(kube, "postgresserver", demo.SERVER)
    assert made is not None
    assert made["spec"]["adminSecretRef"] == {"namespace": demo.NAMESPACE, "name": demo.ADMIN_SECRET}
    assert (made["spec"]["host"], made["spec"]["port"]) == ("127.0.0.1", 5432)
    app = demo.demo_flaskapp()
    assert app["metadata"]["namespace"] == demo.NAMESPACE and demo.is_ours(app)
    assert app["spec"]["database"]["server"] == demo.SERVER

    demo.prepare_cluster_objects(env, ACCESS)  # a second `make demo` finds its own objects: fine
    assert_users_objects_untouched(kube, users_objects)

    assert demo.remove_demo_objects(env) == []
    assert get(kube, "postgresserver", demo.SERVER) is None
    assert_users_objects_untouched(kube, users_objects)


def test_the_demo_refuses_objects_of_its_names_it_did_not_create(
    kube: Kube, users_objects: dict[str, dict[str, Any]]
) -> None:
    env = kube.env()
    # Someone's namespace and PostgresServer that happen to carry the demo's names, without its label.
    kube.kubectl("create", "namespace", demo.NAMESPACE)
    kube.kubectl("create", "-f", "-", input=json.dumps({**USER_SERVER, "metadata": {"name": demo.SERVER}}))
    theirs = {
        "namespace": content(kube, "namespace", demo.NAMESPACE),
        "server": content(kube, "postgresserver", demo.SERVER),
    }
    with pytest.raises(demo.DemoRefused) as refused:
        demo.prepare_cluster_objects(env, ACCESS)
    message = str(refused.value)
    assert f"namespace {demo.NAMESPACE}" in message and f"postgresserver {demo.SERVER}" in message
    assert "app.kubernetes.io/created-by=flaskops-demo" in message
    # Nothing was written: not theirs, not the Secret, not the CRDs.
    assert content(kube, "namespace", demo.NAMESPACE) == theirs["namespace"]
    assert content(kube, "postgresserver", demo.SERVER) == theirs["server"]
    assert get(kube, "secret", demo.ADMIN_SECRET, "-n", demo.NAMESPACE) is None
    assert_users_objects_untouched(kube, users_objects)

    # `make demo-down` leaves them too, and says so.
    assert demo.remove_demo_objects(env) == [
        f"postgresserver {demo.SERVER} (not created by the demo)",
        f"namespace {demo.NAMESPACE} (not created by the demo)",
    ]
    assert content(kube, "postgresserver", demo.SERVER) == theirs["server"]
    assert get(kube, "namespace", demo.NAMESPACE) is not None


def handled_servers(lines: list[str]) -> list[str]:
    """Names of the PostgresServers whose handler the operator ran, in order (its JSON log lines)."""
    names = []
    for line in lines:
        record = json.loads(line) if line.startswith("{") else {}
        obj = record.get("object") or {}
        if obj.get("kind") == "PostgresServer" and "server_changed" in str(record.get("message")):
            names.append(str(obj.get("name")))
    return names


def test_the_demos_operator_never_handles_the_users_postgresservers(
    kube: Kube, users_objects: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without FLASKOPS_POSTGRESSERVER_SELECTOR (seen before it existed) the operator handled `main` too
    # and kopf wrote its annotations on it.
    monkeypatch.setattr(demo, "state_dir", lambda: tmp_path)  # never the real demo's pid files
    env = kube.env()
    demo.prepare_cluster_objects(env, ACCESS)
    main_port = users_objects["server"]["spec"]["port"]
    demo.start_operator({**env, **demo.shared_cluster_operator_env()}, namespaced=True)
    log = tmp_path / "operator.log"
    ports = iter(range(20000, 30000))
    try:

        def demo_server_handled_after_main_changed() -> list[str]:
            # A change to the user's server, then one to the demo's, until the operator (whose watch may
            # not have started yet) handles the demo's: by then it has seen main's change too. Another
            # flaskops operator of the session may have handled the demo's server first (shared
            # annotations), so only a change handled after these patches counts.
            port = next(ports)
            offset = len(log.read_text().splitlines())
            for server in ("main", demo.SERVER):
                patch = json.dumps({"spec": {"port": port}})
                kube.kubectl("patch", "postgresserver", server, "--type=merge", "-p", patch)
            seen = wait_for(
                lambda: [
                    n for n in handled_servers(log.read_text().splitlines()[offset:]) if n == demo.SERVER
                ],
                5,
                what="this change to be handled",
            )
            return seen

        wait_for(demo_server_handled_after_main_changed, 60, what="the operator to handle the demo's server")
        handled = handled_servers(log.read_text().splitlines())
    finally:
        demo.stop_operator()
        patch = json.dumps({"spec": {"port": main_port}})
        kube.kubectl("patch", "postgresserver", "main", "--type=merge", "-p", patch)
    assert demo.SERVER in handled and "main" not in handled, handled
    assert_users_objects_untouched(kube, users_objects)
    assert not (tmp_path / "operator.pid").exists()


def test_a_cluster_that_is_not_the_testbed_needs_consent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = str(tmp_path / "kubeconfig")
    problem = demo.consent_problem(elsewhere, consent=False)
    assert problem is not None and demo.CONSENT_FLAG in problem and demo.NAMESPACE in problem
    assert demo.consent_problem(elsewhere, consent=True) is None
    assert demo.consent_problem(None, consent=False) is None  # the demo starts the local testbed
    assert (
        demo.consent_problem(str(demo.paths.cache_dir() / "state" / "x" / "kubeconfig"), consent=False)
        is None
    )
    # run() refuses before it starts PostgreSQL or talks to any cluster.
    monkeypatch.setenv("KUBECONFIG", elsewhere)
    with pytest.raises(SystemExit, match=demo.CONSENT_FLAG):
        demo.run("unused")
