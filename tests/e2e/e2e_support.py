"""Helpers for the end-to-end tests: FlaskApp bodies, kubectl-level reads; the operator as a process and
free ports come from the testbed package (one harness for tests, bench and demo)."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from flaskops import names
from flaskops_testbed.kube_fixtures import RESTRICTED, Kube
from flaskops_testbed.operator_process import OperatorProcess as OperatorProcess
from flaskops_testbed.ports import free_port as free_port
from flaskops_testbed.waiting import NotYet, wait_for

ROOT = Path(__file__).resolve().parents[2]

DENIED = 'admission webhook "validate-flaskapp.flaskops.dev" denied the request'


def chart_webhook_configuration(url: str, ca: bytes, name: str) -> dict[str, Any]:
    """The chart's ValidatingWebhookConfiguration named `name`, pointed at a URL instead of the chart's
    Service (simulated pods cannot back one)."""
    from tests.chart.chart_support import find, render

    vwc = find(render("--show-only", "templates/webhook-certs.yaml"), "ValidatingWebhookConfiguration")
    vwc["metadata"] = {"name": name, "labels": vwc["metadata"]["labels"]}
    for hook in vwc["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"{url}{path}", "caBundle": base64.b64encode(ca).decode()}
    return vwc


# A migration Job's pod carrying this label fails in KWOK's chaos stage (a failed migration).
FAIL_LABEL = {"pod-container-running-failed.stage.kwok.x-k8s.io": "true"}


def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, str] | None:
    """A Secret's decoded data, or None when it does not exist."""
    try:
        sec = client.CoreV1Api(kube.api).read_namespaced_secret(name, namespace)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (sec.data or {}).items()}


def jobs(kube: Kube, namespace: str, app: str) -> list[Any]:
    """The app's migration Jobs."""
    sel = f"{names.LABEL_APP}={app},{names.LABEL_COMPONENT}=migration"
    return list(client.BatchV1Api(kube.api).list_namespaced_job(namespace, label_selector=sel).items)


def deployment(kube: Kube, namespace: str, name: str) -> Any:
    """The Deployment, or None when it does not exist."""
    try:
        return client.AppsV1Api(kube.api).read_namespaced_deployment(name, namespace)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def make_namespace(kube: Kube, prefix: str, labels: dict[str, str] | None = None) -> str:
    """A fresh namespace enforcing the restricted Pod Security level, once its default ServiceAccount
    exists. Names carry no pairing-rule token (unlike the `namespace` fixture's, which contain `test`)."""
    core = client.CoreV1Api(kube.api)
    name = f"{prefix}-{secrets.token_hex(4)}"
    meta = client.V1ObjectMeta(name=name, labels={**RESTRICTED, **(labels or {})})
    core.create_namespace(client.V1Namespace(metadata=meta))
    wait_for(
        lambda: core.read_namespaced_service_account("default", name),
        timeout=60,
        what=f"ServiceAccount {name}/default",
    )
    return name


def flaskapp(
    name: str,
    namespace: str,
    *,
    server: str,
    environment: str = "production",
    image: str = "registry.example/guestbook:1.0.0",
    dbname: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A FlaskApp body; database names are explicit because test namespaces carry the token `test`."""
    database = {"server": server, "name": dbname or f"e2e_{secrets.token_hex(4)}", **spec.pop("database", {})}
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.FLASKAPP_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "environment": environment,
            "image": image,
            "replicas": 2,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
            "database": database,
            **spec,
        },
    }


class Apps:
    """Read and change FlaskApps the way a user does: kubectl."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def apply(self, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        out = self.kube.kubectl(
            "get", "flaskapp", name, "-n", namespace, "-o", "json", "--show-managed-fields"
        ).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def condition(self, namespace: str, name: str, type_: str) -> dict[str, Any]:
        for cond in (self.get(namespace, name).get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return cond  # type: ignore[no-any-return]
        return {}

    def wait(self, namespace: str, name: str, condition: str = "Ready", timeout: int = 120) -> None:
        """`kubectl wait --for=condition=...`, the user's own command."""
        self.kube.kubectl(
            "wait",
            f"--for=condition={condition}",
            f"flaskapp/{name}",
            "-n",
            namespace,
            f"--timeout={timeout}s",
            timeout=timeout + 30,
        )

    def wait_reason(
        self, namespace: str, name: str, type_: str, reason: str, timeout: float = 120
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any]:
            cond = self.condition(namespace, name, type_)
            if cond.get("reason") != reason:
                raise NotYet(f"{type_}={cond.get('status')}/{cond.get('reason')}: {cond.get('message')}")
            return cond

        return wait_for(reached, timeout=timeout, what=f"{type_} reason {reason} on {namespace}/{name}")

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        out = self.kube.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name},involvedObject.kind={names.FLASKAPP_KIND}",
            "-o",
            "json",
        ).stdout
        return list(json.loads(out)["items"])
