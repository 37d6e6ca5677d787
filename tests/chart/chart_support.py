"""The Helm chart as tests use it: render it, install its RBAC, and act as its ServiceAccount."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from flaskops_testbed import paths

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flaskops"

# The release whose ServiceAccount the end-to-end operator runs as (RBAC only: no CRDs, no webhook, and
# the in-cluster operator scaled to 0 because simulated pods run no process).
E2E_RELEASE = "flaskops-e2e"
E2E_NAMESPACE = "flaskops-system"
E2E_VALUES = (
    "--set",
    "crds.create=false",
    "--set",
    "webhook.enabled=false",
    "--set",
    "operator.replicas=0",
    "--set",
    "tests.enabled=false",
)


def helm_binary() -> Path:
    return paths.tool("helm")


def render(*args: str, release: str = "flaskops", namespace: str = "flaskops-system") -> list[dict[str, Any]]:
    """`helm template` of the chart: every document, parsed (empty ones dropped)."""
    out = subprocess.run(
        [str(helm_binary()), "template", release, str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"helm template failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in hits]}"
    return hits[0]


def operator_container(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    dep = find(docs, "Deployment")
    return dict(dep["spec"]["template"]["spec"]["containers"][0])


def fullname(release: str) -> str:
    return release if "flaskops" in release else f"{release}-flaskops"


def sa_kubeconfig(kube: Any, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a token of the ServiceAccount (valid for the whole session)."""
    return Path(kube.service_account_kubeconfig(namespace, service_account, path, expiration_seconds=86400))


def install_operator_rbac(kube: Any, kubeconfig_path: Path) -> Path:
    """Install the chart's ServiceAccount and RBAC (release flaskops-e2e) and return its kubeconfig."""
    kube.helm_run(
        "upgrade",
        "--install",
        E2E_RELEASE,
        str(CHART),
        "--namespace",
        E2E_NAMESPACE,
        "--create-namespace",
        *E2E_VALUES,
        "--wait",
        "--timeout=120s",
    )
    return sa_kubeconfig(kube, E2E_NAMESPACE, fullname(E2E_RELEASE), kubeconfig_path)
