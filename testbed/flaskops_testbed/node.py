"""One real node beside the KWOK nodes: a kubelet on its own containerd, pods on a bridge.

    node = RealNode(cluster).up()    # containerd, bridge, forwarders, kubelet; waits until Ready
    node.forward(pg.port)            # -> ("10.244.0.1", port): where pods reach a host service
    node.down()                      # nothing left: processes, bridge, netns, mounts, cgroups

What it takes on these machines (REAL-NODE.md has the trial that found each):

- **containerd** (Debian's) with its own root, state and socket, CRI with `restrict_oom_score_adj`
  (the VM has no CAP_SYS_RESOURCE, so runc cannot set the kubelet's negative oom_score_adj), the
  cgroupfs driver, and the testbed's own pause image as sandbox image (nothing can be pulled).
  Its root lives in the cache and survives `down`, so images are imported once per build.
- **Pod network**: the bridge `flaskops0` (POD_CIDR, gateway GATEWAY) with Debian's bridge and
  host-local CNI plugins; no masquerade, no portmap, no kube-proxy, no host firewall rule. The host
  reaches every pod IP directly. A pod reaches the host at GATEWAY, and the API server through the
  `kubernetes` Service's ClusterIP, which the testbed puts on the bridge as a host address with a
  forwarder behind it (flaskops_testbed.forward); other ClusterIP Services do not route.
- **The kubelet** named `127.0.0.1` (`--node-ip` refuses loopback; this name gives the node
  InternalIP 127.0.0.1, so logs, exec and probes stay on loopback), with a client certificate
  `O=system:nodes, CN=system:node:127.0.0.1` signed by the cluster's CA, tainted TAINT so pods of the
  KWOK-based tests never land there, and run without /usr/sbin on PATH so it finds no iptables and
  leaves the host firewall alone. The cluster side (KWOK managing only its own nodes, the API server's
  kubelet client certificate, the ClusterIP in the serving certificate, webhook calls to endpoints) is
  in cluster.KwokCluster.config_documents().

A pod lands on the node when its namespace carries NAMESPACE_ANNOTATIONS (node selector and
toleration, applied by the API server's PodNodeSelector/PodTolerationRestriction admission), so the
operator's own Deployments and Jobs need no change to run here.

One node per machine: the kubelet, containerd and CNI write a few fixed host paths
(/var/log/containers, /var/lib/cni, /var/run/netns). The node records which cluster owns it.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml

from flaskops_testbed import paths
from flaskops_testbed.cluster import KwokCluster, _alive, log
from flaskops_testbed.ports import free_port

NODE_NAME = "127.0.0.1"
NODE_LABEL = "flaskops.dev/real-node"
TAINT = {"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}
# Applied by the API server's admission plugins to every pod of an annotated namespace.
NAMESPACE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": f"{NODE_LABEL}=true",
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]
    ),
}
BRIDGE = "flaskops0"
POD_CIDR = "10.244.0.0/24"
GATEWAY = "10.244.0.1"
# The API server's --service-cluster-ip-range (cluster.py); .1 is the `kubernetes` Service.
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
CNI_NETWORK = "flaskops"
CNI_BIN_DIR = Path("/usr/lib/cni")
# Sockets: sun_path is 108 bytes, so they live under /run rather than in the cache.
RUN_DIR = Path("/run/flaskops-node")
# Fixed host paths the kubelet, containerd and CNI use whatever they are told.
NETNS_DIR = Path("/var/run/netns")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
CNI_CACHE = Path("/var/lib/cni")
# The kubelet must not find iptables (in /usr/sbin): it would add rules to the host firewall.
KUBELET_PATH = "/usr/local/bin:/usr/bin:/bin"


class NodeError(RuntimeError):
    """The real node could not start (or stop); the message says which log to read."""


def node_home() -> Path:
    """Everything of the node that is a file: $FLASKOPS_CACHE/node."""
    return paths.cache_dir() / "node"


def _run(argv: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise NodeError(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


@dataclass
class RealNode:
    """The machine's one real node, joined to `cluster`."""

    cluster: KwokCluster

    # ---- layout ------------------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return node_home()

    @property
    def etc(self) -> Path:
        return self.home / "etc"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def pids(self) -> Path:
        return self.home / "pids"

    @property
    def containerd_root(self) -> Path:
        # Survives down(): the imported images stay, so the next up() imports nothing.
        return self.home / "containerd"

    @property
    def kubelet_root(self) -> Path:
        return self.home / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.home / "pod-logs"

    @property
    def containerd_socket(self) -> Path:
        return RUN_DIR / "containerd.sock"

    @property
    def owner_file(self) -> Path:
        return self.home / "cluster"

    # ---- start ---------------------------------------------------------------------------------------
    def up(self, images: Path | None = None, timeout: float = 120) -> RealNode:
        """Start containerd, the bridge, the API server forwarder and the kubelet; wait until Ready.

        `images`: a `docker save` tarball to import into the node's containerd (skipped for images it
        already holds). Raises NodeError (naming the log to read) when a part does not start.
        """
        started = time.monotonic()
        owner = self.owner_file.read_text().strip() if self.owner_file.exists() else ""
        if owner and owner != self.cluster.name and running():
            raise NodeError(
                f"the real node already belongs to cluster {owner!r}: one node per machine "
                f"(stop it with `python -m flaskops_testbed down --name {owner}`)"
            )
        if running():
            stop_node()
        for d in (self.etc, self.logs, self.pids, self.containerd_root, self.kubelet_root, self.pod_logs):
            d.mkdir(parents=True, exist_ok=True)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.owner_file.write_text(f"{self.cluster.name}\n")
        # What existed before us, so down() removes only what the node made.
        (self.home / "netns-before.json").write_text(json.dumps(sorted(_list_dir(NETNS_DIR))))
        (self.home / "ip-forward-before").write_text(Path("/proc/sys/net/ipv4/ip_forward").read_text())
        (self.home / "created.json").write_text(
            json.dumps({str(p): not p.exists() for p in (CONTAINER_LOG_LINKS, CNI_CACHE, NETNS_DIR)})
        )
        try:
            self._bridge()
            self._forward_api_server()
            self._containerd()
            if images is not None:
                self.import_images(images)
            self._kubelet()
            self._wait_ready(deadline=started + timeout)
        except BaseException:
            log("real node did not start; stopping what did")
            stop_node()
            raise
        log(f"real node {NODE_NAME!r} Ready after {time.monotonic() - started:.1f}s (logs: {self.logs})")
        return self

    def _bridge(self) -> None:
        if _run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
            _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        prefix = ipaddress.ip_network(POD_CIDR).prefixlen
        for address in (f"{GATEWAY}/{prefix}", f"{KUBERNETES_SERVICE_IP}/32"):
            _run(["ip", "addr", "replace", address, "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env or dict(os.environ),
                start_new_session=True,  # not killed with the caller's process group
            )
        (self.pids / f"{name}.pid").write_text(f"{proc.pid}\n")
        _CHILDREN[proc.pid] = proc
        return proc.pid

    def forward(
        self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None
    ) -> tuple[str, int]:
        """Make a host service on 127.0.0.1 reachable from pods: returns (GATEWAY, port) to give them."""
        listen_port = port or free_port()
        name = f"forward-{listen_port}"
        pid = self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "flaskops_testbed.forward",
                f"{GATEWAY}:{listen_port}",
                f"{target_host}:{target_port}",
            ],
            env={**os.environ, "PYTHONPATH": str(paths.TESTBED_SRC)},
        )
        self._wait_log(name, "forwarding", pid, timeout=30)
        return GATEWAY, listen_port

    def _forward_api_server(self) -> None:
        server = yaml.safe_load(self.cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        api_port = int(server.rsplit(":", 1)[1])
        pid = self._spawn(
            "forward-apiserver",
            [
                sys.executable,
                "-m",
                "flaskops_testbed.forward",
                f"{KUBERNETES_SERVICE_IP}:443",
                f"127.0.0.1:{api_port}",
            ],
            env={**os.environ, "PYTHONPATH": str(paths.TESTBED_SRC)},
        )
        self._wait_log("forward-apiserver", "forwarding", pid, timeout=30)

    def _wait_log(self, name: str, marker: str, pid: int, timeout: float) -> None:
        log_path = self.logs / f"{name}.log"
        deadline = time.monotonic() + timeout
        while marker not in log_path.read_text(errors="replace"):
            if not _alive(pid):
                raise NodeError(f"{name} exited: {log_path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise NodeError(f"{name} did not start in {timeout:.0f}s; see {log_path}")
            time.sleep(0.05)

    def containerd_config(self, sandbox_image: str) -> str:
        """containerd's config (version 2): its own root/state/socket, CRI as the kubelet needs it here."""
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return "\n".join(
            [
                "version = 2",
                f'root = "{self.containerd_root}"',
                f'state = "{RUN_DIR / "containerd"}"',
                "[grpc]",
                f'  address = "{self.containerd_socket}"',
                f"[{cri}]",
                f'  sandbox_image = "{sandbox_image}"',
                # No CAP_SYS_RESOURCE in this VM: runc cannot lower oom_score_adj below the current one.
                "  restrict_oom_score_adj = true",
                '  stream_server_address = "127.0.0.1"',
                f"[{cri}.containerd]",
                '  snapshotter = "overlayfs"',
                '  default_runtime_name = "runc"',
                f"[{cri}.containerd.runtimes.runc]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"[{cri}.containerd.runtimes.runc.options]",
                "  SystemdCgroup = false",
                f"[{cri}.cni]",
                f'  bin_dir = "{CNI_BIN_DIR}"',
                f'  conf_dir = "{self.etc / "cni"}"',
                "",
            ]
        )

    def cni_config(self) -> dict[str, object]:
        """The bridge network: no masquerade (pods talk to this host only), IPAM state in our home."""
        return {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.home / "ipam"),
                    },
                }
            ],
        }

    def _containerd(self) -> None:
        from flaskops_testbed import images as images_module

        try:
            sandbox = images_module.load().pause
        except images_module.ImagesNotBuiltError:
            sandbox = "flaskops.local/pause:3.10"
        (self.etc / "cni").mkdir(parents=True, exist_ok=True)
        (self.etc / "cni" / "10-flaskops.conflist").write_text(json.dumps(self.cni_config(), indent=1))
        config = self.etc / "containerd.toml"
        config.write_text(self.containerd_config(sandbox))
        containerd = shutil.which("containerd") or "/usr/bin/containerd"
        pid = self._spawn("containerd", [containerd, "--config", str(config)])
        deadline = time.monotonic() + 30
        while _run(self._ctr("version"), check=False).returncode != 0:
            if not _alive(pid) or time.monotonic() > deadline:
                raise NodeError(f"containerd did not start; see {self.logs / 'containerd.log'}")
            time.sleep(0.1)

    def _ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args]

    def image_names(self) -> set[str]:
        """The images the node's containerd holds (normalized references)."""
        out = _run(self._ctr("images", "ls", "-q")).stdout
        return set(out.split())

    def import_images(self, tarball: Path) -> None:
        """Import a `docker save` tarball unless the node holds every image in it already."""
        import tarfile

        with tarfile.open(tarball) as tar:
            member = tar.extractfile("manifest.json")
            tags = [t for entry in json.load(member) for t in entry.get("RepoTags") or []] if member else []
        held = self.image_names()
        missing = [t for t in tags if f"docker.io/{t}" not in held and t not in held]
        if not missing:
            return
        started = time.monotonic()
        log(f"importing {len(missing)} image(s) into the node's containerd: {', '.join(missing)}")
        _run(self._ctr("images", "import", str(tarball)), timeout=600)
        log(f"images imported in {time.monotonic() - started:.1f}s")

    def _node_certificate(self) -> tuple[Path, Path]:
        """A client certificate O=system:nodes, CN=system:node:<name>, signed by the cluster's CA."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.utils import CryptographyDeprecationWarning
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        pki = self.cluster.cluster_dir / "pki"
        with warnings.catch_warnings():
            # kwokctl's CA carries a non-positive serial number; cryptography warns, and still reads it.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{NODE_NAME}"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        cert_path, key_path = self.etc / "node.crt", self.etc / "node.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path

    def kubelet_config(self, port: int, healthz_port: int) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                # The API server calls the kubelet (logs, exec) with kwokctl's admin certificate.
                "x509": {"clientCAFile": str(self.cluster.cluster_dir / "pki" / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            # These machines mount cgroup v1 (hybrid); the kubelet refuses it unless told.
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "podLogsDir": str(self.pod_logs),
            "podCIDR": POD_CIDR,
            "maxPods": 40,
            "registerWithTaints": [TAINT],
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            # A test machine's disk is shared with builds and caches: evict on nothing but a full disk.
            "evictionHard": {
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "memory.available": "100Mi",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "shutdownGracePeriod": "0s",
        }

    def _kubelet(self) -> None:
        cert, key = self._node_certificate()
        server = yaml.safe_load(self.cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testbed",
                    "cluster": {
                        "server": server,
                        "certificate-authority": str(self.cluster.cluster_dir / "pki" / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": "node", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "node", "context": {"cluster": "testbed", "user": "node"}}],
            "current-context": "node",
        }
        (self.etc / "kubelet.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        (self.etc / "kubelet.yaml").write_text(
            yaml.safe_dump(self.kubelet_config(free_port(), free_port()), sort_keys=False)
        )
        self._spawn(
            "kubelet",
            [
                str(paths.node_binary("kubelet")),
                f"--config={self.etc / 'kubelet.yaml'}",
                f"--kubeconfig={self.etc / 'kubelet.kubeconfig'}",
                f"--root-dir={self.kubelet_root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-labels={NODE_LABEL}=true",
                "--v=1",
            ],
            env={**os.environ, "PATH": KUBELET_PATH},
        )

    def _wait_ready(self, deadline: float) -> None:
        from kubernetes import client

        from flaskops_testbed.waiting import NotYet, api_client, wait_for

        api = api_client(self.cluster.kubeconfig)
        core = client.CoreV1Api(api)
        pid_file = self.pids / "kubelet.pid"

        def ready() -> bool:
            if not _alive(int(pid_file.read_text())):
                raise NodeError(f"the kubelet exited; see {self.logs / 'kubelet.log'}")
            try:
                node = core.read_node(NODE_NAME)
            except client.exceptions.ApiException as exc:
                if exc.status == 404:
                    raise NotYet("not registered yet") from exc
                raise
            conditions = {c.type: c for c in ((node.status and node.status.conditions) or [])}
            ready = conditions.get("Ready")
            if ready is None or ready.status != "True":
                raise NotYet(f"Ready={ready and ready.status}: {ready and ready.message}")
            return True

        try:
            wait_for(ready, timeout=max(1.0, deadline - time.monotonic()), what=f"node {NODE_NAME} Ready")
        except TimeoutError as exc:
            raise NodeError(f"{exc}\nkubelet log: {self.logs / 'kubelet.log'}") from exc
        finally:
            api.close()

    def down(self) -> None:
        """Stop the node and remove what it made on the host (its cache of images stays)."""
        stop_node(self.cluster)

    def status(self) -> str:
        alive = [p.stem for p in _pid_files() if _alive(_read_pid(p))]
        return f"real node: {', '.join(alive) or 'not running'} ({self.home})"


# ---- stop (usable from a fresh process: everything it needs is in files) ---------------------------------


def _list_dir(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


def _pid_files() -> list[Path]:
    d = node_home() / "pids"
    return sorted(d.glob("*.pid")) if d.is_dir() else []


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return -1


def running() -> bool:
    """True when a process of the node (kubelet, containerd, a forwarder) is alive."""
    return any(_alive(_read_pid(p)) for p in _pid_files())


def owner() -> str | None:
    """The name of the cluster the node joined, if it runs."""
    f = node_home() / "cluster"
    return f.read_text().strip() if running() and f.exists() else None


# The node's processes this process started: kept so they are reaped (waited for) once stopped, and
# not reported as "still running" when a Popen object is collected. Another process stops them by pid.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _terminate(pid: int, timeout: float) -> None:
    try:
        _stop(pid, timeout)
    finally:
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)


def _stop(pid: int, timeout: float) -> None:
    if pid <= 0 or not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _mounts_under(*roots: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(r) or point.startswith(f"{r}/") for r in roots):
            found.append(point)
    # Deepest first, so a mount inside another comes off before its parent.
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _shim_pids() -> list[int]:
    """containerd-shim processes serving our containerd (their command line names our socket)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"containerd-shim" in cmdline[0] and str(RUN_DIR).encode() in b" ".join(cmdline):
            pids.append(int(proc.name))
    return pids


def stop_node(cluster: KwokCluster | None = None) -> None:
    """Stop the machine's real node, whoever started it, and undo its host changes.

    Order matters: the kubelet first (it would restart what is killed), then every container and
    sandbox (their shims and network namespaces), containerd, the forwarders; then mounts, network
    namespaces, the bridge, the fixed host paths, the kubelet's cgroups.
    """
    home = node_home()
    if not home.exists():
        return
    pid_files = {p.stem: p for p in _pid_files()}
    if any(_alive(_read_pid(p)) for p in pid_files.values()):
        log("stopping the real node")
    # Pods first, through the kubelet itself, so that sandboxes are torn down by CNI (veth, IPAM).
    if cluster is not None and "kubelet" in pid_files and _alive(_read_pid(pid_files["kubelet"])):
        _drain(cluster, pid_files)
    _terminate(_read_pid(pid_files.pop("kubelet", Path("/nonexistent"))), timeout=10)
    containerd = pid_files.pop("containerd", None)
    socket = RUN_DIR / "containerd.sock"
    if containerd is not None and _alive(_read_pid(containerd)) and socket.exists():
        ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]
        tasks = _run([*ctr, "tasks", "ls", "-q"], check=False).stdout.split()
        for task in tasks:
            _run([*ctr, "tasks", "kill", "--signal", "SIGKILL", task], check=False)
        for task in tasks:
            _run([*ctr, "tasks", "delete", "--force", task], check=False)
        containers = _run([*ctr, "containers", "ls", "-q"], check=False).stdout.split()
        if containers:
            _run([*ctr, "containers", "delete", *containers], check=False)
    if containerd is not None:
        _terminate(_read_pid(containerd), timeout=10)
    for pid in _shim_pids():
        _terminate(pid, timeout=5)
    for pid_file in pid_files.values():  # the forwarders
        _terminate(_read_pid(pid_file), timeout=5)
    for pid_file in _pid_files():
        pid_file.unlink(missing_ok=True)

    # Network namespaces the node's sandboxes made (bind mounts under /var/run/netns).
    before = (
        set(json.loads((home / "netns-before.json").read_text()))
        if (home / "netns-before.json").exists()
        else set()
    )
    for name in sorted(_list_dir(NETNS_DIR) - before):
        path = NETNS_DIR / name
        _run(["umount", "--lazy", str(path)], check=False)
        path.unlink(missing_ok=True)
    for point in _mounts_under(home / "kubelet", RUN_DIR):
        _run(["umount", "--lazy", point], check=False)
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        _run(["ip", "link", "delete", BRIDGE], check=False)
    forward_before = home / "ip-forward-before"
    if forward_before.exists():
        with contextlib.suppress(OSError):
            Path("/proc/sys/net/ipv4/ip_forward").write_text(forward_before.read_text())
        forward_before.unlink()

    # Fixed host paths: the kubelet's log links into our pod logs, CNI's result cache for our network.
    for link in CONTAINER_LOG_LINKS.glob("*.log") if CONTAINER_LOG_LINKS.is_dir() else []:
        with contextlib.suppress(OSError):
            if link.is_symlink() and str(os.readlink(link)).startswith(str(home)):
                link.unlink()
    for cached in (
        (CNI_CACHE / "results").glob(f"{CNI_NETWORK}-*") if (CNI_CACHE / "results").is_dir() else []
    ):
        cached.unlink(missing_ok=True)
    created = json.loads((home / "created.json").read_text()) if (home / "created.json").exists() else {}
    for path_text, made_by_us in created.items():
        path = Path(path_text)
        if made_by_us and path.is_dir() and not _mounts_under(path):
            shutil.rmtree(path, ignore_errors=True)
    _remove_cgroups()
    if cluster is not None and cluster.is_healthy():
        # A cluster that lives on should not keep a NotReady node it can never reach again.
        kubectl = [str(paths.binary("kubectl")), "--kubeconfig", str(cluster.kubeconfig)]
        _run([*kubectl, "delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false"], check=False)
    for transient in (home / "kubelet", home / "pod-logs", home / "ipam", RUN_DIR):
        if not _mounts_under(transient):
            shutil.rmtree(transient, ignore_errors=True)
    (home / "cluster").unlink(missing_ok=True)


def _drain(cluster: KwokCluster, pid_files: dict[str, Path]) -> None:
    """Delete the node's pods and wait (briefly) for the kubelet to tear their sandboxes down."""
    kubectl = [str(paths.binary("kubectl")), "--kubeconfig", str(cluster.kubeconfig)]
    _run(
        [
            *kubectl,
            "delete",
            "pods",
            "--all-namespaces",
            f"--field-selector=spec.nodeName={NODE_NAME}",
            "--grace-period=1",
            "--wait=false",
        ],
        check=False,
        timeout=30,
    )
    socket = RUN_DIR / "containerd.sock"
    ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io", "tasks", "ls", "-q"]
    # Briefly: whatever is left after this is killed through containerd, and its netns removed by hand.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not _run(ctr, check=False).stdout.split():
            return
        time.sleep(0.25)


def _remove_cgroups() -> None:
    """The kubelet's `kubepods` cgroups (empty once every container is gone), deepest first."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir() if Path("/sys/fs/cgroup").is_dir() else []:
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def leftovers() -> list[str]:
    """What a stopped node would have left on the host; empty when `down` was complete."""
    found = []
    found += [f"process {p.stem} ({_read_pid(p)})" for p in _pid_files() if _alive(_read_pid(p))]
    found += [f"shim {pid}" for pid in _shim_pids()]
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    found += [f"mount {m}" for m in _mounts_under(node_home(), RUN_DIR)]
    before_file = node_home() / "netns-before.json"
    before = set(json.loads(before_file.read_text())) if before_file.exists() else set()
    found += [f"netns {n}" for n in sorted(_list_dir(NETNS_DIR) - before)]
    return found
