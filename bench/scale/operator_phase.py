"""The operator's phase of one size N: a fresh `python -m flaskops` (the testbed's one harness,
flaskops_testbed.operator_process), N FlaskApps created at once -> all Ready, a steady window, an image
upgrade of all N -> all Ready on the new image, and optionally a memory soak of periodic upgrades.

Measured here (the audit log's request counts are attached later, from the windows recorded here):
- seconds from the first create (or patch) to all Ready, per-app latency;
- reconciles per window from the operator's Prometheus counter flaskops_reconcile_total{result},
  scraped from its metrics port at each window's start and end;
- RSS sampled once a second (VmRSS), VmHWM (peak) at stop; the operator's CPU seconds;
- the control plane's CPU seconds (kube-apiserver, etcd, ...) per window; the load average at both ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, latency_stats, loadavg, log, parallel, peak_rss_mib, rss_mib
from bench.scale.cluster import (
    GROUP,
    IMAGE_V1,
    IMAGE_V2,
    PLURAL,
    VERSION,
    Cluster,
    ReadyTracker,
    cpu_delta,
    flaskapp,
)
from flaskops_testbed.operator_process import OperatorProcess, metric_samples

RECONCILE_METRIC = "flaskops_reconcile_total"
SOAK_PERIOD_S = 120


class Running:
    """The operator process plus a 1 s RSS sampler and its reconcile counter."""

    def __init__(self, kubeconfig: Path, log_path: Path) -> None:
        # No webhook (the bench measures reconciles); metrics on, as in the chart, on a port of its own.
        self.proc = OperatorProcess(kubeconfig, log_path, {"FLASKOPS_WEBHOOK": "none"})
        self.samples: list[tuple[float, float]] = []  # (epoch s, RSS MiB)
        self._stop = threading.Event()

    def start(self) -> Running:
        self.proc.start()
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set() and self.proc.running():
            self.samples.append((time.time(), rss_mib(self.proc.pid)))
            self._stop.wait(1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> float:
        return rss_mib(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def reconciles(self) -> dict[str, float]:
        """flaskops_reconcile_total by result, now; {} when the metrics port does not answer."""
        try:
            text = self.proc.scrape()
        except OSError as exc:
            log(f"operator metrics did not answer: {exc}")
            return {}
        return {dict(k).get("result", "?"): v for k, v in metric_samples(text, RECONCILE_METRIC).items()}

    def heapdump(self, label: str, timeout: float = 300) -> None:
        """With FLASKOPS_HEAPDUMP=<dir> (flaskops/heapdump.py): SIGUSR1, wait for the report, name it `label`."""
        folder = os.environ.get("FLASKOPS_HEAPDUMP")
        if not folder:
            return
        before = set(Path(folder).glob(f"heap-{self.pid}-*.json"))
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.time() + timeout
        while time.time() < deadline:
            new = set(Path(folder).glob(f"heap-{self.pid}-*.json")) - before
            if new:
                time.sleep(1)  # the writer may still be writing it
                path = new.pop()
                path.rename(path.with_name(f"{label}-{path.name}"))
                log(f"heap report {label}: {path.name}")
                return
            time.sleep(0.5)
        log(f"heap report {label}: none in {timeout:.0f}s")

    def stop(self) -> float:
        """Stop; returns the peak RSS in MiB (VmHWM), read just before."""
        self._stop.set()
        peak = peak_rss_mib(self.pid)
        self.proc.stop()
        return peak


def reconcile_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Reconciles between two scrapes: {"total": n, "by_result": {...}}; NaN total when a scrape failed."""
    if not after:
        return {"total": float("nan"), "by_result": {}}
    by = {k: round(v - before.get(k, 0.0)) for k, v in after.items() if v - before.get(k, 0.0)}
    return {"total": sum(by.values()), "by_result": by}


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


def _patch_all(cl: Cluster, ns: str, names: list[str], image: str) -> dict[str, float]:
    """Patch every app's image (8 at once); {name: epoch seconds of its patch}."""
    patched: dict[str, float] = {}

    def one(name: str) -> None:
        cl.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"image": image}})
        patched[name] = time.time()

    parallel(names, one, 8)
    return patched


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (epoch s, MiB) samples, in MiB per hour; NaN with fewer than 2 samples."""
    if len(samples) < 2:
        return float("nan")
    t0 = samples[0][0]
    xs = [(t - t0) / 3600 for t, _ in samples]
    ys = [y for _, y in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if not var:
        return float("nan")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def per_minute(samples: list[tuple[float, float]], t0: float, t1: float) -> list[tuple[float, float]]:
    """One sample per minute of [t0, t1] (the first at or after each minute mark)."""
    out: list[tuple[float, float]] = []
    mark = t0
    for t, v in samples:
        if t0 <= t <= t1 and t >= mark:
            out.append((t, v))
            mark = t + 60
    return out


def soak(cl: Cluster, op: Running, ns: str, names: list[str], minutes: float) -> dict[str, Any]:
    """Upgrade all apps to a new image every SOAK_PERIOD_S seconds (or as soon as the last round is
    Ready, if it took longer) for `minutes`; RSS one sample per minute and its slope in MiB/hour."""
    log(f"soak: {minutes:g} min of image upgrades of all {len(names)} apps every {SOAK_PERIOD_S}s")
    t0 = time.time()
    rec0, cpu0 = op.reconciles(), op.cpu()
    end = t0 + minutes * 60
    rounds: list[float] = []
    k = 0
    while time.time() < end:
        k += 1
        image = f"registry.example/guestbook:1.2.{k}"
        tracker = ReadyTracker(cl, ns, image).start()
        r0 = time.time()
        _patch_all(cl, ns, names, image)
        tracker.wait(names, timeout=60 + 3 * len(names))
        tracker.stop()
        rounds.append(time.time() - r0)
        log(f"soak: round {k} Ready in {rounds[-1]:.1f}s, RSS {op.rss():.1f} MiB")
        pause = min(r0 + SOAK_PERIOD_S, end) - time.time()
        if pause > 0:
            time.sleep(pause)  # the period between rounds is the point: nothing to wait for
    t1 = time.time()
    minute = per_minute(op.samples, t0, t1)
    return {
        "t0": t0,
        "t1": t1,
        "minutes": (t1 - t0) / 60,
        "rounds": len(rounds),
        "round_s": rounds,
        "rss_mib_per_minute": [round(v, 1) for _, v in minute],
        "rss_start_mib": minute[0][1] if minute else float("nan"),
        "rss_end_mib": minute[-1][1] if minute else float("nan"),
        "slope_mib_per_hour": slope_per_hour(minute),
        "reconciles": reconcile_delta(rec0, op.reconciles()),
        "cpu_s": op.cpu() - cpu0,
    }


def run(
    cl: Cluster, n: int, work: Path, *, profile: bool, steady_seconds: float, soak_minutes: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator phase for N apps in namespace op-<N>; (result, {"namespace", "names"})."""
    ns = f"op-{n}"
    cl.namespace(ns)
    names = [f"app-{i:04d}" for i in range(n)]
    load = {"start": loadavg()}
    op = Running(cl.kubeconfig, work / f"operator-{n}.log").start()
    rss_idle = op.rss()
    op.heapdump(f"n{n}-idle")
    profiler = Profiler(op.pid, work / f"profile-{n}.txt") if profile else None
    cpu0, rec0, cp0 = op.cpu(), op.reconciles(), cl.cpu()
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
    rec1, cp1 = op.reconciles(), cl.cpu()
    cpu_create = op.cpu() - cpu0
    rss_ready = op.rss()
    op.heapdump(f"n{n}-ready")
    load["create_end"] = loadavg()
    profile_path = profiler.stop() if profiler else None
    latencies = [tracker.ready_at[nm] - created[nm] for nm in names]
    log(f"operator: {n} Ready in {t1 - t0:.1f}s; steady state for {steady_seconds:g}s")
    time.sleep(steady_seconds)  # the steady window is a fixed span by definition
    t2 = time.time()
    rec2, cpu2 = op.reconciles(), op.cpu()
    rss_settled = op.rss()
    op.heapdump(f"n{n}-settled")
    load["steady_end"] = loadavg()

    log(f"operator: upgrading {n} FlaskApps to {IMAGE_V2}")
    tracker = ReadyTracker(cl, ns, IMAGE_V2).start()
    u0 = time.time()
    cp2 = cl.cpu()
    patched = _patch_all(cl, ns, names, IMAGE_V2)
    tracker.wait(names, timeout=60 + 3 * n)
    u1 = time.time()
    tracker.stop()
    rec3, cp3 = op.reconciles(), cl.cpu()
    cpu_upgrade = op.cpu() - cpu2
    up_latencies = [tracker.ready_at[nm] - patched[nm] for nm in names]
    load["upgrade_end"] = loadavg()
    op.heapdump(f"n{n}-upgraded")
    soaked = soak(cl, op, ns, names, soak_minutes) if soak_minutes > 0 else None
    time.sleep(2)  # let the last status writes land inside the process before reading its peak
    peak = op.stop()
    load["end"] = loadavg()
    result = {
        "create": {
            "t0": t0,
            "t1": t1,
            "total_s": t1 - t0,
            "apply_s": t_applied - t0,
            **latency_stats(latencies),
            "latency_s": sorted(latencies),
            "reconciles": reconcile_delta(rec0, rec1),
            "control_plane_cpu_s": cpu_delta(cp0, cp1),
        },
        "steady": {"t0": t1, "t1": t2, "seconds": t2 - t1, "reconciles": reconcile_delta(rec1, rec2)},
        "upgrade": {
            "t0": u0,
            "t1": u1,
            "total_s": u1 - u0,
            **latency_stats(up_latencies),
            "reconciles": reconcile_delta(rec2, rec3),
            "control_plane_cpu_s": cpu_delta(cp2, cp3),
        },
        "soak": soaked,
        "rss_mib": {
            "idle": rss_idle,
            "all_ready": rss_ready,
            "settled": rss_settled,
            "peak": peak,
            "samples": op.samples[::5],
        },
        "cpu_s_create": cpu_create,
        "cpu_s_upgrade": cpu_upgrade,
        "load": load,
        "profile": str(profile_path) if profile_path else None,
    }
    return result, {"namespace": ns, "names": names}
