"""Small shared helpers: progress lines, percentiles, process memory and CPU, thread pools, machine facts.

Free ports come from flaskops_testbed.ports (one helper for the whole project)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
OUT_DIR = BENCH_DIR / "out"
START = time.monotonic()


def log(message: str) -> None:
    print(f"bench [{time.monotonic() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (/proc/<pid>/stat); 0.0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def parallel(items: Sequence[Any], fn: Callable[[Any], Any], workers: int) -> list[Any]:
    """fn over items with `workers` threads, results in order; the first exception propagates."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def latency_stats(latencies: Sequence[float]) -> dict[str, float]:
    """p50, p95 and max of per-app seconds."""
    return {
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies) if latencies else 0.0,
    }


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine() -> dict[str, Any]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import version

    from flaskops_testbed import paths

    out: dict[str, str] = {}
    for dist in ("kopf", "kubernetes", "gunicorn", "psycopg", "Flask", "SQLAlchemy"):
        try:
            out[dist] = version(dist)
        except Exception:
            out[dist] = "missing"
    tb = paths.versions()
    out["kubernetes (testbed)"] = tb.get("KUBERNETES_VERSION", "?")
    out["etcd"] = tb.get("ETCD_VERSION", "?")
    out["kwok"] = tb.get("KWOK_VERSION", "?")
    out["helm"] = _first_line([str(paths.tool("helm")), "version", "--short"])
    from flaskops_testbed.postgres import find_bindir

    out["postgresql"] = _first_line([str(find_bindir() / "postgres"), "--version"])
    out["wrk"] = _first_line(["wrk", "--version"]) if _which("wrk") else "missing"
    return out


def _which(name: str) -> bool:
    from shutil import which

    return which(name) is not None
