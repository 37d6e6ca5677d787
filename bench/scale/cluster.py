"""The bench's cluster: its API clients, the objects every phase needs, FlaskApp bodies, a Ready tracker,
and the CPU seconds of the testbed's own processes (kube-apiserver, etcd, ...) read from /proc."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.common import ROOT, cpu_seconds, log, parallel

GROUP, VERSION, PLURAL = "flaskops.dev", "v1alpha1", "flaskapps"
SERVER = "bench"
ADMIN_NS, ADMIN_SECRET = "flaskops-system", "pg-admin"
IMAGE_V1 = "registry.example/guestbook:1.0.0"
IMAGE_V2 = "registry.example/guestbook:1.1.0"
BENCH_UA = "flaskops-bench"
# The control-plane processes whose CPU the bench reports (kwokctl's pid files are named after them).
COMPONENTS = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok-controller")


class Cluster:
    """The bench's own cluster and API clients (user agent flaskops-bench, so its requests are not counted).

    kubeconfig/audit_log: the testbed cluster's; cluster_dir: kwokctl's directory holding `pids/<component>.pid`.
    """

    def __init__(self, kubeconfig: Path, audit_log: Path, cluster_dir: Path | None = None) -> None:
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.audit_log = audit_log
        self.cluster_dir = cluster_dir
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = 32
        self.api = client.ApiClient(cfg)
        self.api.user_agent = BENCH_UA
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 600) -> str:
        from flaskops_testbed import paths

        out = subprocess.run(
            [str(paths.tool("kubectl")), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
        return out.stdout

    def namespace(self, name: str) -> None:
        self.kubectl("create", "namespace", name)

    def delete_namespaces(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            self.kubectl("delete", "namespace", *names, "--wait=true", "--timeout=1200s", timeout=1300)

    def release_flaskapps(self, namespace: str) -> int:
        """Remove every FlaskApp's finalizers in `namespace` (the operator is stopped, so nobody would run
        them; the bench drops the databases itself). Returns how many were patched."""
        items: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        held = [o["metadata"]["name"] for o in items["items"] if o["metadata"].get("finalizers")]
        parallel(
            held,
            lambda name: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"finalizers": None}}
            ),
            8,
        )
        return len(held)

    def component_pids(self) -> dict[str, int]:
        """{component: pid} from kwokctl's pid files; empty when the cluster directory is unknown."""
        out: dict[str, int] = {}
        if self.cluster_dir is None:
            return out
        for name in COMPONENTS:
            try:
                out[name] = int((self.cluster_dir / "pids" / f"{name}.pid").read_text().strip())
            except (OSError, ValueError):
                continue
        return out

    def cpu(self) -> dict[str, float]:
        """{component: CPU seconds used so far}; subtract two readings for a window."""
        return {name: cpu_seconds(pid) for name, pid in self.component_pids().items()}


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds per component between two `Cluster.cpu()` readings."""
    return {k: round(after[k] - before.get(k, 0.0), 2) for k in after}


def setup(cl: Cluster, pg: Any) -> None:
    """CRDs, the PostgreSQL admin Secret, the PostgresServer `bench`, and a /16 ServiceCIDR."""
    cl.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for crd in ("flaskapps.flaskops.dev", "postgresservers.flaskops.dev"):
        cl.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    cl.namespace(ADMIN_NS)
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": ADMIN_SECRET, "namespace": ADMIN_NS},
            "stringData": {"username": pg.superuser, "password": pg.password},
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PostgresServer",
            "metadata": {"name": SERVER},
            "spec": {
                "host": pg.host,
                "port": pg.port,
                "sslMode": "disable",
                "adminSecretRef": {"namespace": ADMIN_NS, "name": ADMIN_SECRET},
                "environments": ["production"],
            },
        },
        # kwokctl's Service range is a /24: 254 ClusterIPs, fewer than 500 apps (or 2 x 100 Helm releases)
        # need; a /16 holds the N = 1000 row.
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": {"name": "bench-extra"},
            "spec": {"cidrs": ["10.112.0.0/16"]},
        },
    ]
    cl.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def flaskapp(name: str, namespace: str, dbname: str, image: str = IMAGE_V1) -> dict[str, Any]:
    """A production FlaskApp with 1 replica on the bench's PostgresServer."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FlaskApp",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "environment": "production",
            "image": image,
            "replicas": 1,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
            "database": {"server": SERVER, "name": dbname},
        },
    }


def is_ready(obj: Mapping[str, Any], image: str) -> bool:
    """Ready=True for the current generation, serving `image`."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    if status.get("servingImage") != image:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])


class ReadyTracker:
    """Watches a namespace's FlaskApps and records when each first is Ready on `image` (epoch seconds)."""

    def __init__(self, cl: Cluster, namespace: str, image: str) -> None:
        self.cl, self.namespace, self.image = cl, namespace, image
        self.ready_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ReadyTracker:
        self._thread.start()
        return self

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            listing: Any = self.cl.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL
            )
            for obj in listing["items"]:
                self._see(obj)
            w = watch.Watch()
            try:
                for ev in w.stream(
                    self.cl.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=30,
                ):
                    if self._stop.is_set():
                        break
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._see(ev["object"])
            except Exception as exc:  # a dropped or expired watch: list again
                log(f"tracker: watch restarted ({type(exc).__name__})")
            finally:
                w.stop()

    def _see(self, obj: Mapping[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name not in self.ready_at and is_ready(obj, self.image):
            self.ready_at[name] = time.time()

    def wait(self, names: list[str], timeout: float) -> None:
        """Until every name is Ready; TimeoutError (saying how many were) after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last = -1
        while len(self.ready_at) < len(names):
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.ready_at)}/{len(names)} Ready after {timeout:.0f}s")
            if len(self.ready_at) != last and (len(self.ready_at) % max(1, len(names) // 5) == 0):
                last = len(self.ready_at)
                log(f"  {last}/{len(names)} Ready")
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
