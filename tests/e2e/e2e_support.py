"""Helpers for the end-to-end tests: the operator as a process, FlaskApp bodies, kubectl-level reads."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
import yaml

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """`python -m flaskops` as a child process, the way the chart runs it, with its logs in a file."""

    def __init__(self, kubeconfig: Path, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = free_port()

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "flaskops", f"--liveness=http://127.0.0.1:{self.health_port}/healthz"]

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.extra_env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv(), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        url = f"http://127.0.0.1:{self.health_port}/healthz"

        def healthy_or_gone() -> bool:
            assert self.proc is not None
            return self.proc.poll() is not None or requests.get(url, timeout=1).status_code == 200

        wait_for(healthy_or_gone, timeout=60, what="the operator's liveness endpoint")
        if self.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as a crash or an OOM kill would do."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "<no log>"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def flaskapp(
    name: str,
    namespace: str,
    *,
    server: str,
    environment: str = "production",
    image: str = "registry.example/guestbook:1.0.0",
    dbname: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A FlaskApp body; database names are explicit because test namespaces carry the token `test`."""
    database = {"server": server, "name": dbname or f"e2e_{secrets.token_hex(4)}", **spec.pop("database", {})}
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.FLASKAPP_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "environment": environment,
            "image": image,
            "replicas": 2,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
            "database": database,
            **spec,
        },
    }


class Apps:
    """Read and change FlaskApps the way a user does: kubectl."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def apply(self, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        out = self.kube.kubectl(
            "get", "flaskapp", name, "-n", namespace, "-o", "json", "--show-managed-fields"
        ).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def condition(self, namespace: str, name: str, type_: str) -> dict[str, Any]:
        for cond in (self.get(namespace, name).get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return cond  # type: ignore[no-any-return]
        return {}

    def wait(self, namespace: str, name: str, condition: str = "Ready", timeout: int = 120) -> None:
        """`kubectl wait --for=condition=...`, the user's own command."""
        self.kube.kubectl(
            "wait",
            f"--for=condition={condition}",
            f"flaskapp/{name}",
            "-n",
            namespace,
            f"--timeout={timeout}s",
            timeout=timeout + 30,
        )

    def wait_reason(
        self, namespace: str, name: str, type_: str, reason: str, timeout: float = 120
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any]:
            cond = self.condition(namespace, name, type_)
            if cond.get("reason") != reason:
                raise NotYet(f"{type_}={cond.get('status')}/{cond.get('reason')}: {cond.get('message')}")
            return cond

        return wait_for(reached, timeout=timeout, what=f"{type_} reason {reason} on {namespace}/{name}")

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        out = self.kube.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name},involvedObject.kind={names.FLASKAPP_KIND}",
            "-o",
            "json",
        ).stdout
        return list(json.loads(out)["items"])
