"""`make demo`: the main job on the embedded default, start to Ready, with progress on the way.

Local PostgreSQL + local control plane (or the cluster in KUBECONFIG), the CRDs, the operator as a
background process, examples/postgresserver.yaml and examples/flaskapp.yaml applied, then a wait for
Ready that prints every condition change, and finally what `kubectl get/describe` show.

On the local testbed the app runs for real: a kubelet node (flaskops_testbed.node) runs the guestbook
image `make images` built, and the demo ends with a URL on 127.0.0.1 (a `kubectl port-forward` to the
Deployment) that it has itself fetched before printing. When the real node cannot start, the demo says
so and why, and goes on with KWOK's simulated pods, saying that nothing serves then.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flaskops_testbed import cluster as kwok
from flaskops_testbed import images, node, paths
from flaskops_testbed.operator_process import OperatorExited, OperatorProcess
from flaskops_testbed.ports import free_port
from flaskops_testbed.postgres import LocalPostgres, default_base_dir

ROOT = Path(__file__).resolve().parents[2]
# Names of the demo's own, never the README's `main` / `flaskops-system/pg-admin` (a user's cluster may
# well have those): the demo changes only objects that carry DEMO_LABELS.
NAMESPACE = "flaskops-demo"
APP = "guestbook"
SERVER = "flaskops-demo"
ADMIN_NAMESPACE = NAMESPACE
ADMIN_SECRET = "flaskops-demo-pg-admin"
DEMO_LABELS = {"app.kubernetes.io/created-by": "flaskops-demo"}
# What a user passes to let the demo use the cluster KUBECONFIG names (not the local testbed).
CONSENT_FLAG = "--use-kubeconfig-cluster"


class DemoRefused(RuntimeError):
    """The cluster holds objects with the demo's names that the demo did not create; nothing was changed."""


def log(message: str) -> None:
    kwok.log(f"demo: {message}")


def state_dir() -> Path:
    path = paths.cache_dir() / "demo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _kubectl(env: dict[str, str], *args: str, input: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        [str(paths.tool("kubectl")), *args], env=env, input=input, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def _apply(env: dict[str, str], body: dict[str, Any]) -> None:
    _kubectl(env, "apply", "-f", "-", input=yaml.safe_dump(body))


# --- the demo's own objects: checked before any write, labelled, removed by `make demo-down` ---------------


@dataclass(frozen=True)
class DemoObject:
    """One object the demo writes: its kubectl resource, name and namespace (None: cluster-scoped)."""

    resource: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        kind = self.resource.split(".")[0].rstrip("s")
        return f"{kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


# In the order they are created; removed in reverse.
DEMO_OBJECTS = (
    DemoObject("namespaces", NAMESPACE),
    DemoObject("secrets", ADMIN_SECRET, ADMIN_NAMESPACE),
    DemoObject("postgresservers.flaskops.dev", SERVER),
    DemoObject("flaskapps.flaskops.dev", APP, NAMESPACE),
)


@dataclass(frozen=True)
class ServerAccess:
    """Where the operator and the pods reach the demo's PostgreSQL, and its admin credentials."""

    host: str
    port: int
    username: str
    password: str


def labelled(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the demo's labels added to its metadata (a copy)."""
    meta = dict(body.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), **DEMO_LABELS}
    return {**body, "metadata": meta}


def is_ours(body: dict[str, Any]) -> bool:
    labels = (body.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in DEMO_LABELS.items())


def get_object(env: dict[str, str], obj: DemoObject) -> dict[str, Any] | None:
    """The object as the API server has it, or None when it (or its CRD) does not exist."""
    args = ["get", obj.resource, obj.name, "-o", "json", "--ignore-not-found"]
    if obj.namespace:
        args += ["-n", obj.namespace]
    result = subprocess.run(
        [str(paths.tool("kubectl")), *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        if "doesn't have a resource type" in result.stderr:  # the CRD is not installed: no such object
            return None
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    found: dict[str, Any] | None = json.loads(result.stdout) if result.stdout.strip() else None
    return found


def not_ours(env: dict[str, str]) -> list[DemoObject]:
    """The demo's names that the cluster already uses for objects the demo did not create."""
    return [obj for obj in DEMO_OBJECTS if (body := get_object(env, obj)) is not None and not is_ours(body)]


def refusal(objects: list[DemoObject]) -> str:
    label = ",".join(f"{k}={v}" for k, v in DEMO_LABELS.items())
    return (
        f"refusing to run the demo: this cluster already has {', '.join(map(str, objects))} without the "
        f"label {label}. The demo did not create them and changes nothing it did not create; remove or "
        "rename them, or run the demo on the local testbed (unset KUBECONFIG)"
    )


def apply_crds(env: dict[str, str]) -> None:
    """Install the CRDs when they are missing (labelled as the demo's); installed ones of anyone else's
    are used as they are (a chart's CRDs may be of another version: the demo never rewrites them)."""
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        existing = get_object(env, DemoObject("customresourcedefinitions.apiextensions.k8s.io", name))
        if existing is not None and not is_ours(existing):
            log(f"CRD {name} is installed already (not by the demo): using it as it is")
            continue
        _kubectl(
            env,
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=flaskops-demo",
            "-f",
            "-",
            input=yaml.safe_dump(labelled(crd)),
        )
    for crd_name in ("flaskapps.flaskops.dev", "postgresservers.flaskops.dev"):
        _kubectl(env, "wait", "--for=condition=Established", f"crd/{crd_name}", "--timeout=60s")


def prepare_cluster_objects(
    env: dict[str, str], access: ServerAccess, namespace_annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """The demo's namespace, admin Secret and PostgresServer (and the CRDs when missing); returns the
    PostgresServer it applied.

    Raises DemoRefused, before writing anything, when any of the demo's names (DEMO_OBJECTS, the
    FlaskApp included) is taken by an object without DEMO_LABELS.
    """
    taken = not_ours(env)
    if taken:
        raise DemoRefused(refusal(taken))
    apply_crds(env)
    meta: dict[str, Any] = {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
    if namespace_annotations:
        meta["annotations"] = dict(namespace_annotations)  # its pods go to the real node
    _apply(env, labelled({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ADMIN_SECRET, "namespace": ADMIN_NAMESPACE},
        "stringData": {"username": access.username, "password": access.password},
    }
    _apply(env, labelled(secret))
    server = yaml.safe_load((ROOT / "examples" / "postgresserver.yaml").read_text())
    server["metadata"]["name"] = SERVER
    server["spec"].update(
        host=access.host,
        port=access.port,
        sslMode="disable",
        adminSecretRef={"namespace": ADMIN_NAMESPACE, "name": ADMIN_SECRET},
    )
    server = labelled(server)
    _apply(env, server)
    return server


def demo_flaskapp(image: str | None = None, env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """examples/flaskapp.yaml in the demo's namespace, on the demo's PostgresServer, labelled."""
    app = yaml.safe_load((ROOT / "examples" / "flaskapp.yaml").read_text())
    app["metadata"]["namespace"] = NAMESPACE
    app["spec"]["database"]["server"] = SERVER
    if image is not None:
        app["spec"]["image"] = image
    if env is not None:
        app["spec"]["env"] = env
    return labelled(app)


def remove_demo_objects(env: dict[str, str], timeout: float = 60) -> list[str]:
    """Delete the objects the demo created (DEMO_LABELS), FlaskApp first while the operator still runs
    (its finalizer); objects of those names without the labels are left alone. CRDs are kept: deleting
    one deletes every object of its kind, the demo's or not. Returns what was left, and why."""
    left: list[str] = []
    for obj in reversed(DEMO_OBJECTS):
        body = get_object(env, obj)
        if body is None:
            continue
        if not is_ours(body):
            left.append(f"{obj} (not created by the demo)")
            continue
        args = ["delete", obj.resource, obj.name, "--wait=false"]
        if obj.namespace:
            args += ["-n", obj.namespace]
        _kubectl(env, *args)
        if obj.resource.startswith("flaskapps."):
            wait = [
                "wait",
                "--for=delete",
                f"{obj.resource}/{obj.name}",
                "-n",
                NAMESPACE,
                f"--timeout={timeout:.0f}s",
            ]
            if (
                subprocess.run(
                    [str(paths.tool("kubectl")), *wait], env=env, capture_output=True, check=False
                ).returncode
                != 0
            ):
                left.append(
                    f"{obj} (still Terminating: the operator's finalizer runs when the operator does)"
                )
        log(f"deleted {obj}")
    return left


def webhook_env(client_ca: Path | None = None) -> dict[str, str]:
    """Serve the admission webhook on loopback with a self-made CA (the local API server can dial it).

    `client_ca`: the testbed API server's webhook client CA; the webhook then answers it alone.
    """
    env = {
        "FLASKOPS_WEBHOOK": "self",
        "FLASKOPS_WEBHOOK_ADDR": "127.0.0.1",
        "FLASKOPS_WEBHOOK_HOST": "127.0.0.1",
        "FLASKOPS_WEBHOOK_PORT": str(free_port()),
        "FLASKOPS_WEBHOOK_CERT_DIR": str(state_dir() / "webhook"),
    }
    if client_ca is not None and client_ca.exists():
        env["FLASKOPS_WEBHOOK_CLIENT_CA"] = str(client_ca)
    return env


def shared_cluster_operator_env() -> dict[str, str]:
    """The operator's settings on a cluster the demo shares: it sees only the demo's own PostgresServer
    (kopf would otherwise record its bookkeeping annotations on every PostgresServer of the cluster)."""
    return {"FLASKOPS_POSTGRESSERVER_SELECTOR": ",".join(f"{k}={v}" for k, v in DEMO_LABELS.items())}


def start_operator(env: dict[str, str], namespaced: bool = False) -> int:
    """The operator as a background process that outlives `make demo`; `make demo-down` stops it.

    ``namespaced``: it watches only the demo's namespace (kopf --namespace), as on a cluster that is not
    the local testbed, where other namespaces' FlaskApps are someone else's.
    """
    stop_operator()
    log_path = state_dir() / "operator.log"
    scope = [f"--namespace={NAMESPACE}"] if namespaced else []
    # /metrics on loopback, on a free port (the default 8081 may be taken on a developer's machine);
    # its own session, so it is not killed with make's process group.
    op = OperatorProcess(None, log_path, args=scope, base_env=env, new_session=True)
    try:
        op.start()
    except OperatorExited as exc:
        raise SystemExit(str(exc)) from None
    finally:
        if op.proc is not None and op.proc.poll() is None:
            (state_dir() / "operator.pid").write_text(str(op.pid))
            _started[op.pid] = op.proc
    log(f"operator running (pid {op.pid}, logs: {log_path}, metrics: {op.metrics_url})")
    return op.pid


def stop_operator() -> None:
    _stop_pid_file(state_dir() / "port-forward.pid")
    _stop_pid_file(state_dir() / "operator.pid")


# Processes this Python process started and has not reaped yet (pid -> Popen). `make demo` exits and
# leaves them to init; a caller that stops them itself (the tests) reaps them here, and so never leaves a
# zombie or a Popen that warns it was dropped while running.
_started: dict[int, subprocess.Popen[bytes]] = {}


def _stop_pid_file(pid_file: Path) -> None:
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    own = _started.pop(pid, None)
    try:
        os.kill(pid, signal.SIGTERM)
        if own is not None:
            try:
                own.wait(30)
            except subprocess.TimeoutExpired:
                own.kill()
                own.wait()
        else:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)


def _wait_ready(env: dict[str, str], timeout: float) -> None:
    """Print each condition change until Ready (the same thing `kubectl wait` waits for)."""
    seen: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout
    while True:
        out = _kubectl(env, "get", "flaskapp", APP, "-n", NAMESPACE, "-o", "json", check=False)
        conds = (
            {c["type"]: c for c in (json.loads(out).get("status") or {}).get("conditions", [])} if out else {}
        )
        for type_, c in conds.items():
            now = (c["status"], c["reason"])
            if seen.get(type_) != now:
                seen[type_] = now
                log(f"  {type_:<16} {c['status']:<6} {c['reason']}: {c['message']}")
        ready = conds.get("Ready", {})
        if ready.get("status") == "True":
            return
        if conds.get("Stalled", {}).get("status") == "True":
            raise SystemExit(f"the FlaskApp is stalled: {conds['Stalled']['message']}")
        if time.monotonic() > deadline:
            raise SystemExit(f"not Ready after {timeout:.0f}s; see {state_dir() / 'operator.log'}")
        time.sleep(0.5)


def is_testbed_kubeconfig(given: str) -> bool:
    """Whether every file of a KUBECONFIG value lies in the testbed's cache (a local testbed cluster)."""
    cache = paths.cache_dir().resolve()
    files = [Path(p).resolve() for p in given.split(os.pathsep) if p]
    return bool(files) and all(f.is_relative_to(cache) for f in files)


def consent_problem(given: str | None, consent: bool) -> str | None:
    """Why the demo may not use the cluster KUBECONFIG names, or None (none named, the testbed's, or
    the user passed CONSENT_FLAG)."""
    if not given or consent or is_testbed_kubeconfig(given):
        return None
    return (
        f"KUBECONFIG={given} names a cluster that is not the local testbed. On it the demo would create "
        f"namespace {NAMESPACE} (with Secret {ADMIN_SECRET}), PostgresServer {SERVER}, the flaskops CRDs "
        f"if they are missing, and run an operator watching namespace {NAMESPACE}; it changes nothing it "
        f"did not create. To allow that: `make demo DEMO_ARGS={CONSENT_FLAG}` (or "
        f"`python -m flaskops_testbed demo {CONSENT_FLAG}`); for the local testbed instead, unset KUBECONFIG"
    )


def run(cluster_name: str, use_kubeconfig_cluster: bool = False) -> int:
    started = time.monotonic()
    given = os.environ.get("KUBECONFIG")
    problem = consent_problem(given, use_kubeconfig_cluster)
    if problem is not None:
        raise SystemExit(problem)
    real: RealApp | None = None
    pg = LocalPostgres(default_base_dir())
    log(f"[1/6] PostgreSQL 15 on loopback (state in {pg.base_dir})")
    pg.start()
    client_ca: Path | None = None
    if given:
        log(f"[2/6] using the cluster in KUBECONFIG={given}")
        kubeconfig = given
    else:
        if not paths.is_built():
            raise SystemExit("testbed binaries missing: run `make testbed` (make demo does this first)")
        log("[2/6] local control plane: etcd, kube-apiserver, controller-manager, scheduler, KWOK nodes")
        cluster = kwok.start(cluster_name)
        kubeconfig = str(cluster.kubeconfig)
        real = _start_real_node(cluster)
        client_ca = cluster.webhook_client_dir / "ca.crt"
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{paths.bin_dir()}:{os.environ.get('PATH', '')}"}

    log(f"[3/6] CRDs, namespace {NAMESPACE}, its admin Secret {ADMIN_SECRET}, PostgresServer {SERVER}")
    access = ServerAccess(pg.host, pg.port, pg.superuser, pg.password)
    if real is not None:
        # Pods reach PostgreSQL (on loopback) through the node's forwarder on the bridge gateway.
        host, port = real.node.forward(pg.port)
        access = ServerAccess(host, port, pg.superuser, pg.password)
    try:
        prepare_cluster_objects(env, access, dict(node.NAMESPACE_ANNOTATIONS) if real is not None else None)
    except DemoRefused as refused:
        raise SystemExit(str(refused)) from None

    local = not given
    log(
        "[4/6] the operator (python -m flaskops)"
        + (" with its admission webhook on loopback" if local else "")
    )
    if local:
        start_operator({**env, **webhook_env(client_ca)})
    else:
        start_operator({**env, **shared_cluster_operator_env()}, namespaced=True)

    log(f"[5/6] kubectl apply -f examples/flaskapp.yaml -n {NAMESPACE} (server {SERVER}); waiting for Ready")
    app = (
        demo_flaskapp(
            real.images.guestbook,
            # Plain HTTP on loopback for your browser; in production TLS ends at an ingress in front.
            [{"name": "FORCE_HTTPS", "value": "false"}, {"name": "SESSION_COOKIE_SECURE", "value": "false"}],
        )
        if real is not None
        else demo_flaskapp()
    )
    _apply(env, app)
    _wait_ready(env, timeout=300)

    log(f"[6/6] Ready in {time.monotonic() - started:.1f}s. What a user sees:")
    print()
    print(f"$ kubectl get flaskapps -n {NAMESPACE}")
    print(_kubectl(env, "get", "flaskapps", "-n", NAMESPACE))
    print(f"$ kubectl get deploy,job,svc,secret -n {NAMESPACE}")
    print(_kubectl(env, "get", "deploy,job,svc,secret", "-n", NAMESPACE))
    print(f"$ kubectl describe flaskapp {APP} -n {NAMESPACE}   (conditions and events)")
    print(_kubectl(env, "describe", "flaskapp", APP, "-n", NAMESPACE))
    if local:
        _show_refusal(env)
    url = _serve_on_loopback(env, app) if real is not None else None
    # Only the local testbed falls back to KWOK; a KUBECONFIG cluster has real kubelets of its own.
    if real is None and local:
        print(
            "The pods above are SIMULATED (KWOK): no process runs the guestbook, so there is no URL to open."
        )
        print(f"(The real node did not start: {_real_node_failure or 'see above'})")
        print()
    print("Next:")
    print(f"  export KUBECONFIG={kubeconfig} PATH={paths.bin_dir()}:$PATH")
    print(f"  kubectl get flaskapps -n {NAMESPACE} -w          # watch it")
    print(f"  kubectl edit flaskapp {APP} -n {NAMESPACE}       # change spec.image: migrate, then roll")
    print(f"  tail -f {state_dir() / 'operator.log'}     # the operator's JSON logs")
    print("  make demo-down                                  # stop operator, cluster and PostgreSQL")
    if url is not None:
        print()
        print(f"The guestbook, served by the pods the operator deployed on a real kubelet node: {url}")
        print(f"  curl {url}api/entries")
    return 0


@dataclass
class RealApp:
    """The real node the demo's pods run on, and the images it holds."""

    node: node.RealNode
    images: images.Images


_real_node_failure = ""


def _start_real_node(cluster: kwok.KwokCluster) -> RealApp | None:
    """Start the real node with the project's images, or say plainly why not and return None."""
    global _real_node_failure
    try:
        built = images.load()
        paths.node_binary("kubelet")
        log("[2/6] a real kubelet node (containerd, bridge flaskops0) with the guestbook image")
        return RealApp(node.RealNode(cluster).up(images=built.tarball), built)
    except (images.ImagesNotBuiltError, paths.TestbedNotBuiltError, node.NodeError, OSError) as exc:
        _real_node_failure = str(exc).splitlines()[0]
        log(f"the real node could not start: {_real_node_failure}")
        log("going on with SIMULATED pods (KWOK): the app will look Ready, but no process serves it")
        return None


def _serve_on_loopback(env: dict[str, str], app: dict[str, Any]) -> str | None:
    """`kubectl port-forward` to the Deployment on a free loopback port; the URL once it answers."""
    import urllib.request

    port = free_port()
    log_path = state_dir() / "port-forward.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(paths.tool("kubectl")),
                "port-forward",
                "-n",
                NAMESPACE,
                f"deployment/{APP}",
                f"{port}:{app['spec']['port']}",
                "--address=127.0.0.1",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (state_dir() / "port-forward.pid").write_text(str(proc.pid))
    _started[proc.pid] = proc
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            print(f"kubectl port-forward did not serve the guestbook; see {log_path}")
            return None
        time.sleep(0.2)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/entries", timeout=5) as resp:
        body = resp.read().decode()
    print(f"$ curl {url}api/entries      # served by a real pod, through kubectl port-forward")
    print(body.strip())
    print()
    return url


def _show_refusal(env: dict[str, str]) -> None:
    """What a user meets when they get the pairing wrong: `kubectl apply` refuses, naming the rule."""
    unsafe = demo_flaskapp()
    unsafe["metadata"]["name"] = "guestbook-oops"
    unsafe["spec"]["database"]["name"] = "guestbook_test"
    deadline = time.monotonic() + 60
    while True:
        hooks = _kubectl(
            env, "get", "validatingwebhookconfiguration", "flaskops.dev", "-o", "json", check=False
        )
        if hooks and json.loads(hooks).get("webhooks"):
            break
        if time.monotonic() > deadline:
            log("the webhook configuration did not appear; skipping the refusal example")
            return
        time.sleep(0.5)
    print("$ kubectl apply -f unsafe.yaml   # the example, pointed at database guestbook_test in production")
    while True:
        result = subprocess.run(
            [str(paths.tool("kubectl")), "apply", "--dry-run=server", "-f", "-"],
            env=env,
            input=yaml.safe_dump(unsafe),
            capture_output=True,
            text=True,
            check=False,
        )
        # The configuration exists a moment before the API server's webhook cache has it.
        if result.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print((result.stderr or result.stdout).strip())
    print()


def down_kubeconfig_cluster(given: str) -> None:
    """`make demo-down` on the cluster KUBECONFIG names: delete what the demo created there (while the
    operator still runs, for its finalizer), then stop the operator. The cluster itself is not ours."""
    env = {**os.environ, "KUBECONFIG": given}
    left = remove_demo_objects(env)
    stop_operator()
    for what in left:
        log(f"left in place: {what}")
    log("the flaskops CRDs stay installed (deleting a CRD deletes every object of its kind)")
