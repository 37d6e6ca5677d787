"""The operator as a child process, the way the chart runs it (`python -m flaskops --liveness=...`).

One harness for every caller that starts the operator: the end-to-end tests, the benchmark and
`make demo`. It picks free loopback ports for the liveness probe and for /metrics, appends stdout and
stderr to a log file, waits until /healthz answers 200 (or the process exits), and stops it with
SIGTERM (SIGKILL after a timeout). Leader election, the webhook and the watched namespace are the
operator's own settings: pass them as `extra_env` (FLASKOPS_LEADER_ELECTION=true, FLASKOPS_WEBHOOK=...)
or `args` (`--namespace=shop`, as the chart's Role-only mode does).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from flaskops_testbed.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT_S = 60.0


class OperatorExited(RuntimeError):
    """The operator exited (or never answered /healthz) while being started; the message has its log tail."""


class OperatorProcess:
    """`python -m flaskops` as a child process, with its logs in `log_path` (appended).

    kubeconfig: exported as KUBECONFIG; None leaves the environment's own (the demo passes a full env).
    base_env: the environment to start from (default: this process's); `extra_env` is laid over it, after
    KUBECONFIG and the metrics address/port, so a caller may override those too.
    args: extra command-line arguments after the liveness flag (e.g. `--namespace=shop`).
    new_session: start it in its own session (the demo's operator outlives `make demo`'s process group).
    """

    def __init__(
        self,
        kubeconfig: Path | None,
        log_path: Path,
        extra_env: Mapping[str, str] | None = None,
        *,
        args: Sequence[str] = (),
        base_env: Mapping[str, str] | None = None,
        new_session: bool = False,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = Path(log_path)
        self.extra_env = dict(extra_env or {})
        self.args = list(args)
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = free_port()
        # Its own metrics port: parallel operators on one machine must not share the default 8081.
        self.metrics_port = free_port()

    def argv(self) -> list[str]:
        """The command line: the chart's (`python -m flaskops --liveness=...`) plus `args`."""
        return [
            sys.executable,
            "-m",
            "flaskops",
            f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
            *self.args,
        ]

    def env(self) -> dict[str, str]:
        env = dict(self.base_env)
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        env["FLASKOPS_METRICS_ADDR"] = "127.0.0.1"
        env["FLASKOPS_METRICS_PORT"] = str(self.metrics_port)
        # As the operator image sets it (Dockerfile): what the tests and the bench run is what ships.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        env.update(self.extra_env)
        return env

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the operator was not started")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = HEALTH_TIMEOUT_S) -> OperatorProcess:
        """Start it and return once /healthz answers 200.

        Raises OperatorExited (with the log's tail) when it exits first or is not healthy in `timeout`
        seconds (then it is stopped).
        """
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv(),
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=self.new_session,
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.proc.poll() is not None:
                raise OperatorExited(
                    f"the operator exited with {self.proc.returncode}; {self.log_path}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise OperatorExited(
                    f"the operator was not healthy in {timeout:.0f}s; {self.log_path}:\n{self.tail()}"
                )
            time.sleep(0.2)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def scrape(self, timeout: float = 10) -> str:
        """The text of its /metrics (Prometheus exposition format). Raises OSError when it does not answer."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=timeout) as resp:
            return str(resp.read().decode())

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as a crash or an OOM kill would do."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; reaps the process. A no-op when it is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "<no log>"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric `name` in Prometheus text `text`: {sorted label pairs: value}.

    `name` is the sample name as exposed (a Counter `flaskops_reconcile` is `flaskops_reconcile_total`).
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = float(sample.value)
    return out
