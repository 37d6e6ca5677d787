"""`kubectl flaskops` on the real API server, run by kubectl's plugin mechanism with the token of a namespace
user: a ServiceAccount bound in the app's namespace only, to the built-in `view` or `edit` role (the chart
aggregates its FlaskApp rules into them). The plugin must answer with exactly those rights, never show a
secret value, and say plainly when RBAC refuses."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import FAIL_LABEL, Apps, flaskapp
from kubernetes import client

from flaskops import cli, names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

# Keys of the operator's Secrets whose values are secret (the others name host, port, database and user).
SECRET_VALUE_KEYS = {"DATABASE_URL", "uri", "PGPASSWORD", "password", "SECRET_KEY", "SECRET_KEY_FALLBACKS"}
# The console script sits next to the interpreter running the tests (the project's .venv/bin).
PLUGIN_DIR = Path(sys.executable).parent

Run = Callable[..., subprocess.CompletedProcess[str]]


def namespace_user(kube: Kube, ns: str, role: str, path: Path) -> Path:
    """A kubeconfig for ServiceAccount <role>-user in ns, bound there (RoleBinding) to ClusterRole role."""
    core, rbac = client.CoreV1Api(kube.api), client.RbacAuthorizationV1Api(kube.api)
    sa = f"{role}-user"
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa)))
    rbac.create_namespaced_role_binding(
        ns,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=sa),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=sa, namespace=ns)],
        ),
    )
    return Path(kube.service_account_kubeconfig(ns, sa, path))


def plugin_runner(kube: Kube, kubeconfig: Path) -> Run:
    """Run `kubectl flaskops ARGS` as kubectl does: found on PATH, the user's kubeconfig, no admin creds."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{PLUGIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kube.kubectl_binary), "flaskops", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def can_i(run_kubectl: Callable[..., Any], *args: str) -> bool:
    out = run_kubectl("auth", "can-i", *args, check=False)
    return bool(out.stdout.strip() == "yes")


def secret_values(kube: Kube, ns: str, name: str) -> dict[str, str]:
    data = client.CoreV1Api(kube.api).read_namespaced_secret(name, ns).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def failed_app(apps: Apps, ns: str, server: str, name: str) -> None:
    body = flaskapp(name, ns, server=server, migrations={"podLabels": FAIL_LABEL})
    apps.apply(body)
    apps.wait_reason(ns, name, names.MIGRATED, "MigrationFailed", timeout=180)


def test_plugin_as_a_namespace_user(
    kube: Kube, apps: Apps, ns: str, make_server: Any, tmp_path: Path
) -> None:
    assert (PLUGIN_DIR / "kubectl-flaskops").exists(), "the package's console script is not installed"
    failed_app(apps, ns, make_server(["production"]), "blog")
    viewer_cfg = namespace_user(kube, ns, "view", tmp_path / "viewer")
    editor_cfg = namespace_user(kube, ns, "edit", tmp_path / "editor")
    viewer, editor = plugin_runner(kube, viewer_cfg), plugin_runner(kube, editor_cfg)

    def as_viewer(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kube.run([str(kube.kubectl_binary), "--kubeconfig", str(viewer_cfg), *args], check=check)

    # A namespace user indeed: nothing cluster-wide, no Secrets, no writes.
    assert not can_i(as_viewer, "list", "flaskapps", "--all-namespaces")
    # PostgresServers are cluster-scoped: a RoleBinding's aggregated rule for them grants nothing.
    refused = as_viewer("get", "postgresservers", check=False)
    assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused.stderr
    assert not can_i(as_viewer, "get", "secrets", "-n", ns)
    assert can_i(as_viewer, "get", "flaskapps", "-n", ns)

    status = apps.get(ns, "blog")["status"]
    job = status["migration"]["jobName"]
    page = viewer("status", "blog")
    assert page.returncode == 0, page.stderr
    for text in (
        f"FlaskApp {ns}/blog",
        "MigrationFailed",
        "Conditions",
        f"desired   {status['desiredImage']}",
        job,
        f"pod        {job}-",  # the Job's pod, found by its label
        "blog-db",
        "blog-secret-key",
        status["database"]["name"],
        "Events",
    ):
        assert text in page.stdout, f"{text!r} missing:\n{page.stdout}"
    for secret in ("blog-db", "blog-secret-key"):
        for key, value in secret_values(kube, ns, secret).items():
            # Host, port, database and user are shown on purpose; passwords, URLs and keys never.
            for part in value.split(",") if key in SECRET_VALUE_KEYS else ():
                assert not part or part not in page.stdout, f"{secret}.{key} leaked into status"

    # Logs of the migration pod: simulated nodes serve none, which the plugin says without a traceback.
    # (-n after the command, as kubectl users write it.)
    logs = viewer("logs", "blog", "--migration", "--tail", "5", "-n", ns)
    if kube.simulated:
        assert logs.returncode == 1 and f"pod/{job}-" in logs.stderr, logs.stderr
        assert "Traceback" not in logs.stderr
    else:
        assert logs.returncode == 0, logs.stderr

    # view may not write: a plain refusal, and nothing changed.
    refused = viewer("retry-migration", "blog")
    assert refused.returncode == 1 and "forbidden to patch FlaskApp" in refused.stderr, refused.stderr
    assert cli.RETRY_MIGRATION not in (apps.get(ns, "blog")["metadata"].get("annotations") or {})

    retried = editor("retry-migration", "blog")
    assert retried.returncode == 0, retried.stderr
    token = apps.get(ns, "blog")["metadata"]["annotations"][cli.RETRY_MIGRATION]
    assert token in retried.stdout

    before = secret_values(kube, ns, "blog-secret-key")[names.SECRET_KEY]
    rotated = editor("rotate-secret-key", "blog", "--value", "first-rotation")
    assert rotated.returncode == 0, rotated.stderr
    assert apps.get(ns, "blog")["spec"]["secretKey"]["rotation"] == "first-rotation"

    def old_key_is_a_fallback() -> bool:
        data = secret_values(kube, ns, "blog-secret-key")
        if data[names.SECRET_KEY] == before or before not in data[names.SECRET_KEY_FALLBACKS].split(","):
            raise NotYet("SECRET_KEY not rotated yet")
        return True

    wait_for(old_key_is_a_fallback, timeout=60, what="the operator to rotate blog's SECRET_KEY")
    again = editor("rotate-secret-key", "blog", "--value", "first-rotation")
    assert again.returncode == 1 and "already" in again.stderr

    missing = viewer("status", "nope")
    assert missing.returncode == 1 and f"FlaskApp {ns}/nope not found" in missing.stderr


def test_refusals_that_need_no_write(
    kube: Kube, apps: Apps, ns: str, make_server: Any, tmp_path: Path
) -> None:
    """retry-migration on an app whose migration did not fail, rotate-secret-key on an app with its own
    key: refused with the reason, before any write."""
    body = flaskapp("own", ns, server=make_server(["production"]), secretKey={"secretRef": {"name": "k"}})
    apps.apply(body)
    apps.wait_reason(ns, "own", names.DATABASE_READY, "SecretKeyNotFound", timeout=120)
    editor = plugin_runner(kube, namespace_user(kube, ns, "edit", tmp_path / "editor"))
    rotate = editor("rotate-secret-key", "own")
    assert rotate.returncode == 1 and "spec.secretKey.secretRef" in rotate.stderr, rotate.stderr
    retry = editor("retry-migration", "own")
    assert retry.returncode == 1 and "not MigrationFailed" in retry.stderr, retry.stderr
    assert cli.RETRY_MIGRATION not in (apps.get(ns, "own")["metadata"].get("annotations") or {})


def test_retry_migration_starts_a_new_job(
    kube: Kube, apps: Apps, ns: str, make_server: Any, tmp_path: Path
) -> None:
    failed_app(apps, ns, make_server(["production"]), "retry")
    first = apps.get(ns, "retry")["status"]["migration"]["jobName"]
    editor = plugin_runner(kube, namespace_user(kube, ns, "edit", tmp_path / "editor"))
    assert editor("retry-migration", "retry").returncode == 0
    batch = client.BatchV1Api(kube.api)

    def second_job() -> str:
        jobs = batch.list_namespaced_job(ns, label_selector=f"{names.LABEL_APP}=retry").items
        others = [j.metadata.name for j in jobs if j.metadata.name != first]
        if not others:
            raise NotYet(f"only {first}")
        return str(others[0])

    # The operator reacts to a spec or annotation change within a second or two when it hears it.
    wait_for(second_job, timeout=10, what="a second migration Job after retry-migration")
