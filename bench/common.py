"""Small shared helpers: progress lines, percentiles, process memory, free ports, machine facts."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


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
