"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, controller-manager, scheduler, KWOK.

kwokctl runs the built binaries directly (`--runtime binary`), so the API server is an ordinary
process on loopback: Pod Security admission and RBAC are on (kwokctl's defaults for a secure port),
and it can call admission webhooks served on 127.0.0.1. KWOK simulates two nodes and the pod
lifecycle through the stages extracted at build time (see testbed/build.sh).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flaskops_testbed import paths

DEFAULT_NAME = "flaskops"


def log(message: str) -> None:
    """Progress on stderr: cluster start is the slow step a person waits on."""
    print(f"testbed: {message}", file=sys.stderr, flush=True)


class ClusterError(RuntimeError):
    """The local cluster could not be started or stopped; the message says where its logs are."""


@dataclass
class KwokCluster:
    """One local cluster, named so that several (demo, tests) can coexist on one machine."""

    name: str = DEFAULT_NAME
    nodes: int = 2
    # Extra kube-apiserver flags, without the leading "--" (e.g. {"audit-log-maxsize": "100"}).
    extra_apiserver_args: Mapping[str, str] = field(default_factory=dict)
    # Extra kube-controller-manager flags, likewise (the bench raises its client's QPS, see bench/scale).
    extra_controller_manager_args: Mapping[str, str] = field(default_factory=dict)
    # An audit policy file; kwokctl then writes the audit log to `audit_log`.
    audit_policy: Path | None = None

    @property
    def state_dir(self) -> Path:
        return paths.state_dir(self.name)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def kwok_workdir(self) -> Path:
        # KWOK_WORKDIR: kwokctl keeps each cluster in <workdir>/clusters/<name>.
        return self.state_dir / "kwok"

    @property
    def cluster_dir(self) -> Path:
        return self.kwok_workdir / "clusters" / self.name

    @property
    def logs_dir(self) -> Path:
        return self.cluster_dir / "logs"

    @property
    def audit_log(self) -> Path:
        return self.logs_dir / "audit.log"

    def env(self) -> dict[str, str]:
        """The environment for kwokctl and kubectl: our binaries first on PATH, our workdir."""
        env = dict(os.environ)
        # kwokctl shells out to `kubectl` and downloads one when none is on PATH; use ours.
        env["PATH"] = f"{paths.bin_dir()}{os.pathsep}{env.get('PATH', '')}"
        env["KWOK_WORKDIR"] = str(self.kwok_workdir)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def _kwokctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(paths.binary("kwokctl")), "--name", self.name, *args]
        result = subprocess.run(argv, env=self.env(), capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ClusterError(
                f"`{' '.join(argv)}` failed with exit code {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\nComponent logs: {self.logs_dir}"
            )
        return result

    def _kubectl(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        argv = [str(paths.binary("kubectl")), "--kubeconfig", str(self.kubeconfig), *args]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)

    def config_documents(self) -> list[dict[str, object]]:
        """The kwokctl configuration plus the full KWOK stage set, as kwokctl reads them."""
        b = paths.binary
        options: dict[str, object] = {
            "runtime": "binary",
            # Everything listens on loopback only: nothing on this machine is meant for others.
            "bindAddress": "127.0.0.1",
            "kubeVersion": paths.versions()["KUBERNETES_VERSION"],
            "kubeApiserverBinary": str(b("kube-apiserver")),
            "kubeControllerManagerBinary": str(b("kube-controller-manager")),
            "kubeSchedulerBinary": str(b("kube-scheduler")),
            "kubectlBinary": str(b("kubectl")),
            "etcdBinary": str(b("etcd")),
            "kwokControllerBinary": str(b("kwok")),
            # Stated, not defaulted: the tests rely on RBAC and Pod Security admission being real.
            "securePort": True,
            "kubeAuthorization": True,
            "kubeAdmission": True,
        }
        if self.audit_policy is not None:
            options["kubeAuditPolicy"] = str(Path(self.audit_policy).resolve())
        # Pods on the real node reach the API server at the `kubernetes` Service's ClusterIP (node.py
        # forwards it to loopback): the serving certificate must name that address.
        from flaskops_testbed import node  # node.py builds on this module

        options["kubeApiserverCertSANs"] = [node.KUBERNETES_SERVICE_IP]
        config: dict[str, object] = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": options,
        }
        apiserver_args = {
            **self.real_node_apiserver_args(),
            **self.webhook_client_apiserver_args(),
            **self.extra_apiserver_args,
        }
        config["componentsPatches"] = [
            {
                "name": "kube-apiserver",
                "extraArgs": [{"key": k, "value": v} for k, v in apiserver_args.items()],
            },
            {
                "name": "kube-controller-manager",
                "extraArgs": [{"key": k, "value": v} for k, v in self.extra_controller_manager_args.items()],
            },
            {
                # kwokctl starts KWOK with --manage-all-nodes=true, which would take over the real node;
                # its own nodes carry this annotation. (The later flag wins.)
                "name": "kwok-controller",
                "extraArgs": [
                    {"key": "manage-all-nodes", "value": "false"},
                    {"key": "manage-nodes-with-annotation-selector", "value": "kwok.x-k8s.io/node=fake"},
                ],
            },
        ]
        # Any Stage in the configuration replaces all of kwokctl's defaults, so these are the full set.
        stages = [d for d in yaml.safe_load_all(paths.stages_file().read_text()) if d]
        return [config, *stages]

    def real_node_apiserver_args(self) -> dict[str, str]:
        """API server flags the real node needs (harmless without one, so every cluster gets them).

        - a client certificate for calls to kubelets (logs, exec): kwokctl's admin one, which the
          kubelet trusts through the cluster CA and authorizes (system:masters) by webhook;
        - the Service range that node.py's ClusterIP address comes from;
        - webhook and aggregated API calls to endpoints (pod IPs), not ClusterIPs: no kube-proxy here;
        - node selector and tolerations from namespace annotations (node.NAMESPACE_ANNOTATIONS), so
          the operator's own Deployments and Jobs land on the real node unchanged.
        """
        from flaskops_testbed import node  # node.py builds on this module

        pki = self.cluster_dir / "pki"
        return {
            "kubelet-client-certificate": str(pki / "admin.crt"),
            "kubelet-client-key": str(pki / "admin.key"),
            "service-cluster-ip-range": node.SERVICE_CIDR,
            "enable-aggregator-routing": "true",
            "enable-admission-plugins": "PodNodeSelector,PodTolerationRestriction",
        }

    @property
    def webhook_client_dir(self) -> Path:
        """ca.crt (give it to the operator: FLASKOPS_WEBHOOK_CLIENT_CA) and the API server's client pair."""
        return self.state_dir / "webhook-client"

    def webhook_client_apiserver_args(self) -> dict[str, str]:
        """The API server presents a client certificate to every admission webhook it calls.

        What a cluster admin does so that a webhook can tell the API server from any pod that reaches
        its port (Kubernetes: "Authenticate apiservers" in Dynamic Admission Control): an
        AdmissionConfiguration whose kubeconfig gives the user "*" (every webhook) a client certificate,
        here from a CA of its own (webhook_client_dir/ca.crt). Webhooks that ask for no client
        certificate are unaffected.
        """
        from flaskops_testbed import webhook_client  # needs `cryptography`: imported only to start one

        admission_config = webhook_client.write(self.webhook_client_dir)
        return {"admission-control-config-file": str(admission_config)}

    def exists(self) -> bool:
        return (self.cluster_dir / "kwok.yaml").exists()

    def is_healthy(self) -> bool:
        """The API server answers /readyz with our kubeconfig."""
        if not self.kubeconfig.exists():
            return False
        try:
            return self._kubectl("get", "--raw", "/readyz", timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def up(self, timeout: float = 180) -> KwokCluster:
        """Start the cluster (or reuse a healthy one of this name) and wait until its nodes are Ready."""
        started = time.monotonic()
        config_path = self.state_dir / "kwokctl.yaml"
        if self.exists() and self.is_healthy() and config_path.exists():
            documents = yaml.safe_dump_all(self.config_documents(), sort_keys=False)
            if config_path.read_text() != documents:
                # Started by an older testbed or with other flags (e.g. before the webhook client
                # certificate): a test relying on the new configuration would fail against it.
                log(f"cluster {self.name!r} runs with another configuration; recreating it")
                self.down()
        if self.exists():
            if self.is_healthy():
                log(f"cluster {self.name!r} already running ({self.kubeconfig})")
                self._scale_and_wait(started, timeout)
                return self
            log(f"cluster {self.name!r} exists but does not answer; recreating it")
            self.down()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump_all(self.config_documents(), sort_keys=False))
        log(f"starting cluster {self.name!r} (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
        self._kwokctl(
            "--config",
            str(config_path),
            "create",
            "cluster",
            # Explicit although the config says so: a docker client on PATH would be tried first.
            "--runtime",
            "binary",
            "--kubeconfig",
            str(self.kubeconfig),
            # kwokctl waits for the API server itself; our own wait below covers nodes and controllers.
            "--wait",
            f"{int(timeout)}s",
        )
        log(f"control plane up after {time.monotonic() - started:.1f}s")
        self._scale_and_wait(started, timeout)
        return self

    def _scale_and_wait(self, started: float, timeout: float) -> None:
        self._kwokctl("scale", "node", "--replicas", str(self.nodes))
        self._wait_ready(deadline=started + timeout)
        log(f"cluster {self.name!r} ready with {self.nodes} nodes after {time.monotonic() - started:.1f}s")

    def _wait_ready(self, deadline: float) -> None:
        """Wait until all nodes are Ready and the controllers have created the default ServiceAccount."""
        # Imported here so that `python -m flaskops_testbed down` works without the client installed.
        from kubernetes import client

        from flaskops_testbed.waiting import NotYet, api_client, wait_for, watch_until

        api = api_client(self.kubeconfig)
        core = client.CoreV1Api(api)

        def nodes_ready() -> bool:
            # KWOK's nodes only: a real node (node.py) joins later, and a stopped one may linger NotReady.
            nodes = [
                n
                for n in core.list_node().items
                if ((n.metadata and n.metadata.annotations) or {}).get("kwok.x-k8s.io/node") == "fake"
            ]
            if len(nodes) >= self.nodes and all(_node_ready(n) for n in nodes):
                return True
            states = ", ".join(f"{n.metadata and n.metadata.name} Ready={_node_ready(n)}" for n in nodes)
            raise NotYet(states or "no nodes")

        try:
            # A poll, not a watch: the condition spans all nodes, and this runs once per cluster start.
            wait_for(
                nodes_ready,
                timeout=max(1.0, deadline - time.monotonic()),
                what=f"{self.nodes} Ready nodes in cluster {self.name!r}",
                interval=0.25,
            )
            # Pods are refused until the ServiceAccount controller has made `default` in their namespace;
            # this proves kube-controller-manager is running, not only the API server.
            watch_until(
                core.list_namespaced_service_account,
                lambda sa: sa.metadata.name == "default",
                timeout=max(1.0, deadline - time.monotonic()),
                what="ServiceAccount default/default (kube-controller-manager running)",
                namespace="default",
                field_selector="metadata.name=default",
            )
        except TimeoutError as exc:
            raise ClusterError(f"{exc}\nComponent logs: {self.logs_dir}") from exc
        finally:
            api.close()

    def _component_pids(self) -> list[int]:
        pids = []
        for pid_file in (self.cluster_dir / "pids").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(pid_file.read_text().strip()))
        return pids

    def down(self, timeout: float = 30) -> None:
        """Stop every component and remove the cluster's state; leaves no process behind."""
        from flaskops_testbed import node  # node.py builds on this module

        if node.owner() == self.name:
            # Its kubelet would otherwise keep calling an API server that is gone.
            node.stop_node(self)
        pids = self._component_pids()
        if self.exists():
            log(f"stopping cluster {self.name!r}")
            self._kwokctl("delete", "cluster", check=False)
        # kwokctl kills what its pid files name; make sure, and finish what it left (we started them).
        deadline = time.monotonic() + timeout
        while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            time.sleep(0.05)  # the kernel needs a moment to tear a killed process down
        if alive:
            raise ClusterError(f"processes {alive} of cluster {self.name!r} survived SIGKILL")
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def status(self) -> str:
        """One line for `python -m flaskops_testbed status`."""
        if not self.exists():
            return f"cluster {self.name!r}: not created"
        running = [p for p in self._component_pids() if _alive(p)]
        health = "healthy" if self.is_healthy() else "NOT answering"
        return (
            f"cluster {self.name!r}: {health}, {len(running)} component processes, "
            f"KUBECONFIG={self.kubeconfig}"
        )


def _node_ready(node: object) -> bool:
    conditions = getattr(getattr(node, "status", None), "conditions", None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _alive(pid: int) -> bool:
    """True for a live process; a zombie (killed, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def live_clusters() -> list[str]:
    """Names of the local clusters (of this FLASKOPS_CACHE) that have a component process running."""
    root = paths.cache_dir() / "state"
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [n for n in names if any(_alive(pid) for pid in KwokCluster(name=n)._component_pids())]


OWNER_FILE = "owner.pid"


def claim(cluster: KwokCluster) -> None:
    """Record this process as the cluster's owner, so `reap_orphans` can tell when it died."""
    cluster.state_dir.mkdir(parents=True, exist_ok=True)
    (cluster.state_dir / OWNER_FILE).write_text(f"{os.getpid()}\n")


def reap_orphans(prefix: str) -> list[str]:
    """Stop clusters named `prefix*` whose owning process is gone (a test session that was killed)."""
    root = paths.cache_dir() / "state"
    reaped = []
    for state in sorted(root.glob(f"{prefix}*")) if root.is_dir() else []:
        try:
            owner = int((state / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not claimed by a session: someone started it by hand, leave it alone
        if not _alive(owner):
            log(f"stopping cluster {state.name!r}: its test session (pid {owner}) is gone")
            KwokCluster(name=state.name).down()
            reaped.append(state.name)
    return reaped


def start(
    name: str = DEFAULT_NAME,
    *,
    nodes: int = 2,
    extra_apiserver_args: Mapping[str, str] | None = None,
    extra_controller_manager_args: Mapping[str, str] | None = None,
    audit_policy: Path | None = None,
    timeout: float = 180,
) -> KwokCluster:
    """Start (or reuse) the named local cluster and return it once its nodes are Ready."""
    cluster = KwokCluster(
        name=name,
        nodes=nodes,
        extra_apiserver_args=dict(extra_apiserver_args or {}),
        extra_controller_manager_args=dict(extra_controller_manager_args or {}),
        audit_policy=audit_policy,
    )
    return cluster.up(timeout=timeout)


def stop(name: str = DEFAULT_NAME) -> None:
    """Stop the named local cluster if it exists."""
    KwokCluster(name=name).down()


def exported_env(cluster: KwokCluster) -> Sequence[str]:
    """Shell lines that point kubectl and helm at the cluster."""
    return [
        f"export KUBECONFIG={cluster.kubeconfig}",
        f"export PATH={paths.bin_dir()}:$PATH",
    ]
