"""Kubernetes fixtures for the whole suite (registered as a pytest plugin by the root conftest.py).

``kube`` (session)
    A ``Kube``: the cluster named by ``KUBECONFIG`` when that is set (any cluster, e.g. kind), else
    the local testbed started for the session (cluster ``flaskops-test-<pid>``, so concurrent
    sessions never share one) and stopped at its end; clusters of killed sessions are reaped when
    the next session starts. ``FLASKOPS_TESTBED_KEEP=1`` uses the fixed name ``flaskops-test`` and
    leaves it running, so the next session reuses it and starts in about a second.
    ``FLASKOPS_TEST_CLUSTER=NAME`` picks the name explicitly (stopped at the end unless KEEP).
    While the local testbed runs, ``KUBECONFIG`` in ``os.environ`` points at it, so subprocesses and
    ``kopf.testing.KopfRunner`` find it without arguments.

``namespace`` (function)
    A fresh namespace labelled ``pod-security.kubernetes.io/enforce=restricted`` (its default
    ServiceAccount already exists, so pods are admitted at once); deleted after the test without
    waiting for the deletion to finish.

``real_node`` (session)
    A ``RealNodeHandle``: one kubelet on containerd joined to the local testbed, with the project's
    images (``make images``) imported; stopped at the end of the session, leaving nothing behind.
    Fails with the command to run when the images or the kubelet are not built; skips on a cluster
    named by ``KUBECONFIG`` (its nodes are real already, but this harness cannot load images there).
    ``real_node.namespace(prefix)`` makes a restricted namespace whose pods land on the real node.

Wait helpers (re-exported from ``flaskops_testbed.waiting``): ``wait_for``, ``watch_until``,
``has_condition``, ``condition_status``, ``NotYet``.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from flaskops_testbed import paths
from flaskops_testbed.cluster import KwokCluster, claim, reap_orphans
from flaskops_testbed.images import Images, ImagesNotBuiltError
from flaskops_testbed.images import load as load_images
from flaskops_testbed.node import NAMESPACE_ANNOTATIONS, RealNode
from flaskops_testbed.waiting import (
    NotYet,
    api_client,
    condition_status,
    has_condition,
    wait_for,
    watch_until,
)

__all__ = [
    "TEST_CLUSTER_NAME",
    "CommandError",
    "Kube",
    "NotYet",
    "RealNodeHandle",
    "condition_status",
    "has_condition",
    "kube",
    "namespace",
    "real_node",
    "wait_for",
    "watch_until",
]

TEST_CLUSTER_NAME = "flaskops-test"
KWOK_NODE = "kwok.x-k8s.io/node"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


class CommandError(subprocess.CalledProcessError):
    """A kubectl/helm command failed; unlike CalledProcessError its message shows the output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


@dataclass
class Kube:
    """A reachable Kubernetes API and the tools to drive it."""

    kubeconfig: Path
    api: client.ApiClient
    kubectl_binary: Path
    helm: Path
    # The local testbed cluster, or None when KUBECONFIG named another cluster.
    cluster: KwokCluster | None

    @property
    def is_local_testbed(self) -> bool:
        return self.cluster is not None

    @property
    def webhook_client_dir(self) -> Path | None:
        """The local testbed's webhook client PKI (cluster.webhook_client_apiserver_args): ca.crt, client.crt,
        client.key. None for a cluster in KUBECONFIG, whose API server's client certificate (if any) is
        the cluster admin's to give."""
        if self.cluster is None:
            return None
        directory = self.cluster.webhook_client_dir
        return directory if (directory / "ca.crt").exists() else None

    @functools.cached_property
    def simulated(self) -> bool:
        """True when KWOK drives the nodes (pods never run; stages decide their fate)."""
        nodes = client.CoreV1Api(self.api).list_node().items
        return any(((n.metadata and n.metadata.annotations) or {}).get(KWOK_NODE) == "fake" for n in nodes)

    def client_for_token(self, token: str) -> client.ApiClient:
        """An ApiClient for this cluster that authenticates with a bearer token only."""
        admin = self.api.configuration
        config = client.Configuration()
        config.host = admin.host
        config.ssl_ca_cert = admin.ssl_ca_cert
        config.verify_ssl = admin.verify_ssl
        config.api_key = {"authorization": token}
        config.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(config)

    def service_account_token(self, namespace: str, name: str, expiration_seconds: int = 3600) -> str:
        """A fresh token of a ServiceAccount (TokenRequest API), e.g. to run the operator as its chart's SA."""
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        issued = client.CoreV1Api(self.api).create_namespaced_service_account_token(name, namespace, request)
        token = issued.status.token if issued.status else None
        if not token:
            raise RuntimeError(f"the API server issued no token for ServiceAccount {namespace}/{name}")
        return token

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, expiration_seconds: int = 3600
    ) -> Path:
        """Write a kubeconfig that acts as ServiceAccount namespace/name, so RBAC gaps fail tests.

        Point KUBECONFIG at it (kopf, kubectl, the kubernetes client all read it) to run the operator
        with exactly the permissions its chart grants.
        """
        admin = self.api.configuration
        cluster: dict[str, object] = {"server": admin.host}
        if not admin.verify_ssl:
            cluster["insecure-skip-tls-verify"] = True
        elif admin.ssl_ca_cert:
            # Embedded, not referenced: the client's CA file is a temporary file of this process.
            cluster["certificate-authority-data"] = base64.b64encode(
                Path(admin.ssl_ca_cert).read_bytes()
            ).decode()
        user = f"system:serviceaccount:{namespace}:{name}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testbed", "cluster": cluster}],
            "users": [
                {
                    "name": user,
                    "user": {"token": self.service_account_token(namespace, name, expiration_seconds)},
                }
            ],
            "contexts": [
                {"name": user, "context": {"cluster": "testbed", "user": user, "namespace": namespace}}
            ],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def env(self) -> dict[str, str]:
        """os.environ with KUBECONFIG pointing at this cluster (for subprocesses)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def run(
        self, argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command against this cluster; raise CommandError (with its output) on failure."""
        result = subprocess.run(
            argv, input=input, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl ARGS` (the built one) against this cluster."""
        return self.run([str(self.kubectl_binary), *args], input=input, check=check, timeout=timeout)

    def helm_run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """`helm ARGS` (the built one) against this cluster."""
        return self.run([str(self.helm), *args], input=input, check=check, timeout=timeout)


def _external_kubeconfig(given: str, tmp: Path) -> Path:
    """A single kubeconfig file for a KUBECONFIG value (which may list several files)."""
    files = [p for p in given.split(os.pathsep) if p]
    if len(files) == 1:
        return Path(files[0]).resolve()
    # kubectl merges the list; flatten it once so every tool sees the same context.
    flat = subprocess.run(
        [str(paths.tool("kubectl")), "config", "view", "--flatten", "--raw"],
        env={**os.environ, "KUBECONFIG": given},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp / "kubeconfig"
    path.write_text(flat)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """The Kubernetes cluster of this test session (KUBECONFIG's, else the local testbed)."""
    given = os.environ.get("KUBECONFIG")
    cluster: KwokCluster | None = None
    if given:
        kubeconfig = _external_kubeconfig(given, tmp_path_factory.mktemp("kube"))
    else:
        if not paths.is_built():
            pytest.fail(
                f"no KUBECONFIG and no testbed binaries in {paths.bin_dir()}: run `make testbed` "
                "(a cold build takes 10-25 minutes), or point KUBECONFIG at a cluster (e.g. kind)",
                pytrace=False,
            )
        keep = bool(os.environ.get("FLASKOPS_TESTBED_KEEP"))
        explicit = os.environ.get("FLASKOPS_TEST_CLUSTER")
        reap_orphans(f"{TEST_CLUSTER_NAME}-")
        if explicit or keep:
            cluster = KwokCluster(name=explicit or TEST_CLUSTER_NAME)
        else:
            # One cluster per session, so concurrent sessions (two terminals, two engineers) never
            # stop each other's; claimed, so the next session reaps it if this one gets killed.
            cluster = KwokCluster(name=f"{TEST_CLUSTER_NAME}-{os.getpid()}")
            claim(cluster)
        cluster.up()
        kubeconfig = cluster.kubeconfig
        os.environ["KUBECONFIG"] = str(kubeconfig)
    api = api_client(kubeconfig)
    try:
        yield Kube(
            kubeconfig=kubeconfig,
            api=api,
            kubectl_binary=paths.tool("kubectl"),
            helm=paths.tool("helm"),
            cluster=cluster,
        )
    finally:
        api.close()
        if cluster is not None:
            os.environ.pop("KUBECONFIG", None)
            if not keep:
                cluster.down()


def _namespace_name(test_name: str) -> str:
    # DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters.
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:50].rstrip("-")
    return f"{base or 't'}-{secrets.token_hex(4)}"


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace under the `restricted` Pod Security level; deleted after the test."""
    core = client.CoreV1Api(kube.api)
    name = _namespace_name(request.node.name)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED)))
    try:
        # The ServiceAccount admission plugin refuses pods until the controller made `default`.
        watch_until(
            core.list_namespaced_service_account,
            lambda sa: True,
            timeout=60,
            what=f"ServiceAccount {name}/default",
            describe=lambda sa: f"ServiceAccount {sa.metadata.name}",
            namespace=name,
            field_selector="metadata.name=default",
        )
        yield name
    finally:
        try:
            # Background propagation, no wait: the next test needs no cleanup to have finished.
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise


@dataclass
class RealNodeHandle:
    """The session's real node, the images on it, and namespaces whose pods run there."""

    kube: Kube
    node: RealNode
    images: Images

    def namespace(self, prefix: str = "rp") -> str:
        """A fresh `restricted` namespace whose pods are placed on the real node (by annotations the
        API server's admission plugins read); its name carries no safety token such as `test`."""
        core = client.CoreV1Api(self.kube.api)
        name = f"{prefix}-{secrets.token_hex(4)}"
        core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(
                    name=name, labels=dict(RESTRICTED), annotations=dict(NAMESPACE_ANNOTATIONS)
                )
            )
        )
        watch_until(
            core.list_namespaced_service_account,
            lambda sa: True,
            timeout=60,
            what=f"ServiceAccount {name}/default",
            describe=lambda sa: f"ServiceAccount {sa.metadata.name}",
            namespace=name,
            field_selector="metadata.name=default",
        )
        return name

    def forward(self, port: int) -> tuple[str, int]:
        """(host, port) where pods reach a service this machine runs on 127.0.0.1:`port`."""
        return self.node.forward(port)


@pytest.fixture(scope="session")
def real_node(kube: Kube) -> Iterator[RealNodeHandle]:
    """One real kubelet node beside the KWOK nodes, for the whole session (see the module docstring)."""
    if kube.cluster is None:
        pytest.skip("KUBECONFIG names another cluster: the real-node harness runs on the local testbed only")
    try:
        built = load_images()
        paths.node_binary("kubelet")
    except (ImagesNotBuiltError, paths.TestbedNotBuiltError) as exc:
        pytest.fail(f"{exc}\n(`make test` builds both)", pytrace=False)
    node = RealNode(kube.cluster)
    node.up(images=built.tarball)
    try:
        yield RealNodeHandle(kube, node, built)
    finally:
        node.down()
