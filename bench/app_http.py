"""The reference app under Gunicorn against a bare WSGI app with the same SQL, driver and Gunicorn settings.

Both run from the guestbook's own gunicorn.conf.py (JSON access log included) with the same flags, one
after the other in the same run; `wrk` drives each from a second process on loopback for a fixed time
with a fixed number of connections. The guestbook runs as production (HTTPS enforced behind one trusted
proxy, so every request carries `X-Forwarded-Proto: https`), its list cache off so each request reads
PostgreSQL; a last row shows the default 5 s cache.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT, log
from flaskops_testbed.ports import free_port, wait_port

WORKERS = 2
THREADS = 1
DURATION = 5  # seconds per wrk run
# Every (app, path) is measured ROUNDS times, interleaved, with all servers up at once: on a machine
# shared with other work the load drifts within a minute, and a ratio of two runs far apart in time
# measured the drift. Reported: the median over rounds; ratios: the median of per-round ratios.
ROUNDS = 3
CONNECTIONS = 16
WRK_THREADS = 1  # wrk shares the 2 cores with Gunicorn and PostgreSQL: one thread is enough
SEED_ROWS = 200
HEADERS = ["X-Forwarded-Proto: https"]
# The bare app's work behind Flask and nothing else (bench/flask_alone.py): the floor for a Flask app.
FLASK_ALONE = "Flask alone"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def seed(pg: Any, dbname: str, env: dict[str, str]) -> None:
    """A fresh database migrated by the app's own `flask db upgrade`, with SEED_ROWS entries."""
    pg.drop_database(dbname)
    pg.create_database(dbname)
    subprocess.run(
        [_bin("flask"), "db", "upgrade"], cwd=ROOT / "app", env=env, check=True, capture_output=True
    )
    with pg.connect(dbname) as conn:
        conn.execute(
            "INSERT INTO entries (author, message) SELECT 'author ' || g, repeat('message ', 10) || g "
            "FROM generate_series(1, %s) AS g",
            (SEED_ROWS,),
        )


def gunicorn(
    target: str, env: dict[str, str], port: int, log_path: Path, app_dir: Path = ROOT / "app"
) -> subprocess.Popen[bytes]:
    argv = [
        _bin("gunicorn"),
        "--config",
        str(app_dir / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        "--threads",
        str(THREADS),
        target,
    ]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=app_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.M)}
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "raw": output,
        "rps": rps,
        "p50_ms": pct.get("50", 0.0),
        "p99_ms": pct.get("99", 0.0),
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def wrk(port: int, path: str) -> dict[str, Any]:
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency"]
    for h in HEADERS:
        argv += ["-H", h]
    argv.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its children: its own, its reaped children's (a Gunicorn worker
    replaced after max_requests, a finished PostgreSQL backend) and its live children's."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / _TICK  # utime stime cutime cstime
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:13]) / _TICK
    return total


def warm(port: int, path: str) -> None:
    """Each worker imported, connected and past its first requests, outside the measured window."""
    subprocess.run(
        ["wrk", "-t1", "-c2", "-d2s", f"http://127.0.0.1:{port}{path}"], capture_output=True, check=False
    )


def run(pg: Any, work: Path, variants: list[tuple[str, Path]] | None = None) -> dict[str, Any]:
    """Bare WSGI and the guestbook, one after the other; ``variants`` adds other trees of the app.

    ``variants``: (label, app directory) pairs, e.g. the app as of an earlier commit (`git archive`),
    so before and after a change are measured in the same run against the same bare numbers. Each
    runs with its own gunicorn.conf.py and its own code first on PYTHONPATH.
    """
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: `apt-get install -y wrk` (make bench installs it)")
    dbname = "guestbook_bench"
    url = pg.url(dbname)
    base = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{ROOT / 'app'}:{ROOT}",
        "APP_ENV": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "PROXY_COUNT": "1",
        "GUNICORN_LOGLEVEL": "warning",
    }
    log(f"app_http: seeding {dbname} ({SEED_ROWS} rows) with `flask db upgrade`")
    seed(pg, dbname, base)
    app_dir = ROOT / "app"
    cases: list[tuple[str, str, dict[str, str], Path, list[str]]] = [
        ("guestbook", "wsgi:app", {"ENTRIES_CACHE_SECONDS": "0"}, app_dir, ["/api/entries", "/livez"]),
        ("bare", "bench.bare_wsgi:app", {}, app_dir, ["/api/entries", "/livez"]),
        (FLASK_ALONE, "bench.flask_alone:app", {}, app_dir, ["/api/entries", "/livez"]),
    ]
    for label, directory in variants or []:
        env = {"ENTRIES_CACHE_SECONDS": "0", "PYTHONPATH": f"{directory}:{ROOT}"}
        cases.append((label, "wsgi:app", env, directory, ["/api/entries", "/livez"]))
    cases.append(
        ("guestbook (5 s list cache)", "wsgi:app", {"ENTRIES_CACHE_SECONDS": "5"}, app_dir, ["/api/entries"])
    )
    postmaster = int((Path(pg.data_dir) / "postmaster.pid").read_text().splitlines()[0])
    servers: list[tuple[str, int, list[str], subprocess.Popen[bytes]]] = []
    rounds: list[list[dict[str, Any]]] = []
    try:
        for label, target, extra, directory, paths in cases:
            port = free_port()
            proc = gunicorn(target, {**base, **extra}, port, work / "gunicorn.log", directory)
            servers.append((label, port, paths, proc))
            for path in paths:
                warm(port, path)
        for n in range(ROUNDS):
            measured = []
            for label, port, paths, proc in servers:
                for path in paths:
                    # Server-side CPU per request (Gunicorn's processes and PostgreSQL's) is what the
                    # app costs; it barely moves with other work on the machine, throughput does.
                    before = tree_cpu_s(proc.pid) + tree_cpu_s(postmaster)
                    result = wrk(port, path)
                    spent = tree_cpu_s(proc.pid) + tree_cpu_s(postmaster) - before
                    result["cpu_us_per_request"] = 1e6 * spent / max(result["requests"], 1)
                    measured.append({"app": label, "path": path, **result})
                    log(f"app_http: round {n + 1}/{ROUNDS} {label} {path}: {result['rps']:.0f} req/s")
            rounds.append(measured)
    finally:
        for *_, proc in servers:
            stop(proc)
    rows = [
        _median_row([r for m in rounds for r in m if (r["app"], r["path"]) == key])
        for key in _keys(rounds[0])
    ]
    ratios = _ratios(rounds, "guestbook")
    return {
        "settings": {
            "workers": WORKERS,
            "threads": THREADS,
            "duration_s": DURATION,
            "connections": CONNECTIONS,
            "wrk_threads": WRK_THREADS,
            "seed_rows": SEED_ROWS,
        },
        "rows": rows,
        "ratios": ratios,
        "variant_ratios": {
            label: _ratios(rounds, label) for label in [FLASK_ALONE, *(label for label, _ in variants or [])]
        },
        "rounds": ROUNDS,
        "loadavg": list(os.getloadavg()),
    }


def _keys(measured: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["app"], r["path"]) for r in measured]


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row = {k: v for k, v in runs[0].items() if k != "raw"}
    for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request"):
        row[key] = statistics.median(r[key] for r in runs)
    row["non_2xx"] = sum(r["non_2xx"] for r in runs)
    row["requests"] = sum(r["requests"] for r in runs)
    row["rps_per_round"] = [round(r["rps"]) for r in runs]
    return row


def _ratios(rounds: list[list[dict[str, Any]]], app: str) -> dict[str, dict[str, float]]:
    """Median over rounds of (app / bare) within each round, per path."""
    ratios = {}
    for path in ("/api/entries", "/livez"):
        rps, p99, cpu = [], [], []
        for measured in rounds:
            g = next(r for r in measured if r["app"] == app and r["path"] == path)
            b = next(r for r in measured if r["app"] == "bare" and r["path"] == path)
            rps.append(g["rps"] / b["rps"])
            p99.append(g["p99_ms"] / b["p99_ms"] if b["p99_ms"] else 0.0)
            cpu.append(b["cpu_us_per_request"] / g["cpu_us_per_request"] if g["cpu_us_per_request"] else 0.0)
        ratios[path] = {
            "rps": statistics.median(rps),
            "p99": statistics.median(p99),
            # requests per server CPU-second, app / bare (higher is better, 1.0 = as cheap as bare)
            "cpu": statistics.median(cpu),
        }
    return ratios
