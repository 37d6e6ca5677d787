"""The real node's configuration, checked without starting it (tests/e2e/test_real_pods.py runs it)."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flaskops_testbed import cluster, forward, node, paths


@pytest.fixture
def real_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> node.RealNode:
    monkeypatch.setenv("FLASKOPS_CACHE", str(tmp_path))
    return node.RealNode(cluster.KwokCluster(name="unit"))


def test_addresses_fit_together() -> None:
    pods = ipaddress.ip_network(node.POD_CIDR)
    assert ipaddress.ip_address(node.GATEWAY) in pods
    assert ipaddress.ip_address(node.KUBERNETES_SERVICE_IP) in ipaddress.ip_network(node.SERVICE_CIDR)
    assert not pods.overlaps(ipaddress.ip_network(node.SERVICE_CIDR))
    assert str(node.RUN_DIR / "containerd.sock").__len__() < 100  # sun_path is 108 bytes


def test_namespace_annotations_select_and_tolerate_the_real_node() -> None:
    selector = node.NAMESPACE_ANNOTATIONS["scheduler.alpha.kubernetes.io/node-selector"]
    assert selector == f"{node.NODE_LABEL}=true"
    (toleration,) = json.loads(node.NAMESPACE_ANNOTATIONS["scheduler.alpha.kubernetes.io/defaultTolerations"])
    assert toleration["key"] == node.TAINT["key"] and toleration["effect"] == node.TAINT["effect"]


def test_kubelet_is_tainted_on_cgroupfs_and_leaves_the_firewall_alone(real_node: node.RealNode) -> None:
    config = real_node.kubelet_config(port=10250, healthz_port=10248)
    assert config["registerWithTaints"] == [node.TAINT]
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failCgroupV1"] is False
    assert config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"] == {"enabled": False}  # type: ignore[index]
    assert str(config["containerRuntimeEndpoint"]).endswith(str(real_node.containerd_socket))
    # No iptables on the kubelet's PATH: it must not add rules to the host firewall.
    assert all(not (Path(d) / "iptables").exists() for d in node.KUBELET_PATH.split(":"))


def test_containerd_restricts_oom_score_adj_and_uses_the_local_pause(real_node: node.RealNode) -> None:
    text = real_node.containerd_config("flaskops.local/pause:3.10")
    assert "restrict_oom_score_adj = true" in text
    assert 'sandbox_image = "flaskops.local/pause:3.10"' in text
    assert "SystemdCgroup = false" in text
    assert f'address = "{real_node.containerd_socket}"' in text


def test_pod_network_has_no_masquerade(real_node: node.RealNode) -> None:
    plugins: Any = real_node.cni_config()["plugins"]
    (bridge,) = plugins
    assert bridge["bridge"] == node.BRIDGE and bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": node.POD_CIDR, "gateway": node.GATEWAY}]]


def test_node_binaries_live_beside_the_control_plane() -> None:
    assert paths.node_bin_dir().parent.name == f"node_{paths.testbed_dir().name}"
    assert 'node_dest="$cache/node_$key"' in (paths.TESTBED_SRC / "build.sh").read_text()


def test_forwarder_copies_both_ways() -> None:
    with socket.socket() as upstream:
        upstream.bind(("127.0.0.1", 0))
        upstream.listen()
        target = upstream.getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            listen = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "flaskops_testbed.forward", f"127.0.0.1:{listen}", f"127.0.0.1:{target}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and "forwarding" in proc.stdout.readline()
            with socket.create_connection(("127.0.0.1", listen), timeout=5) as client:
                served, _ = upstream.accept()
                with served:
                    client.sendall(b"ping")
                    assert served.recv(4) == b"ping"
                    served.sendall(b"pong")
                    assert client.recv(4) == b"pong"
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0
            proc.stdout.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["nohost", ":80", "host:", "host:http"])
def test_forward_address_must_be_host_and_port(bad: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        forward.parse_address(bad)
