"""The one operator-process harness (tests, bench, demo): its command line, environment, failure report,
and the free-port and metrics helpers. Starting it against a real cluster is covered by tests/e2e."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from flaskops_testbed.operator_process import OperatorExited, OperatorProcess, metric_samples
from flaskops_testbed.ports import free_port, wait_port


def test_command_line_and_environment(tmp_path: Path) -> None:
    op = OperatorProcess(
        tmp_path / "kc",
        tmp_path / "op.log",
        {"FLASKOPS_WEBHOOK": "none", "FLASKOPS_METRICS_PORT": "1"},
        args=["--namespace=shop"],
        base_env={"PATH": "/bin", "KUBECONFIG": "/elsewhere"},
    )
    assert op.argv() == [
        sys.executable,
        "-m",
        "flaskops",
        f"--liveness=http://127.0.0.1:{op.health_port}/healthz",
        "--namespace=shop",
    ]
    env = op.env()
    assert env["KUBECONFIG"] == str(tmp_path / "kc")
    assert env["FLASKOPS_METRICS_ADDR"] == "127.0.0.1"
    assert env["FLASKOPS_METRICS_PORT"] == "1", "extra_env is laid over the harness's own choices"
    assert env["PATH"] == "/bin" and "HOME" not in env, "base_env replaces this process's environment"
    assert op.health_port != op.metrics_port
    demo = OperatorProcess(None, tmp_path / "op.log", base_env={"KUBECONFIG": "/given"})
    assert demo.env()["KUBECONFIG"] == "/given"
    assert demo.env()["FLASKOPS_METRICS_PORT"] == str(demo.metrics_port)


def test_an_operator_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    """A setting the operator refuses: it exits before /healthz answers; the error carries the log's tail."""
    op = OperatorProcess(
        tmp_path / "no-such-kubeconfig", tmp_path / "op.log", {"FLASKOPS_LEADER_ELECTION": "maybe"}
    )
    with pytest.raises(OperatorExited) as exc:
        op.start(timeout=60)
    assert "FLASKOPS_LEADER_ELECTION must be true or false" in str(exc.value)
    assert not op.running()
    op.stop()  # a no-op once it is gone


def test_free_port_is_free_and_wait_port_sees_a_listener() -> None:
    port = free_port()
    with pytest.raises(TimeoutError, match=str(port)):
        wait_port(port, timeout=0.3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        wait_port(port, timeout=5)


def test_metric_samples_reads_one_metric_by_labels() -> None:
    text = (
        "# HELP flaskops_reconcile_total FlaskApp reconciles by result.\n"
        "# TYPE flaskops_reconcile_total counter\n"
        'flaskops_reconcile_total{result="ready"} 7.0\n'
        'flaskops_reconcile_total{result="progressing"} 3.0\n'
        "# HELP other_total x\n# TYPE other_total counter\nother_total 1.0\n"
    )
    got = metric_samples(text, "flaskops_reconcile_total")
    assert got == {(("result", "ready"),): 7.0, (("result", "progressing"),): 3.0}
    assert metric_samples(text, "missing_total") == {}
