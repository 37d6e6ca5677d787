"""The chart on a real API server: install, test, upgrade, uninstall; and its RBAC, as the API enforces it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import wait_for
from tests.chart.chart_support import CHART, E2E_NAMESPACE, fullname, install_operator_rbac, sa_kubeconfig

pytestmark = pytest.mark.e2e


def _namespace(kube: Kube, name: str, labels: dict[str, str] | None = None) -> None:
    core = client.CoreV1Api(kube.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))


@pytest.fixture
def release(kube: Kube) -> Iterator[tuple[str, str]]:
    """A release name and its own namespace; uninstalled (if still there) and deleted afterwards."""
    name = f"fo-{secrets.token_hex(3)}"
    _namespace(kube, name, {"pod-security.kubernetes.io/enforce": "restricted"})
    yield name, name
    kube.helm_run("uninstall", name, "-n", name, "--ignore-not-found", "--wait", check=False)
    client.CoreV1Api(kube.api).delete_namespace(name, propagation_policy="Background")


def helm_values(release: str) -> list[str]:
    # The webhook only reviews namespaces labelled for this release: simulated pods cannot serve it, and
    # failurePolicy Fail must not block the FlaskApps of other tests running on the same cluster.
    return [
        "--set-json",
        f'webhook.namespaceSelector={{"matchLabels":{{"flaskops-chart-test":"{release}"}}}}',
        "--take-ownership",  # the CRDs may already exist, applied from crds/ by the e2e suite
    ]


def test_install_test_upgrade_uninstall(kube: Kube, release: tuple[str, str]) -> None:
    name, ns = release
    full = fullname(name)
    # On a cluster with real kubelets the operator image must be pullable; unless it is simulated (KWOK),
    # install everything but run no pod.
    pods = [] if kube.simulated else ["--set", "operator.replicas=0", "--set", "tests.enabled=false"]
    kube.helm_run(
        "install", name, str(CHART), "-n", ns, *helm_values(name), *pods, "--wait", "--timeout=180s"
    )

    # Every object is there, as the real API server accepted it.
    manifest = kube.helm_run("get", "manifest", name, "-n", ns).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(manifest) if d}
    assert {
        "ServiceAccount",
        "Secret",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "ValidatingWebhookConfiguration",
        "NetworkPolicy",
    } <= kinds
    dep: Any = client.AppsV1Api(kube.api).read_namespaced_deployment(full, ns)
    if kube.simulated:
        assert dep.status.available_replicas == 2  # admitted by Pod Security "restricted", scheduled, ready
    for crd in (names.FLASKAPP_PLURAL, names.POSTGRESSERVER_PLURAL):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}.{names.GROUP}", "--timeout=60s")

    # `helm test` runs its Job to completion (simulated here: the Job's pod succeeds without running).
    if kube.simulated:
        kube.helm_run("test", name, "-n", ns, "--timeout=120s")

    tls_before = _secret(kube, ns, f"{full}-webhook-tls")
    ca_before = _ca_bundle(kube, full)
    assert ca_before == tls_before["ca.crt"]

    kube.helm_run(
        "upgrade",
        name,
        str(CHART),
        "-n",
        ns,
        *helm_values(name)[:2],
        *pods,
        "--set",
        "operator.maxWorkers=3",
        "--wait",
    )
    dep = client.AppsV1Api(kube.api).read_namespaced_deployment(full, ns)
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
    assert env["FLASKOPS_MAX_WORKERS"] == "3"
    # The chart-generated certificate survives the upgrade (lookup), so the operator's pod is not rolled
    # for it and the API server keeps trusting the one being served.
    assert _secret(kube, ns, f"{full}-webhook-tls") == tls_before
    assert _ca_bundle(kube, full) == ca_before

    # A user's FlaskApp, then uninstall: the CRDs (keep) and the FlaskApp stay; the rest is gone.
    app_ns = f"{name}-apps"
    _namespace(kube, app_ns)
    try:
        app = {
            "apiVersion": names.API_VERSION,
            "kind": names.FLASKAPP_KIND,
            "metadata": {"name": "kept", "namespace": app_ns},
            "spec": {"environment": "development", "image": "example/app:1", "database": {"server": "none"}},
        }
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(app))
        kube.helm_run("uninstall", name, "-n", ns, "--wait")
        out = kube.kubectl("get", "crd", f"{names.FLASKAPP_PLURAL}.{names.GROUP}", "-o", "json").stdout
        assert json.loads(out)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        kube.kubectl("get", "flaskapp", "kept", "-n", app_ns)
        gone = kube.kubectl("get", "validatingwebhookconfiguration", full, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
        gone = kube.kubectl("get", "clusterrole", f"{full}-operator", check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
    finally:
        client.CoreV1Api(kube.api).delete_namespace(app_ns, propagation_policy="Background")


def _secret(kube: Kube, ns: str, name: str) -> dict[str, str]:
    secret: Any = client.CoreV1Api(kube.api).read_namespaced_secret(name, ns)
    return dict(secret.data)


def _ca_bundle(kube: Kube, name: str) -> str:
    vwc: Any = client.AdmissionregistrationV1Api(kube.api).read_validating_webhook_configuration(name)
    return str(vwc.webhooks[0].client_config.ca_bundle)


def test_wrong_value_type_refused_by_install(kube: Kube) -> None:
    out = kube.helm_run(
        "install", "fo-bad", str(CHART), "-n", "default", "--set", "webhook.timeoutSeconds=soon", check=False
    )
    assert out.returncode != 0
    assert "at '/webhook/timeoutSeconds': got string, want integer" in out.stderr


# --- RBAC, enforced by the API server on the chart's ServiceAccount token ---------------------------------


@pytest.fixture(scope="module")
def operator_token_kubeconfig(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same ServiceAccount the end-to-end operator runs as (release flaskops-e2e)."""
    return install_operator_rbac(kube, tmp_path_factory.mktemp("sa") / "kubeconfig")


def as_operator(kube: Kube, kubeconfig: Path, *args: str, input: str | None = None) -> Any:
    return kube.run(
        [str(kube.kubectl_binary), "--kubeconfig", str(kubeconfig), *args], input=input, check=False
    )


VWC = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingWebhookConfiguration",
    "metadata": {"name": "intruder"},
    "webhooks": [],
}


@pytest.mark.parametrize(
    ("args", "input"),
    [
        (("delete", "secret", "anything", "-n", "default"), None),
        (("get", "pods", "-n", "default"), None),
        (("run", "intruder", "--image=busybox", "-n", "default"), None),
        (("create", "clusterrolebinding", "escalate", "--clusterrole=cluster-admin", "--user=me"), None),
        (("delete", "deployment", "anything", "-n", "default"), None),
        (("create", "namespace", "intruder"), None),
        (("create", "-f", "-"), yaml.safe_dump(VWC)),  # the chart owns the webhook configuration
    ],
    ids=lambda a: " ".join(a[:3]) if isinstance(a, tuple) else "",
)
def test_operator_token_is_refused_what_it_must_not_do(
    kube: Kube, operator_token_kubeconfig: Path, args: tuple[str, ...], input: str | None
) -> None:
    out = as_operator(kube, operator_token_kubeconfig, *args, input=input)
    assert out.returncode != 0
    assert "is forbidden: User" in out.stderr, out.stderr
    assert f"system:serviceaccount:{E2E_NAMESPACE}:{fullname('flaskops-e2e')}" in out.stderr, out.stderr


def test_operator_token_can_do_what_it_needs(kube: Kube, operator_token_kubeconfig: Path) -> None:
    for verb, resource in [
        ("list", "flaskapps.flaskops.dev"),
        ("watch", "postgresservers.flaskops.dev"),
        ("patch", "flaskapps.flaskops.dev/status"),
        ("patch", "postgresservers.flaskops.dev/status"),
        ("create", "jobs.batch"),
        ("create", "secrets"),
        ("get", "secrets"),
        ("watch", "secrets"),  # label-selected: its own Secrets, to put back one someone deleted
        ("create", "events"),
    ]:
        out = as_operator(kube, operator_token_kubeconfig, "auth", "can-i", verb, resource, "-A")
        assert out.stdout.strip() == "yes", (verb, resource, out.stderr)
    for verb, resource in [
        ("update", "secrets"),
        ("delete", "secrets"),
        ("create", "pods"),
        ("get", "nodes"),
    ]:
        out = as_operator(kube, operator_token_kubeconfig, "auth", "can-i", verb, resource, "-A")
        assert out.stdout.strip() == "no", (verb, resource)


def test_role_only_mode_confines_the_operator(kube: Kube, release: tuple[str, str], tmp_path: Path) -> None:
    """watchNamespace=X: the token acts in X (and reads admin Secrets in the release namespace) only."""
    name, ns = release
    watched = f"{name}-shop"
    _namespace(kube, watched)
    try:
        kube.helm_run(
            "install",
            name,
            str(CHART),
            "-n",
            ns,
            "--set",
            f"operator.watchNamespace={watched}",
            "--set",
            "crds.create=false",
            "--set",
            "webhook.enabled=false",
            "--set",
            "operator.replicas=0",
            "--set",
            "rbac.aggregateToDefaultRoles=false",
        )
        sa = fullname(name)
        wait_for(
            lambda: client.CoreV1Api(kube.api).read_namespaced_service_account(sa, ns),
            timeout=30,
            what="the chart's ServiceAccount",
        )
        cfg = sa_kubeconfig(kube, ns, sa, tmp_path / "kubeconfig")

        def can(*args: str) -> str:
            return str(as_operator(kube, cfg, "auth", "can-i", *args).stdout.strip())

        assert can("create", "jobs.batch", "-n", watched) == "yes"
        assert can("get", "secrets", "-n", watched) == "yes"
        assert can("get", "secrets", "-n", ns) == "yes"  # PostgresServer admin Secrets
        assert can("create", "secrets", "-n", ns) == "no"
        assert can("get", "secrets", "-n", "default") == "no"
        assert can("list", "flaskapps.flaskops.dev", "-n", "default") == "no"
        assert can("list", "flaskapps.flaskops.dev", "-A") == "no"
        assert can("list", "postgresservers.flaskops.dev") == "yes"  # cluster-scoped: a small ClusterRole
    finally:
        client.CoreV1Api(kube.api).delete_namespace(watched, propagation_policy="Background")


def test_users_view_and_edit_roles_cover_flaskapps(kube: Kube, operator_token_kubeconfig: Path) -> None:
    """Aggregation: the built-in `view` and `edit` ClusterRoles now carry the FlaskApp rules."""

    def rules(role: str) -> list[dict[str, Any]]:
        def aggregated() -> list[dict[str, Any]]:
            body = json.loads(kube.kubectl("get", "clusterrole", role, "-o", "json").stdout)
            found = [r for r in body.get("rules") or [] if "flaskapps" in r.get("resources", [])]
            assert found, f"{role} has no FlaskApp rules yet"
            return found

        return wait_for(aggregated, timeout=30, what=f"aggregation into {role}")

    assert any("list" in r["verbs"] for r in rules("view"))
    assert any("create" in r["verbs"] for r in rules("edit"))
    assert any("delete" in r["verbs"] for r in rules("admin"))
