"""The operator at scale against the Helm-hook way, on one fresh testbed cluster with the real PostgreSQL.

Per size N, in this order (the operator is stopped while Helm runs, and the cluster is emptied between
sizes, so each approach has the machine to itself):

1. floor, PostgreSQL: N x the operator's own provisioning SQL (`flaskops.postgres.server.ensure_database`) and N x a
   bare `CREATE DATABASE`, at the operator's provisioning concurrency.
2. the operator (a fresh `python -m flaskops` process): N FlaskApps created at once -> all Ready;
   60 s of steady state (API writes counted); an image upgrade of all N -> all Ready on the new image.
3. floor, API server: the minimum writes per app (2 Secrets, Job, Deployment, Service, one status patch)
   sent directly with the python client at the operator's worker count.
4. Helm: N x `helm install --wait` of the generated chart with the database hook Job (its SQL run by the
   bench, see helm_baseline), then `helm upgrade --wait` of all N to the new image, then N more installs
   with the databases created beforehand.

API requests come from the API server's audit log (Metadata level), split by user agent: the operator is
`flaskops-operator` (its own client) plus `kopf/...` (kopf's watches and its annotation/finalizer patches).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench import helm_baseline
from bench.common import ROOT, free_port, log, peak_rss_mib, percentile, rss_mib

GROUP, VERSION, PLURAL = "flaskops.dev", "v1alpha1", "flaskapps"
SERVER = "bench"
ADMIN_NS, ADMIN_SECRET = "flaskops-system", "pg-admin"
IMAGE_V1 = "registry.example/guestbook:1.0.0"
IMAGE_V2 = "registry.example/guestbook:1.1.0"
STEADY_SECONDS = 60
BENCH_UA = "flaskops-bench"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One event per request, when it completes (watches too, when they end).
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        # Node heartbeats and leader election: thousands of lines that belong to nobody we measure.
        {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/metrics"]},
        {"level": "Metadata"},
    ],
}


def who(user_agent: str) -> str:
    if user_agent.startswith("flaskops-operator") or user_agent.startswith("kopf/"):
        return "operator"
    if user_agent.lower().startswith("helm"):
        return "helm"
    if user_agent.startswith(BENCH_UA):
        return "bench"
    return "other"


# --- the cluster side ------------------------------------------------------------------------------------


class Cluster:
    """The bench's own cluster and API clients (user agent flaskops-bench, so its requests are not counted)."""

    def __init__(self, kubeconfig: Path, audit_log: Path) -> None:
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.audit_log = audit_log
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
            self.kubectl("delete", "namespace", *names, "--wait=true", "--timeout=600s", timeout=700)


def setup(cl: Cluster, pg: Any) -> None:
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
    ]
    # kwokctl's Service range is a /24: 254 ClusterIPs, fewer than 500 apps (or 2 x 100 Helm releases) need.
    docs.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": {"name": "bench-extra"},
            "spec": {"cidrs": ["10.112.0.0/16"]},
        }
    )
    cl.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def flaskapp(name: str, namespace: str, dbname: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FlaskApp",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "environment": "production",
            "image": IMAGE_V1,
            "replicas": 1,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
            "database": {"server": SERVER, "name": dbname},
        },
    }


def _ready(obj: Mapping[str, Any], image: str) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    if status.get("servingImage") != image:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])


class ReadyTracker:
    """Watches a namespace's FlaskApps and records when each first is Ready on `image`."""

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
        if name not in self.ready_at and _ready(obj, self.image):
            self.ready_at[name] = time.time()

    def wait(self, names: list[str], timeout: float) -> None:
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


# --- the operator as a process ---------------------------------------------------------------------------


class Operator:
    def __init__(self, kubeconfig: Path, log_path: Path) -> None:
        self.kubeconfig, self.log_path = kubeconfig, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.samples: list[tuple[float, float]] = []
        self._sampling = threading.Event()

    def start(self) -> None:
        import urllib.request

        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "FLASKOPS_WEBHOOK": "none",
            # Metrics on, as in the chart, on a port of its own (not the default a demo may hold).
            "FLASKOPS_METRICS_ADDR": "127.0.0.1",
            "FLASKOPS_METRICS_PORT": str(free_port()),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        }
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flaskops", f"--liveness=http://127.0.0.1:{self.port}/healthz"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited ({self.proc.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator was not healthy in 60s; see {self.log_path}")
            time.sleep(0.2)
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._sampling.is_set() and self.proc and self.proc.poll() is None:
            self.samples.append((time.time(), rss_mib(self.proc.pid)))
            time.sleep(1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> float:
        """Stop; returns the peak RSS in MiB, read just before."""
        self._sampling.set()
        peak = peak_rss_mib(self.pid)
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return peak


class Profiler:
    """py-spy sampling the operator (non-blocking, so it does not pause it), raw collapsed stacks."""

    def __init__(self, pid: int, out: Path) -> None:
        from shutil import which

        exe = Path(sys.executable).parent / "py-spy"
        self.exe = str(exe) if exe.exists() else which("py-spy")
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        if self.exe:
            self.proc = subprocess.Popen(
                [
                    *(self.exe, "record", "--pid", str(pid), "--rate", "50", "--nonblocking"),
                    *("--format", "raw", "--output", str(out)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> Path | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.out if self.out.exists() else None


# --- the audit log ---------------------------------------------------------------------------------------


def audit_files(path: Path) -> list[Path]:
    """The audit log and its rotated parts (kube-apiserver renames it to audit-<time>.log at 100 MB)."""
    return sorted(path.parent.glob(f"{path.stem}*{path.suffix}"), key=lambda p: p.stat().st_mtime)


def read_audit(paths: Iterable[Path]) -> list[tuple[float, str, str, str]]:
    """(time, who, verb, resource) for every audited request."""
    out = []
    for path in paths:
        with path.open() as fh:
            for line in fh:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                ts = datetime.fromisoformat(ev["requestReceivedTimestamp"]).timestamp()
                ref = ev.get("objectRef") or {}
                resource = ref.get("resource", ev.get("requestURI", "?").split("?")[0])
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                out.append((ts, who(ev.get("userAgent", "")), ev.get("verb", "?"), resource))
    return out


def count(events: list[tuple[float, str, str, str]], t0: float, t1: float, actor: str) -> dict[str, Any]:
    window = [e for e in events if t0 <= e[0] <= t1 and e[1] == actor]
    verbs = Counter(e[2] for e in window)
    by_resource = Counter(f"{e[2]} {e[3]}" for e in window)
    return {
        "total": len(window),
        "writes": sum(n for v, n in verbs.items() if v in WRITE_VERBS),
        "verbs": dict(verbs),
        "by_resource": dict(by_resource.most_common(25)),
    }


# --- phases ----------------------------------------------------------------------------------------------


def parallel(items: list[Any], fn: Callable[[Any], Any], workers: int) -> list[Any]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _stats(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies) if latencies else 0.0,
    }


def admin(pg: Any) -> Any:
    from flaskops.postgres import server

    return server.AdminConnection(
        host=pg.host, port=pg.port, sslmode="disable", username=pg.superuser, password=pg.password
    )


def provision(pg: Any, dbname: str) -> None:
    """The operator's provisioning SQL for one app (role, database, revoke, stamp)."""
    from flaskops import ownership
    from flaskops.postgres import server

    owner = ownership.Owner("bench", dbname, f"uid-{dbname}", "production")
    server.ensure_database(
        admin(pg), ownership.Claim(owner, dbname, dbname), server.generate_password(), set_password=True
    )


def pg_floor(pg: Any, n: int, concurrency: int, prefix: str) -> dict[str, Any]:
    from psycopg import sql

    names = [f"{prefix}_full_{i:04d}" for i in range(n)]
    t0 = time.time()
    parallel(names, lambda d: provision(pg, d), concurrency)
    full = time.time() - t0
    bare = [f"{prefix}_bare_{i:04d}" for i in range(n)]

    def create(d: str) -> None:
        with pg.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(d)))

    t0 = time.time()
    parallel(bare, create, concurrency)
    only = time.time() - t0
    return {"concurrency": concurrency, "ensure_database_s": full, "create_database_s": only}


def api_floor(cl: Cluster, n: int, workers: int, namespace: str) -> dict[str, Any]:
    """The minimum writes per app, sent directly: 2 Secrets, Job, Deployment, Service, 1 status patch."""
    from flaskops import manifests
    from flaskops.spec import parse_flaskapp

    cl.namespace(namespace)
    names = [f"app-{i:04d}" for i in range(n)]
    bodies = parallel(
        names,
        lambda nm: cl.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, flaskapp(nm, namespace, f"floor_{nm}".replace("-", "_"))
        ),
        workers,
    )
    specs = [parse_flaskapp(b) for b in bodies]

    def writes(app: Any) -> None:
        cl.core.create_namespaced_secret(
            namespace, manifests.secret(app, f"{app.name}-db", "db-credentials", {"DATABASE_URL": "x"})
        )
        cl.core.create_namespaced_secret(
            namespace, manifests.secret(app, f"{app.name}-secret-key", "secret-key", {"SECRET_KEY": "x"})
        )
        cl.batch.create_namespaced_job(namespace, manifests.migration_job(app))
        cl.apps.create_namespaced_deployment(namespace, manifests.deployment(app, app.image, "0"))
        cl.core.create_namespaced_service(namespace, manifests.service(app))
        cl.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, app.name, {"status": {"observedGeneration": 1}}
        )

    t0 = time.time()
    parallel(specs, writes, workers)
    return {"workers": workers, "writes_per_app": 6, "total_s": time.time() - t0}


def operator_phase(
    cl: Cluster, pg: Any, n: int, work: Path, profile: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    ns = f"op-{n}"
    cl.namespace(ns)
    names = [f"app-{i:04d}" for i in range(n)]
    op = Operator(cl.kubeconfig, work / f"operator-{n}.log")
    op.start()
    rss_idle = rss_mib(op.pid)
    profiler = Profiler(op.pid, work / f"profile-{n}.txt") if profile else None
    cpu0 = op.cpu_seconds()
    tracker = ReadyTracker(cl, ns, IMAGE_V1).start()
    log(f"operator: creating {n} FlaskApps at once")
    t0 = time.time()
    created: dict[str, float] = {}

    def create(name: str) -> None:
        cl.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, flaskapp(name, ns, f"op{n}_{name}".replace("-", "_"))
        )
        created[name] = time.time()

    parallel(names, create, 8)
    t_applied = time.time()
    tracker.wait(names, timeout=60 + 3 * n)
    t1 = time.time()
    tracker.stop()
    cpu_create = op.cpu_seconds() - cpu0
    profile_path = profiler.stop() if profiler else None
    latencies = [tracker.ready_at[nm] - created[nm] for nm in names]
    log(f"operator: {n} Ready in {t1 - t0:.1f}s; steady state for {STEADY_SECONDS}s")
    time.sleep(STEADY_SECONDS)
    t2 = time.time()

    log(f"operator: upgrading {n} FlaskApps to {IMAGE_V2}")
    tracker = ReadyTracker(cl, ns, IMAGE_V2).start()
    u0 = time.time()
    patched: dict[str, float] = {}

    def upgrade(name: str) -> None:
        cl.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, {"spec": {"image": IMAGE_V2}}
        )
        patched[name] = time.time()

    parallel(names, upgrade, 8)
    tracker.wait(names, timeout=60 + 3 * n)
    u1 = time.time()
    tracker.stop()
    up_latencies = [tracker.ready_at[nm] - patched[nm] for nm in names]
    time.sleep(2)
    peak = op.stop()
    result = {
        "create": {
            "t0": t0,
            "t1": t1,
            "total_s": t1 - t0,
            "apply_s": t_applied - t0,
            **_stats(latencies),
            "latency_s": sorted(latencies),
        },
        "steady": {"t0": t1, "t1": t2, "seconds": t2 - t1},
        "upgrade": {"t0": u0, "t1": u1, "total_s": u1 - u0, **_stats(up_latencies)},
        "rss_mib": {"idle": rss_idle, "peak": peak, "samples": op.samples[::5]},
        "cpu_s_create": cpu_create,
        "profile": str(profile_path) if profile_path else None,
    }
    return result, {"namespace": ns, "names": names}


def helm_phase(cl: Cluster, pg: Any, n: int, work: Path, concurrency: int) -> dict[str, Any]:
    from flaskops_testbed import paths

    helm_bin = paths.tool("helm")
    chart = helm_baseline.write_chart(work / "chart")
    names = [f"app-{i:04d}" for i in range(n)]
    out: dict[str, Any] = {"concurrency": concurrency}

    def install(ns: str, create_db: bool) -> Callable[[str], None]:
        def action(name: str) -> None:
            dbname = f"{ns}_{name}".replace("-", "_")
            if create_db:
                provision(pg, dbname)  # what the createdb hook's container would execute
            r = helm_baseline.helm(
                helm_bin,
                cl.kubeconfig,
                "install",
                name,
                str(chart),
                "-n",
                ns,
                "--wait",
                "--timeout",
                "15m",
                "--set",
                f"image={IMAGE_V1}",
                "--set",
                f"createDatabase={'true' if create_db else 'false'}",
                "--set",
                f"dbName={dbname}",
                "--set",
                f"databaseUrl={pg.url(dbname)}",
                "--set",
                "secretKey=" + "k" * 48,
            )
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip())

        return action

    def upgrade(ns: str) -> Callable[[str], None]:
        def action(name: str) -> None:
            r = helm_baseline.helm(
                helm_bin,
                cl.kubeconfig,
                "upgrade",
                name,
                str(chart),
                "-n",
                ns,
                "--wait",
                "--timeout",
                "15m",
                "--reuse-values",
                "--set",
                f"image={IMAGE_V2}",
            )
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip())

        return action

    ns = f"helm-{n}"
    cl.namespace(ns)
    log(f"helm: {n} x helm install --wait with the database hook Job (concurrency {concurrency})")
    out["install_hook_db"] = helm_baseline.run_many(names, install(ns, True), concurrency, "helm install")
    log(f"helm: done in {out['install_hook_db']['total_s']:.1f}s; {n} x helm upgrade --wait")
    out["upgrade"] = helm_baseline.run_many(names, upgrade(ns), concurrency, "helm upgrade")
    log(f"helm: done in {out['upgrade']['total_s']:.1f}s; databases beforehand, then {n} x helm install")
    ns2 = f"helmpre-{n}"
    cl.namespace(ns2)
    t0 = time.time()
    parallel([f"{ns2}_{nm}".replace("-", "_") for nm in names], lambda d: provision(pg, d), 4)
    out["precreate_databases_s"] = time.time() - t0
    out["install_precreated"] = helm_baseline.run_many(
        names, install(ns2, False), concurrency, "helm install (databases beforehand)"
    )
    log(f"helm: done in {out['install_precreated']['total_s']:.1f}s")
    for key in ("install_hook_db", "upgrade", "install_precreated"):
        out[key].update(_stats(out[key]["latency_s"]))
        out[key]["duration_p50_s"] = percentile(out[key]["duration_s"], 50)
        del out[key]["duration_s"]
    out["namespaces"] = [ns, ns2]
    return out


def drop_databases(pg: Any, prefix: str) -> None:
    rows = pg.execute(f"SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'")  # noqa: S608
    roles = pg.execute(f"SELECT rolname FROM pg_roles WHERE rolname LIKE '{prefix}%'")  # noqa: S608

    def drop(d: str) -> None:
        pg.drop_database(d)

    parallel([r[0] for r in rows], drop, 4)
    for (role,) in roles:
        pg.execute(f'DROP ROLE IF EXISTS "{role}"')


def run_size(
    cl: Cluster, pg: Any, n: int, work: Path, *, profile: bool, helm_concurrency: int, operator_only: bool
) -> dict[str, Any]:
    from flaskops import settings

    cfg = settings.from_env()
    result: dict[str, Any] = {"n": n}
    if operator_only:  # before/after comparisons of an operator change
        result["operator"], meta = operator_phase(cl, pg, n, work, profile)
        cl.delete_namespaces([meta["namespace"]])
        drop_databases(pg, f"op{n}_")
        return result
    log(f"=== N = {n}: PostgreSQL floor")
    result["pg_floor"] = pg_floor(pg, n, cfg.provision_concurrency, f"floor{n}")
    drop_databases(pg, f"floor{n}")
    op, meta = operator_phase(cl, pg, n, work, profile)
    result["operator"] = op
    log(f"=== N = {n}: API floor")
    result["api_floor"] = api_floor(cl, n, cfg.max_workers, f"floor-{n}")
    log("deleting the operator's and the floor's namespaces")
    cl.delete_namespaces([meta["namespace"], f"floor-{n}"])
    result["helm"] = helm_phase(cl, pg, n, work, helm_concurrency)
    log("deleting the Helm namespaces")
    cl.delete_namespaces(result["helm"].pop("namespaces"))
    drop_databases(pg, f"op{n}_")
    drop_databases(pg, "helm")
    result["settings"] = {
        "max_workers": cfg.max_workers,
        "provision_concurrency": cfg.provision_concurrency,
        "helm_concurrency": helm_concurrency,
        "replicas": 1,
        "steady_seconds": STEADY_SECONDS,
    }
    return result


def attach_audit(cl: Cluster, results: list[dict[str, Any]]) -> None:
    events = read_audit(audit_files(cl.audit_log))
    for r in results:
        n = r["n"]
        op = r["operator"]
        op["api"] = {
            "create": count(events, op["create"]["t0"], op["create"]["t1"], "operator"),
            "steady": count(events, op["steady"]["t0"], op["steady"]["t1"], "operator"),
            "upgrade": count(events, op["upgrade"]["t0"], op["upgrade"]["t1"], "operator"),
        }
        op["api"]["steady"]["writes_per_minute"] = (
            op["api"]["steady"]["writes"] * 60 / op["steady"]["seconds"]
        )
        for phase in ("create", "upgrade"):
            op["api"][phase]["per_app"] = {
                v: round(k / n, 2) for v, k in sorted(op["api"][phase]["verbs"].items())
            }
        h = r.get("helm")
        if h is None:
            continue
        for phase in ("install_hook_db", "upgrade", "install_precreated"):
            if phase not in h:
                continue
            c = count(events, h[phase]["t0"], h[phase]["t1"], "helm")
            c["per_app"] = {v: round(k / n, 2) for v, k in sorted(c["verbs"].items())}
            h[phase]["api"] = c


def run(
    pg: Any,
    work: Path,
    sizes: list[int],
    *,
    profile: bool,
    helm_concurrency: int,
    operator_only: bool = False,
    cluster_name: str = "bench",
) -> dict[str, Any]:
    from flaskops_testbed import cluster as kwok

    policy = work / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    name = cluster_name
    kwok.stop(name)  # a fresh cluster every run
    log("starting the bench cluster (audit log on)")
    # A KWOK node takes 110 pods, like a kubelet's default; the Helm phase keeps two sets of N apps
    # (plus surge pods during upgrades), so size the cluster for it or pods stay Pending.
    nodes = max(2, math.ceil(2.5 * max(sizes) / 110) + 1)
    kc = kwok.start(name, nodes=nodes, audit_policy=policy)
    try:
        cl = Cluster(kc.kubeconfig, kc.audit_log)
        setup(cl, pg)
        results = []
        errors = []
        for n in sizes:
            try:
                results.append(
                    run_size(
                        cl,
                        pg,
                        n,
                        work,
                        profile=profile and n == max(sizes),
                        helm_concurrency=helm_concurrency,
                        operator_only=operator_only,
                    )
                )
            except Exception as exc:  # keep the sizes that finished; say what broke
                log(f"N = {n} failed: {exc!r}")
                errors.append(f"N = {n}: {exc!r}")
            (work / "partial.json").write_text(json.dumps(results, default=str))
        attach_audit(cl, results)
        audit_bytes = sum(p.stat().st_size for p in audit_files(kc.audit_log))
    finally:
        kwok.stop(name)
    return {"sizes": results, "audit_log_bytes": audit_bytes, "errors": errors}
