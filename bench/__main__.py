"""`python -m bench [--sizes 10,100,500,1000] [--no-helm | --helm-max-n 500] [--soak-minutes M]
[--skip-http] [--skip-scale] [--report-only] [--app-only]`.

`--app-only` (`make bench-app`, a few minutes): only the reference app against bare WSGI; it rewrites
just that section of bench/RESULTS.md (and its headline line) and writes bench/out/app.json.
`--app-variant LABEL=DIR` (repeatable) adds another tree of the app to the same run, e.g. a
`git archive` of an earlier commit, for before/after comparisons against the same bare numbers.

Starts its own PostgreSQL (in a temporary directory) and its own cluster named "bench", writes
bench/out/results.json, then regenerates bench/RESULTS.md and bench/scale.png from it. Stops both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import app_http, report
from bench.common import OUT_DIR, log, machine, versions
from bench.scale import run as scale_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--sizes", default="10,100,500,1000", help="FlaskApp counts, comma-separated")
    parser.add_argument("--helm-concurrency", type=int, default=8, help="helm processes at once")
    parser.add_argument(
        "--helm-max-n",
        type=int,
        default=500,
        help="the Helm phase only at N <= this (N = 1000 with Helm takes hours on 2 cores)",
    )
    parser.add_argument("--no-helm", action="store_true", help="no Helm phase at any size")
    parser.add_argument(
        "--steady-seconds", type=float, default=60, help="the settled window after all Ready (seconds)"
    )
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=0,
        help="after the largest N's upgrade: image upgrades of all apps every 2 min for M minutes, RSS per minute",
    )
    parser.add_argument(
        "--pg-sweep", default="1,2,4,8", help="provisioning concurrencies for the PostgreSQL floor"
    )
    parser.add_argument("--skip-http", action="store_true", help="no app_http benchmark")
    parser.add_argument("--skip-scale", action="store_true", help="no operator/Helm benchmark")
    parser.add_argument("--no-profile", action="store_true", help="no py-spy on the largest size")
    parser.add_argument(
        "--operator-only", action="store_true", help="only the operator's phases (before/after a change)"
    )
    parser.add_argument("--cluster-name", default="bench", help="the testbed cluster's name")
    parser.add_argument("--report-only", action="store_true", help="only regenerate RESULTS.md from out/")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "results.json")
    parser.add_argument("--app-only", action="store_true", help="only the app benchmark (a few minutes)")
    parser.add_argument(
        "--app-variant", action="append", default=[], metavar="LABEL=DIR", help="another app tree to compare"
    )
    args = parser.parse_args(argv)
    variants = [(label, Path(d).resolve()) for label, _, d in (v.partition("=") for v in args.app_variant)]
    if args.app_only:
        return app_only(variants)
    if args.report_only:
        report.write(json.loads(args.out.read_text()))
        return 0

    from flaskops_testbed.postgres import LocalPostgres

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fbench-", dir="/tmp"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "sizes": sizes,
    }
    if (args.skip_http or args.skip_scale) and args.out.exists():
        # A partial run keeps the other part's numbers from the last full run.
        previous = json.loads(args.out.read_text())
        for key in ("http", "scale", "profile"):
            if key in previous:
                results[key] = previous[key]
    started = time.monotonic()
    pg = LocalPostgres(work / "pg")
    try:
        pg.start()
        pg.execute("ALTER SYSTEM SET max_connections = 200")
        pg.restart()
        if not args.skip_http:
            results["http"] = app_http.run(pg, work, variants)
        if not args.skip_scale:
            scale = scale_run.run(
                pg,
                work,
                sizes,
                profile=not args.no_profile,
                helm_concurrency=args.helm_concurrency,
                helm_max_n=0 if args.no_helm else args.helm_max_n,
                operator_only=args.operator_only,
                cluster_name=args.cluster_name,
                steady_seconds=args.steady_seconds,
                soak_minutes=args.soak_minutes,
                pg_sweep=[int(c) for c in args.pg_sweep.split(",") if c.strip()],
            )
            results["scale"] = scale
            profiled = [s["operator"]["profile"] for s in scale["sizes"] if s["operator"]["profile"]]
            prof = profiled[-1] if profiled else None
            if prof:
                from bench import profile

                results["profile"] = profile.summarize(Path(prof))
                shutil.copy(prof, OUT_DIR / "profile-raw.txt")
    finally:
        pg.destroy()
    results["wall_s"] = time.monotonic() - started
    results["loadavg_at_end"] = list(os.getloadavg())
    args.out.write_text(json.dumps(results, indent=1, default=str))
    log(f"results in {args.out}")
    if not args.operator_only:  # a before/after run of the operator alone leaves RESULTS.md alone
        report.write(results)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def app_only(variants: list[tuple[str, Path]]) -> int:
    """The app benchmark alone, on its own PostgreSQL; updates the app section of RESULTS.md in place."""
    from flaskops_testbed.postgres import LocalPostgres

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fbench-app-", dir="/tmp"))
    pg = LocalPostgres(work / "pg")
    started = time.monotonic()
    loadavg_at_start = list(os.getloadavg())
    try:
        pg.start()
        http = app_http.run(pg, work, variants)
    finally:
        pg.destroy()
    http["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    http["loadavg_at_start"] = loadavg_at_start
    http["wall_s"] = time.monotonic() - started
    (OUT_DIR / "app.json").write_text(json.dumps(http, indent=1, default=str))
    report.update_http(http)
    shutil.rmtree(work, ignore_errors=True)
    log(f"app section of bench/RESULTS.md rewritten; raw numbers in {OUT_DIR / 'app.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
