"""The harness's pure parts: configuration it hands kwokctl, wait helpers and their messages."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from kubernetes import client

from flaskops_testbed import cluster, node, paths
from flaskops_testbed.waiting import NotYet, condition_status, describe_conditions, has_condition, wait_for

STAGES = {
    "node-initialize",
    "node-heartbeat-with-lease",
    "pod-ready",
    "pod-complete",
    "pod-delete",
    "pod-container-running-failed",
}


@pytest.fixture
def fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding stand-ins for the binaries, so configuration can be checked without a build."""
    monkeypatch.setenv("FLASKOPS_CACHE", str(tmp_path))
    bin_dir = paths.bin_dir()
    bin_dir.mkdir(parents=True)
    for name in paths.BINARIES:
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    stages = "".join(
        f"---\napiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata: {{name: {s}}}\n" for s in STAGES
    )
    paths.stages_file().write_text(stages)
    return bin_dir


def test_kwokctl_config_uses_local_binaries_on_loopback_with_all_stages(fake_build: Path) -> None:
    docs = cluster.KwokCluster(name="unit", extra_apiserver_args={"audit-log-maxage": "1"}).config_documents()
    config, stages = docs[0], docs[1:]
    options = config["options"]
    assert isinstance(options, dict)
    assert options["runtime"] == "binary"
    assert options["bindAddress"] == "127.0.0.1"
    assert options["kubeApiserverBinary"] == str(fake_build / "kube-apiserver")
    assert options["kwokControllerBinary"] == str(fake_build / "kwok")
    assert all(Path(str(v)).is_absolute() for k, v in options.items() if k.endswith("Binary"))
    assert not any("prometheus" in k.lower() or "jaeger" in k.lower() for k in options)
    patches = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in config["componentsPatches"]}  # type: ignore[attr-defined]
    # The caller's flags, on top of what the real node needs from every cluster (node.py).
    assert patches["kube-apiserver"]["audit-log-maxage"] == "1"
    assert patches["kube-apiserver"]["kubelet-client-certificate"].endswith("/pki/admin.crt")
    assert patches["kube-apiserver"]["service-cluster-ip-range"] == node.SERVICE_CIDR
    assert "PodNodeSelector" in patches["kube-apiserver"]["enable-admission-plugins"]
    # Every webhook is called with the testbed's client certificate (webhook_client.py).
    admission = Path(patches["kube-apiserver"]["admission-control-config-file"])
    assert admission.is_relative_to(paths.cache_dir()) and admission.exists()
    # KWOK must leave the real node alone: it manages only the nodes kwokctl made.
    assert patches["kwok-controller"] == {
        "manage-all-nodes": "false",
        "manage-nodes-with-annotation-selector": "kwok.x-k8s.io/node=fake",
    }
    assert options["kubeApiserverCertSANs"] == [node.KUBERNETES_SERVICE_IP]
    assert {s["metadata"]["name"] for s in stages} == STAGES  # type: ignore[index]


def test_cluster_state_lives_under_the_cache(fake_build: Path) -> None:
    c = cluster.KwokCluster(name="unit")
    assert c.kubeconfig.parent == paths.cache_dir() / "state" / "unit"
    assert c.env()["PATH"].split(os.pathsep)[0] == str(fake_build)
    assert c.env()["KWOK_WORKDIR"] == str(c.kwok_workdir)


def test_binary_names_the_build_command_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASKOPS_CACHE", str(tmp_path))
    with pytest.raises(paths.TestbedNotBuiltError, match="make testbed"):
        paths.binary("kube-apiserver")


@pytest.mark.skipif(not paths.is_built(), reason="needs `make testbed`")
def test_build_extracted_the_full_stage_set_from_the_kwok_module() -> None:
    text = paths.stages_file().read_text()
    assert paths.versions()["KWOK_VERSION"] in text.splitlines()[0]
    for stage in STAGES:
        assert f"name: {stage}\n" in text


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, "done"])
    assert wait_for(lambda: next(values), 5, what="a value", interval=0) == "done"


def test_wait_for_timeout_names_what_and_the_last_state() -> None:
    def never() -> bool:
        raise NotYet("phase=Pending")

    with pytest.raises(TimeoutError, match=r"waiting for Job x Complete; last state: phase=Pending"):
        wait_for(never, 0, what="Job x Complete")


def test_conditions_read_models_and_dicts_alike() -> None:
    model = client.V1Job(
        metadata=client.V1ObjectMeta(name="m"),
        status=client.V1JobStatus(
            conditions=[client.V1JobCondition(type="Failed", status="True", reason="BackoffLimitExceeded")]
        ),
    )
    plain = {
        "kind": "FlaskApp",
        "metadata": {"name": "d"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }
    assert condition_status(model, "Failed") == "True"
    assert has_condition("Ready", "False")(plain)
    assert condition_status(plain, "Migrated") is None
    assert describe_conditions(model) == "Job m: Failed=True (BackoffLimitExceeded)"
    assert describe_conditions(plain) == "FlaskApp d: Ready=False"


def test_reap_orphans_stops_only_clusters_of_dead_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASKOPS_CACHE", str(tmp_path))
    finished = subprocess.Popen(["true"])
    finished.wait()
    orphan, mine, by_hand = (cluster.KwokCluster(name=f"flaskops-test-{n}") for n in ("1", "2", "3"))
    cluster.claim(mine)
    orphan.state_dir.mkdir(parents=True)
    (orphan.state_dir / cluster.OWNER_FILE).write_text(f"{finished.pid}\n")
    by_hand.state_dir.mkdir(parents=True)

    assert cluster.reap_orphans("flaskops-test-") == ["flaskops-test-1"]
    assert not orphan.state_dir.exists()
    assert mine.state_dir.exists()
    assert by_hand.state_dir.exists()
