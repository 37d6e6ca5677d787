"""The testbed is a real control plane: controllers, scheduler, admission, RBAC and helm all act.

Pods never run processes under KWOK, but every state change below is made by the real
kube-controller-manager, kube-scheduler and kube-apiserver reacting to what KWOK reports.
These tests run against any cluster in KUBECONFIG too; the stage-driven Job failure needs KWOK.
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import subprocess
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from flaskops_testbed.kube_fixtures import Kube, NotYet, has_condition, wait_for, watch_until

pytestmark = pytest.mark.e2e

# KWOK never pulls it; kind preloads it (its pod sandbox image), so the Deployment test works there too.
IMAGE = "registry.k8s.io/pause:3.10"
FAIL_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"


def restricted_container(name: str = "main") -> dict[str, Any]:
    """A container that passes the `restricted` Pod Security level."""
    return {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [restricted_container()]}},
        },
    }


def job(name: str, pod_labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            # 0: a failed pod fails the Job at once instead of after minutes of retry backoff.
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": pod_labels or {}},
                "spec": {"restartPolicy": "Never", "containers": [restricted_container()]},
            },
        },
    }


def create(kube: Kube, manifest: dict[str, Any], namespace: str) -> Any:
    """Create one object from a plain manifest (the typed client calls want model objects)."""
    try:
        return utils.create_from_dict(kube.api, manifest, namespace=namespace)[0]
    except utils.FailToCreateError as exc:
        raise exc.api_exceptions[0] from None


def test_deployment_becomes_available_with_ready_pods(kube: Kube, namespace: str) -> None:
    apps = client.AppsV1Api(kube.api)
    create(kube, deployment("web", replicas=2), namespace)

    done = watch_until(
        apps.list_namespaced_deployment,
        lambda d: has_condition("Available")(d) and (d.status.ready_replicas or 0) == 2,
        timeout=90,
        what=f"Deployment {namespace}/web Available with 2 ready replicas",
        namespace=namespace,
        field_selector="metadata.name=web",
    )
    assert done.status.available_replicas == 2

    pods: list[Any] = (
        client.CoreV1Api(kube.api).list_namespaced_pod(namespace, label_selector="app=web").items
    )
    assert len(pods) == 2
    # Scheduled onto the simulated nodes by the real scheduler, marked Ready by KWOK's stages.
    assert all(p.spec.node_name for p in pods)
    assert all(p.status.phase == "Running" for p in pods)


def test_job_completes(kube: Kube, namespace: str) -> None:
    if not kube.simulated:
        pytest.skip("the pause image never exits; on a real kubelet this Job would never complete")
    batch = client.BatchV1Api(kube.api)
    create(kube, job("migrate-ok"), namespace)

    done = watch_until(
        batch.list_namespaced_job,
        has_condition("Complete"),
        timeout=90,
        what=f"Job {namespace}/migrate-ok Complete",
        namespace=namespace,
        field_selector="metadata.name=migrate-ok",
    )
    assert done.status.succeeded == 1


def test_job_with_failure_label_fails(kube: Kube, namespace: str) -> None:
    if not kube.simulated:
        pytest.skip("the failure label is a KWOK stage; a real kubelet would run the image")
    batch = client.BatchV1Api(kube.api)
    create(kube, job("migrate-bad", pod_labels={FAIL_LABEL: "true"}), namespace)

    failed = watch_until(
        batch.list_namespaced_job,
        has_condition("Failed"),
        timeout=90,
        what=f"Job {namespace}/migrate-bad Failed",
        namespace=namespace,
        field_selector="metadata.name=migrate-bad",
    )
    assert failed.status.failed == 1
    assert not has_condition("Complete")(failed)


def test_restricted_namespace_refuses_a_privileged_pod(kube: Kube, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "main", "image": IMAGE, "securityContext": {"privileged": True}}]},
    }
    with pytest.raises(ApiException) as refused:
        create(kube, pod, namespace)

    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted' in json.loads(refused.value.body or "{}")["message"]


def test_service_account_token_without_permission_gets_403(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    create(kube, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}, namespace)
    # Grant one thing, so the test also proves the token authenticates (403, not 401) and RBAC grants.
    rbac = "rbac.authorization.k8s.io"
    create(
        kube,
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "Role",
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
        namespace,
    )
    create(
        kube,
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader-reads-configmaps"},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "configmap-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
        namespace,
    )
    with kube.client_for_token(kube.service_account_token(namespace, "reader")) as as_reader:
        reader_core = client.CoreV1Api(as_reader)
        # RBAC changes reach the authorizer's informer cache shortly after the write; wait for that.
        watch_until(
            reader_core.list_namespaced_config_map,
            lambda _: True,
            timeout=30,
            what="the granted configmaps list to be allowed",
            describe=lambda cm: f"ConfigMap {cm.metadata.name}",
            namespace=namespace,
        )
        with pytest.raises(ApiException) as denied:
            reader_core.list_namespaced_secret(namespace)

    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in json.loads(denied.value.body or "{}")["message"]

    # The same identity as a kubeconfig, the way the operator runs in end-to-end tests.
    as_reader_config = kube.service_account_kubeconfig(namespace, "reader", tmp_path / "reader.kubeconfig")
    kubectl = [str(kube.kubectl_binary), "--kubeconfig", str(as_reader_config)]
    assert kube.run([*kubectl, "get", "configmaps"]).returncode == 0
    forbidden = kube.run([*kubectl, "get", "secrets"], check=False)
    assert forbidden.returncode != 0
    assert "Forbidden" in forbidden.stderr


def _write_chart(root: Path) -> Path:
    chart = root / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\ndescription: throwaway chart for the testbed test\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\nreplicas: 1\n")
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-config
            data:
              greeting: {{ .Values.greeting | quote }}
              kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}
            """
        )
    )
    web = deployment("{{ .Release.Name }}-web", replicas=1)
    web["spec"]["replicas"] = "{{ .Values.replicas }}"
    # JSON is YAML; helm renders the template expressions inside the strings.
    (chart / "templates" / "deployment.yaml").write_text(
        json.dumps(web, indent=2).replace('"{{ .Values.replicas }}"', "{{ .Values.replicas }}")
    )
    return chart


def test_helm_install_of_a_tiny_chart(
    kube: Kube, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keep helm's caches and repository config out of the user's home.
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    chart = _write_chart(tmp_path)

    # --wait: helm itself watches the Deployment become ready on the simulated nodes.
    kube.helm_run(
        "install", "tiny", str(chart), "--namespace", namespace, "--set", "greeting=hi", "--wait",
        "--timeout", "90s",
    )  # fmt: skip

    listed = json.loads(kube.helm_run("list", "--namespace", namespace, "--output", "json").stdout)
    assert [(r["name"], r["status"]) for r in listed] == [("tiny", "deployed")]
    config_map = client.CoreV1Api(kube.api).read_namespaced_config_map("tiny-config", namespace).data
    assert config_map is not None
    assert config_map["greeting"] == "hi"
    server = client.VersionApi(kube.api).get_code()
    # Helm rendered against the live server's version, not a default baked in at build time.
    assert config_map["kubeVersion"] == server.git_version
    ready = client.AppsV1Api(kube.api).read_namespaced_deployment("tiny-web", namespace).status
    assert ready is not None
    assert ready.ready_replicas == 1

    kube.helm_run("uninstall", "tiny", "--namespace", namespace, "--wait", "--timeout", "60s")


class _DenyLabelled(http.server.BaseHTTPRequestHandler):
    """A validating webhook: refuses objects carrying DENY_LABEL, admits everything else."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        labels = review["request"]["object"]["metadata"].get("labels") or {}
        denied = labels.get(DENY_LABEL) == "yes"
        response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": not denied}
        if denied:
            response["status"] = {"code": 403, "message": "refused by the loopback webhook"}
        body = json.dumps({**review, "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean; the assertions say what happened


DENY_LABEL = "testbed.flaskops.dev/deny"


def test_api_server_calls_an_admission_webhook_on_loopback(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    # The operator serves its validating webhook on 127.0.0.1 in end-to-end tests; prove that works.
    if not kube.is_local_testbed:
        pytest.skip("only an API server on this machine reaches this machine's loopback")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DenyLabelled)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    admission = client.AdmissionregistrationV1Api(kube.api)
    webhook_name = f"deny-{namespace}"
    try:
        create(
            kube,
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": webhook_name},
                "webhooks": [
                    {
                        "name": "deny.testbed.flaskops.dev",
                        "clientConfig": {
                            "url": f"https://127.0.0.1:{server.server_address[1]}/validate",
                            "caBundle": base64.b64encode(cert.read_bytes()).decode(),
                        },
                        "rules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE"],
                                "resources": ["configmaps"],
                            }
                        ],
                        # Only this test's namespace: the webhook must not touch other tests.
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                        "failurePolicy": "Fail",
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "timeoutSeconds": 5,
                    }
                ],
            },
            namespace,
        )
        core = client.CoreV1Api(kube.api)
        attempts = iter(range(1000))

        def refused() -> ApiException:
            # The API server loads new webhook configurations asynchronously: retry until it applies.
            labelled = {"metadata": {"name": f"cm-{next(attempts)}", "labels": {DENY_LABEL: "yes"}}}
            try:
                create(kube, {"apiVersion": "v1", "kind": "ConfigMap", **labelled}, namespace)
            except ApiException as exc:
                return exc
            raise NotYet("a labelled ConfigMap was still admitted")

        denied = wait_for(refused, timeout=30, what="the loopback webhook to refuse a ConfigMap")
        assert denied.status == 403
        assert "refused by the loopback webhook" in json.loads(denied.body or "{}")["message"]
        # Unlabelled objects pass through the same webhook.
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="ok"))
        )
    finally:
        admission.delete_validating_webhook_configuration(webhook_name)
        server.shutdown()
        server.server_close()
        thread.join()
