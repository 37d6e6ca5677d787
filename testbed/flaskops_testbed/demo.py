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
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flaskops_testbed import cluster as kwok
from flaskops_testbed import images, node, paths
from flaskops_testbed.postgres import LocalPostgres, default_base_dir

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "demo"
APP = "guestbook"
ADMIN_NAMESPACE = "flaskops-system"
ADMIN_SECRET = "pg-admin"
SERVER = "main"


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _apply(env: dict[str, str], body: dict[str, Any]) -> None:
    _kubectl(env, "apply", "-f", "-", input=yaml.safe_dump(body))


def webhook_env() -> dict[str, str]:
    """Serve the admission webhook on loopback with a self-made CA (the local API server can dial it)."""
    return {
        "FLASKOPS_WEBHOOK": "self",
        "FLASKOPS_WEBHOOK_ADDR": "127.0.0.1",
        "FLASKOPS_WEBHOOK_HOST": "127.0.0.1",
        "FLASKOPS_WEBHOOK_PORT": str(_free_port()),
        "FLASKOPS_WEBHOOK_CERT_DIR": str(state_dir() / "webhook"),
    }


def start_operator(env: dict[str, str]) -> int:
    """The operator as a background process that outlives `make demo`; `make demo-down` stops it."""
    stop_operator()
    port = _free_port()
    # /metrics on loopback, on a free port (the default 8081 may be taken on a developer's machine).
    metrics_port = _free_port()
    log_path = state_dir() / "operator.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flaskops", f"--liveness=http://127.0.0.1:{port}/healthz"],
            env={**env, "FLASKOPS_METRICS_ADDR": "127.0.0.1", "FLASKOPS_METRICS_PORT": str(metrics_port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with make's process group
            cwd=ROOT,
        )
    (state_dir() / "operator.pid").write_text(str(proc.pid))
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the operator exited ({proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the operator did not become healthy in 60s; see {log_path}")
        time.sleep(0.2)
    log(
        f"operator running (pid {proc.pid}, logs: {log_path}, metrics: http://127.0.0.1:{metrics_port}/metrics)"
    )
    return proc.pid


def stop_operator() -> None:
    _stop_pid_file(state_dir() / "port-forward.pid")
    _stop_pid_file(state_dir() / "operator.pid")


def _stop_pid_file(pid_file: Path) -> None:
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
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


def run(cluster_name: str) -> int:
    started = time.monotonic()
    given = os.environ.get("KUBECONFIG")
    real: RealApp | None = None
    pg = LocalPostgres(default_base_dir())
    log(f"[1/6] PostgreSQL 15 on loopback (state in {pg.base_dir})")
    pg.start()
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
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{paths.bin_dir()}:{os.environ.get('PATH', '')}"}

    log("[3/6] CRDs, the admin Secret, the PostgresServer, the demo namespace")
    _kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for crd in ("flaskapps.flaskops.dev", "postgresservers.flaskops.dev"):
        _kubectl(env, "wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    for ns, labels in (
        (ADMIN_NAMESPACE, {}),
        (NAMESPACE, {"pod-security.kubernetes.io/enforce": "restricted"}),
    ):
        meta: dict[str, Any] = {"name": ns, "labels": labels}
        if ns == NAMESPACE and real is not None:
            meta["annotations"] = dict(node.NAMESPACE_ANNOTATIONS)  # its pods go to the real node
        _apply(env, {"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    _apply(
        env,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": ADMIN_SECRET, "namespace": ADMIN_NAMESPACE},
            "stringData": {"username": pg.superuser, "password": pg.password},
        },
    )
    server = yaml.safe_load((ROOT / "examples" / "postgresserver.yaml").read_text())
    server["spec"].update(host=pg.host, port=pg.port, sslMode="disable")
    if real is not None:
        # Pods reach PostgreSQL (on loopback) through the node's forwarder on the bridge gateway.
        host, port = real.node.forward(pg.port)
        server["spec"].update(host=host, port=port)
    _apply(env, server)

    local = not given
    log(
        "[4/6] the operator (python -m flaskops)"
        + (" with its admission webhook on loopback" if local else "")
    )
    start_operator({**env, **webhook_env()} if local else env)

    log(f"[5/6] kubectl apply -f examples/flaskapp.yaml -n {NAMESPACE}; waiting for Ready")
    app = yaml.safe_load((ROOT / "examples" / "flaskapp.yaml").read_text())
    app["metadata"]["namespace"] = NAMESPACE
    if real is not None:
        app["spec"]["image"] = real.images.guestbook
        # Plain HTTP on loopback for your browser; in production TLS ends at an ingress in front.
        app["spec"]["env"] = [
            {"name": "FORCE_HTTPS", "value": "false"},
            {"name": "SESSION_COOKIE_SECURE", "value": "false"},
        ]
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

    port = _free_port()
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
    unsafe = yaml.safe_load((ROOT / "examples" / "flaskapp.yaml").read_text())
    unsafe["metadata"].update(name="guestbook-oops", namespace=NAMESPACE)
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


def down(cluster_name: str) -> None:
    stop_operator()
    if not os.environ.get("KUBECONFIG"):
        kwok.stop(cluster_name)
    LocalPostgres(default_base_dir()).stop()
