"""bench/RESULTS.md and bench/scale.png from the results JSON (`python -m bench --report-only` redoes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR

PLOT = BENCH_DIR / "scale.png"
RESULTS = BENCH_DIR / "RESULTS.md"

# Written by hand after looking at the numbers (the rest of the page is generated); `python -m bench`
# keeps whatever is in bench/NOTES.md and puts it under "Findings".
NOTES = BENCH_DIR / "NOTES.md"


def _f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}" if x == x else "n/a"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and b == b else "n/a"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio == ratio and ratio else "n/a"


def _pre(size: dict[str, Any]) -> float:
    """Helm with databases made beforehand; NaN when that phase did not run."""
    return float(((size.get("helm") or {}).get("install_precreated") or {}).get("total_s", float("nan")))


def _g(d: Any, *keys: str | int) -> Any:
    """d[k1][k2]...; NaN when any step is missing (a phase that did not run, an older results file)."""
    for k in keys:
        try:
            d = d[k]
        except (KeyError, IndexError, TypeError):
            return float("nan")
        if d is None:
            return float("nan")
    return d


def _helm_ran(size: dict[str, Any]) -> bool:
    return "install_hook_db" in (size.get("helm") or {})


def _load(x: Any) -> str:
    return "/".join(f"{v:.1f}" for v in x[:2]) if isinstance(x, list) else "n/a"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def plot(sizes: list[dict[str, Any]], path: Path = PLOT) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ns = [s["n"] for s in sizes]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=90)
    ok = [s for s in sizes if not s["operator"]["create"].get("stalled")]
    ax1.plot([s["n"] for s in ok], [s["operator"]["create"]["total_s"] for s in ok], "o-", label="operator")
    series = [
        ("helm, hook creates DB", [_g(s, "helm", "install_hook_db", "total_s") for s in sizes], "s-"),
        ("helm, DB beforehand", [_pre(s) for s in sizes], "^-"),
        ("floor: PostgreSQL", [_g(s, "pg_floor", "ensure_database_s") for s in sizes], "x--"),
        ("floor: API writes", [_g(s, "api_floor", "total_s") for s in sizes], "+--"),
    ]
    for label, ys, style in series:
        ax1.plot(ns, ys, style, label=label)
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="FlaskApps (N)",
        ylabel="seconds until all Ready",
        title="install N apps at once",
    )
    ax1.legend(fontsize=7)
    ax2.plot(ns, [s["operator"]["upgrade"]["total_s"] for s in sizes], "o-", label="operator")
    ax2.plot(ns, [_g(s, "helm", "upgrade", "total_s") for s in sizes], "s-", label="helm upgrade --wait")
    ax2.set(xscale="log", yscale="log", xlabel="FlaskApps (N)", title="image upgrade of all N")
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _scale_section(scale: dict[str, Any]) -> list[str]:
    sizes = scale["sizes"]
    lines: list[str] = []
    skipped: dict[str, list[str]] = {}
    for s in sizes:
        if not _helm_ran(s):
            skipped.setdefault(str((s.get("helm") or {}).get("skipped") or "not run"), []).append(str(s["n"]))
    rows = []
    for s in sizes:
        op, h = s["operator"], s.get("helm") or {}
        mark = " †" if op["create"].get("stalled") else ""
        hook = _g(h, "install_hook_db", "total_s")
        rows.append(
            [
                str(s["n"]),
                _f(op["create"]["total_s"]) + mark,
                f"{_f(op['create']['p50_s'])} / {_f(op['create']['p95_s'])}{mark}",
                _f(hook) if _helm_ran(s) else "skipped",
                f"{_f(_g(h, 'install_hook_db', 'p50_s'))} / {_f(_g(h, 'install_hook_db', 'p95_s'))}",
                _f(_pre(s)),
                f"**{_ratio(op['create']['total_s'], hook)}**{mark}",
                _ratio(op["create"]["total_s"], _pre(s)) + mark,
            ]
        )
    lines += [
        "### Install N apps at once: seconds from the first create until all are Ready",
        "",
        "Per-app latency is from the app's creation (operator) or from the batch start (Helm: every app is",
        "requested at t=0 and waits for a free `helm` slot, as a script looping over releases would) to Ready.",
        "",
        *_table(
            [
                "N",
                "operator total",
                "operator p50 / p95",
                "helm (hook DB) total",
                "helm p50 / p95",
                "helm (DB beforehand) total",
                "operator / helm (hook DB)",
                "operator / helm (DB beforehand)",
            ],
            rows,
        ),
        "",
        *[
            f"† N = {s['n']}: not a measurement of the operator — {s['operator']['create']['stalled']}"
            for s in sizes
            if s["operator"]["create"].get("stalled")
        ],
    ]
    for reason, ns in skipped.items():
        lines += [f"Helm skipped at N = {', '.join(ns)}: {reason}."]
    lines += [""]
    rows = []
    for s in sizes:
        op, h = s["operator"], s.get("helm") or {}
        rows.append(
            [
                str(s["n"]),
                _f(op["upgrade"]["total_s"]),
                f"{_f(op['upgrade']['p50_s'])} / {_f(op['upgrade']['p95_s'])}",
                _f(_g(h, "upgrade", "total_s")) if _helm_ran(s) else "skipped",
                f"{_f(_g(h, 'upgrade', 'p50_s'))} / {_f(_g(h, 'upgrade', 'p95_s'))}",
                f"**{_ratio(op['upgrade']['total_s'], _g(h, 'upgrade', 'total_s'))}**",
            ]
        )
    lines += [
        "### Image upgrade of all N apps (migration Job, then rollout): seconds until all serve the new image",
        "",
        *_table(
            [
                "N",
                "operator total",
                "operator p50 / p95",
                "helm upgrade total",
                "helm p50 / p95",
                "operator / helm",
            ],
            rows,
        ),
        "",
    ]
    lines += _floor_tables(sizes)
    lines += _api_tables(sizes)
    lines += _process_tables(sizes)
    big = sizes[-1]
    lines += [
        f"Top API requests of the operator during the N = {big['n']} install (verb resource: count):",
        "",
        "```",
        *[f"{k:<40} {v}" for k, v in _top(big).items()],
        "```",
        "",
    ]
    if scale.get("errors"):
        lines += ["Sizes that failed: " + "; ".join(scale["errors"]), ""]
    lines += _how_measured(sizes)
    return lines


def _top(size: dict[str, Any]) -> dict[str, int]:
    got = _g(size, "operator", "api", "create", "by_resource")
    return got if isinstance(got, dict) else {}


def _floor_tables(sizes: list[dict[str, Any]]) -> list[str]:
    sweep = sorted(
        {c["concurrency"] for s in sizes for c in (_g(s, "pg_floor", "sweep") or []) if isinstance(c, dict)}
    )
    rows = []
    for s in sizes:
        pg, api, op = s.get("pg_floor") or {}, s.get("api_floor") or {}, s["operator"]
        by_c = {c["concurrency"]: c["ensure_database_s"] for c in pg.get("sweep") or []}
        if not by_c and "ensure_database_s" in pg:  # an older results file: one concurrency
            by_c = {pg.get("concurrency", 0): pg["ensure_database_s"]}
        total = op["create"]["total_s"]
        rows.append(
            [
                str(s["n"]),
                *[_f(by_c.get(c, float("nan"))) for c in sweep],
                f"{_f(_g(pg, 'create_database_s'))} (c={_g(pg, 'operator_concurrency')})",
                f"{_f(_g(api, 'total_s'))} ({_g(api, 'workers')} workers)",
                _f(_g(api, "cpu_s", "kube-apiserver")),
                _f(_g(api, "cpu_s", "etcd")),
                f"{_f(_g(op, 'create', 'control_plane_cpu_s', 'kube-apiserver'))} / "
                f"{_f(_g(op, 'create', 'control_plane_cpu_s', 'etcd'))}",
                _ratio(total, _g(pg, "ensure_database_s")),
                _ratio(total, _g(api, "total_s")),
            ]
        )
    return [
        "### Floors: what the work itself costs on this machine",
        "",
        *_table(
            [
                "N",
                *[f"PG provisioning SQL, c={c} (s)" for c in sweep],
                "PG bare CREATE DATABASE (s)",
                "API minimum writes (s)",
                "API floor: kube-apiserver CPU s",
                "API floor: etcd CPU s",
                "operator install: kube-apiserver / etcd CPU s",
                "operator / PG floor at its concurrency",
                "operator / API floor",
            ],
            rows,
        ),
        "",
    ]


def _api_tables(sizes: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []

    def verbs(d: Any) -> str:
        per = d.get("per_app", {}) if isinstance(d, dict) else {}
        return ", ".join(f"{v} {k}" for v, k in sorted(per.items(), key=lambda x: -x[1])) or "n/a"

    for phase, title in (("create", "install"), ("upgrade", "image upgrade")):
        rows = []
        for s in sizes:
            c = _g(s, "operator", "api", phase)
            if not isinstance(c, dict):
                continue
            named = c.get("per_app_named") or {}
            rows.append(
                [
                    str(s["n"]),
                    _f(named.get("requests", float("nan"))),
                    _f(named.get("writes_without_events", float("nan"))),
                    _f(named.get("events", float("nan"))),
                    _f(named.get("status_patches", float("nan"))),
                    _f(named.get("reads", float("nan"))),
                    _f(c.get("reconciles_per_app", float("nan"))),
                    f"**{_f(c.get('reads_per_reconcile', float('nan')), 2)}**",
                    verbs(c),
                ]
            )
        lines += [
            f"### The operator's API requests per app, {title} (audit log)",
            "",
            *_table(
                [
                    "N",
                    "requests/app",
                    "writes/app (without Events)",
                    "Events/app",
                    "status patches/app",
                    "reads/app (get+list)",
                    "reconciles/app",
                    "reads per reconcile",
                    "requests/app by verb",
                ],
                rows,
            ),
            "",
        ]
    rows = []
    for s in sizes:
        h = s.get("helm") or {}
        if not _helm_ran(s):
            continue
        rows.append(
            [
                str(s["n"]),
                *[
                    f"{_f(_g(h, p, 'api', 'per_app_named', 'requests'))} "
                    f"({_f(_g(h, p, 'api', 'per_app_named', 'writes'))} writes): {verbs(_g(h, p, 'api'))}"
                    for p in ("install_hook_db", "upgrade")
                ],
            ]
        )
    if rows:
        lines += [
            "### Helm's API requests per app (audit log, user agent `Helm/…`)",
            "",
            *_table(["N", "helm install (hook DB): requests/app (writes) by verb", "helm upgrade"], rows),
            "",
        ]
    rows = []
    for s in sizes:
        c = _g(s, "operator", "api", "steady")
        if not isinstance(c, dict):
            continue
        pm = c.get("per_minute") or {}
        rows.append(
            [
                str(s["n"]),
                _f(_g(s, "operator", "steady", "seconds"), 0),
                f"**{_f(pm.get('requests', float('nan')), 2)}**",
                _f(pm.get("reads", float("nan")), 2),
                _f(pm.get("writes", float("nan")), 2),
                ", ".join(f"{v} {k}" for v, k in sorted(c.get("verbs", {}).items())) or "none",
                _f(c.get("reconciles", float("nan")), 0),
            ]
        )
    lines += [
        "### Settled: the operator's requests per minute once all apps are Ready",
        "",
        *_table(
            [
                "N",
                "window (s)",
                "requests/min",
                "reads/min (get+list)",
                "writes/min",
                "requests in the window by verb",
                "reconciles in the window",
            ],
            rows,
        ),
        "",
    ]
    return lines


def _process_tables(sizes: list[dict[str, Any]]) -> list[str]:
    rows = []
    for s in sizes:
        op = s["operator"]
        rss = op["rss_mib"]
        rows.append(
            [
                str(s["n"]),
                _f(rss["idle"]),
                _f(rss.get("all_ready", float("nan"))),
                _f(rss.get("settled", float("nan"))),
                f"**{_f(rss['peak'])}**",
                _f(op["cpu_s_create"]),
                _f(1000 * op["cpu_s_create"] / s["n"]),
                _f(op.get("cpu_s_upgrade", float("nan"))),
            ]
        )
    lines = [
        "### Operator process",
        "",
        *_table(
            [
                "N",
                "RSS after start (MiB)",
                "RSS at all Ready",
                "RSS settled (end of steady window)",
                "peak RSS (VmHWM)",
                "CPU s during install",
                "CPU ms per app (install)",
                "CPU s during upgrade",
            ],
            rows,
        ),
        "",
    ]
    for s in sizes:
        soak = s["operator"].get("soak")
        if not soak:
            continue
        lines += [
            f"### Memory soak at N = {s['n']}: image upgrades of all apps every 2 min",
            "",
            f"{_f(soak['minutes'])} min, {soak['rounds']} rounds (each round to all Ready: median "
            f"{_f(sorted(soak['round_s'])[len(soak['round_s']) // 2] if soak['round_s'] else float('nan'))} s); "
            f"RSS {_f(soak['rss_start_mib'])} -> {_f(soak['rss_end_mib'])} MiB, least-squares slope "
            f"**{_f(soak['slope_mib_per_hour'], 2)} MiB/hour** over one sample per minute; "
            f"{_f(_g(soak, 'reconciles', 'total'), 0)} reconciles, "
            f"{_f(_g(s, 'operator', 'api', 'soak', 'per_minute', 'requests'))} requests/min.",
            "",
            "RSS per minute (MiB): " + ", ".join(f"{x:.0f}" for x in soak["rss_mib_per_minute"]),
            "",
        ]
    rows = []
    for s in sizes:
        op_load = s["operator"].get("load") or {}
        rows.append(
            [
                str(s["n"]),
                _load(_g(s, "load", "start")),
                f"{_load(_g(s, 'pg_floor', 'load', 'start'))} → {_load(_g(s, 'pg_floor', 'load', 'end'))}",
                f"{_load(op_load.get('start'))} → {_load(op_load.get('create_end'))} → "
                f"{_load(op_load.get('steady_end'))} → {_load(op_load.get('upgrade_end'))}",
                f"{_load(_g(s, 'api_floor', 'load', 'start'))} → {_load(_g(s, 'api_floor', 'load', 'end'))}",
                f"{_load(_g(s, 'helm', 'load', 'start'))} → {_load(_g(s, 'helm', 'load', 'end'))}",
                _load(_g(s, "load", "end")),
            ]
        )
    lines += [
        "### Machine load during each phase (1-min / 5-min load average; 2 cores)",
        "",
        *_table(
            [
                "N",
                "size start",
                "PG floor",
                "operator: start → all Ready → settled → upgraded",
                "API floor",
                "Helm",
                "size end",
            ],
            rows,
        ),
        "",
    ]
    return lines


def _how_measured(sizes: list[dict[str, Any]]) -> list[str]:
    st = sizes[0].get("settings") or {}
    return [
        "### How each number is measured",
        "",
        "- **Cluster**: the testbed (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK pods)",
        "  with kube-controller-manager's client at 200 requests/s (burst 400) instead of its default 20",
        "  (30): at the default, the Job and Deployment controllers' own writes (~8 per app) cap any install",
        "  of N apps at ~N/2.5 s, whoever creates them. Both approaches run on the same cluster.",
        "- **Apply → all Ready**: N FlaskApps created at once (8 client threads); a watch records when each is",
        "  Ready=True for its generation with `status.servingImage` equal to the spec's image; total = first",
        "  create to the last app Ready.",
        "- **Requests per app**: the API server's audit log (Metadata level, every request once it completes;",
        "  Leases and health endpoints excluded), the operator's user agents `flaskops-operator` and `kopf/…`,",
        "  in the window from the first create to all Ready (install) or first patch to all Ready (upgrade),",
        "  divided by N. Writes = create/update/patch/delete; Events = `create events`; status patches = patch",
        "  or update of `*/status`; reads = get + list. A watch is logged when it ends, at the time it began:",
        "  one still open when the log is read is not counted.",
        "- **Reads per reconcile**: those reads divided by the reconciles in the same window, from the",
        "  operator's counter `flaskops_reconcile_total` (all results) scraped from its metrics port at both",
        "  ends of the window.",
        f"- **Settled**: the {_f(st.get('steady_seconds', 60), 0)} s right after all apps are Ready; requests",
        "  per minute of every verb, reads and writes apart.",
        "- **RSS**: VmRSS of the operator process once a second; after start, at all Ready, at the end of the",
        "  settled window; peak = VmHWM just before SIGTERM. CPU = utime + stime from /proc/<pid>/stat.",
        "- **Memory soak** (`--soak-minutes M`, at the largest N): every 2 min a patch of all apps to a new",
        "  image, then wait for all Ready; RSS one sample per minute; slope by least squares.",
        "- **PostgreSQL floor**: N x the operator's own provisioning SQL (`postgres.server.ensure_database`) from",
        f"  a thread pool at each concurrency {', '.join(map(str, st.get('pg_sweep', [])))} (what",
        f"  FLASKOPS_PROVISION_CONCURRENCY may be; the operator ran with {st.get('provision_concurrency')}),",
        "  and N bare `CREATE DATABASE` at the operator's concurrency.",
        "- **API floor**: the minimum writes per app (2 Secrets, Job, Deployment, Service, 1 status patch) from",
        f"  {st.get('max_workers')} threads (FLASKOPS_MAX_WORKERS); kube-apiserver's and etcd's CPU seconds are",
        "  utime + stime from /proc/<pid>/stat of the testbed's processes (kwokctl's pid files), read before and",
        "  after; the same is read over the operator's install.",
        "- **Machine load**: `os.getloadavg()` at the start and end of every phase; other sessions share the cores.",
        "",
    ]


def _http_section(http: dict[str, Any]) -> list[str]:
    st = http["settings"]
    with_cpu = all("cpu_us_per_request" in r for r in http["rows"])
    rows = [
        [
            r["app"],
            r["path"],
            _f(r["rps"], 0)
            + (f" ({', '.join(map(str, r['rps_per_round']))})" if r.get("rps_per_round") else ""),
            _f(r["p50_ms"]),
            _f(r["p99_ms"]),
            *([_f(r["cpu_us_per_request"], 0)] if with_cpu else []),
            str(r["non_2xx"]),
        ]
        for r in http["rows"]
    ]
    ratios = http["ratios"]
    rounds = (
        f", {http['rounds']} rounds interleaved over every server (all up at once); medians over the rounds, "
        "ratios are the median of the per-round ratios"
        if http.get("rounds")
        else ""
    )
    header = ["app", "path", "requests/s (per round)", "p50 ms", "p99 ms"]
    header += ["server CPU µs/request"] if with_cpu else []
    header += ["non-2xx"]

    def cpu(r: dict[str, Any]) -> str:
        return f", **{_x(r['cpu'])}** per server CPU-second" if "cpu" in r else ""

    return [
        "## The reference app against a bare WSGI app",
        "",
        f"Gunicorn {st['workers']} sync workers x {st['threads']} thread, the guestbook's gunicorn.conf.py for both "
        f"(JSON access log to a file); `wrk -t{st['wrk_threads']} -c{st['connections']} -d{st['duration_s']}s` "
        f"on loopback after a 2 s warm-up{rounds}; {st['seed_rows']} rows, 50 returned per request. The guestbook "
        "runs APP_ENV=production behind one trusted proxy (`X-Forwarded-Proto: https`), list cache off "
        "(`ENTRIES_CACHE_SECONDS=0`) so every request reads PostgreSQL. The bare app (bench/bare_wsgi.py) "
        "runs the same SELECT with psycopg 3 on one autocommit connection per worker and writes the same JSON. "
        "`Flask alone` (bench/flask_alone.py) is the bare app's work behind Flask with nothing else (no "
        "extension, hook or middleware): how close to the bare app any Flask app gets on this machine."
        + (
            " Server CPU per request: the CPU time of the app's Gunicorn processes (reaped workers included) "
            "and of PostgreSQL during the run, over the requests served; it moves less than throughput "
            "when other work shares the cores (still not steady here)."
            if with_cpu
            else ""
        ),
        "",
        *_table(header, rows),
        "",
        f"Ratios guestbook / bare: `/api/entries` throughput **{_x(ratios['/api/entries']['rps'])}**"
        f"{cpu(ratios['/api/entries'])}, p99 {_x(ratios['/api/entries']['p99'])}; `/livez` throughput "
        f"**{_x(ratios['/livez']['rps'])}**{cpu(ratios['/livez'])}, p99 {_x(ratios['/livez']['p99'])}."
        + (f" {http['note']}" if http.get("note") else ""),
        "",
        *[
            f"`{label}` / bare: `/api/entries` {_x(v['/api/entries']['rps'])}{cpu(v['/api/entries'])}, "
            f"`/livez` {_x(v['/livez']['rps'])}{cpu(v['/livez'])}."
            for label, v in http.get("variant_ratios", {}).items()
        ],
        "",
    ]


def update_http(http: dict[str, Any]) -> None:
    """Rewrite only the app section of RESULTS.md (and its headline line) from an app-only run."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n\n## Headline\n\n"
    title = "## The reference app against a bare WSGI app"
    load = ", ".join(f"{x:.1f}" for x in http.get("loadavg_at_start", []))
    section = _http_section(http)
    section[1:1] = [
        "",
        f"Measured by `make bench-app` on {http['date']}, load average {load} at its start (2 cores, shared "
        "with other engineers' test suites): compare within this table, not with other runs.",
    ]
    lines = text.split("\n")
    if title in lines:
        start = lines.index(title)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = section
    else:
        at = next((i for i, line in enumerate(lines) if line == "## Reproduce"), len(lines))
        lines[at:at] = section
    r = http["ratios"]
    cpu = (
        f"; server CPU per request {_x(r['/api/entries']['cpu'])} and {_x(r['/livez']['cpu'])}"
        if "cpu" in r["/livez"]
        else ""
    )
    bullet = (
        f"- **Reference app vs bare WSGI:** `/api/entries` {r['/api/entries']['rps']:.2f}x the requests/s "
        f"(p99 {_x(r['/api/entries']['p99'])}), `/livez` {_x(r['/livez']['rps'])}{cpu} (`make bench-app`, "
        f"{http['date']}, load {', '.join(f'{x:.1f}' for x in http.get('loadavg_at_start', []))})."
    )
    lines = [bullet if line.startswith("- **Reference app vs bare WSGI:**") else line for line in lines]
    RESULTS.write_text("\n".join(lines))


def _profile_section(prof: dict[str, Any], n: int) -> list[str]:
    def rows(items: list[list[Any]]) -> list[list[str]]:
        return [[f"`{k}`", _f(v)] for k, v in items]

    return [
        f"## Where the operator spends its CPU (py-spy, N = {n} install, {prof['samples']} samples at 50 Hz)",
        "",
        "Non-idle samples only (threads waiting on I/O or a lock are not counted). The raw stacks are in",
        "bench/out/profile-raw.txt after a run.",
        "",
        "Self time by package:",
        "",
        *_table(["package", "% of samples"], rows(prof["self_by_package"][:10])),
        "",
        "Inclusive time in flaskops functions:",
        "",
        *_table(["function", "% of samples"], rows(prof["inclusive_flaskops"][:12])),
        "",
        "Self time by function:",
        "",
        *_table(["function", "% of samples"], rows(prof["self_by_function"][:12])),
        "",
    ]


def headline(results: dict[str, Any]) -> list[str]:
    out = []
    scale = results.get("scale")
    if scale and scale["sizes"]:
        sizes = scale["sizes"]
        # The install headline comes from the largest N whose install was not stalled and that Helm ran.
        valid = [x for x in sizes if not x["operator"]["create"].get("stalled") and _helm_ran(x)]
        s = valid[-1] if valid else sizes[-1]
        op, h = s["operator"], s.get("helm") or {}
        hook = _g(h, "install_hook_db", "total_s")
        out.append(
            f"- **N = {s['n']} apps, install:** operator {_f(op['create']['total_s'])} s to all Ready vs "
            f"`helm install --wait` with a DB hook Job {_f(hook)} s "
            f"(**{_ratio(op['create']['total_s'], hook)}**) and with databases "
            f"made beforehand {_f(_pre(s))} s "
            f"({_ratio(op['create']['total_s'], _pre(s))}); floors: PostgreSQL "
            f"{_f(_g(s, 'pg_floor', 'ensure_database_s'))} s, API writes {_f(_g(s, 'api_floor', 'total_s'))} s."
        )
        big = sizes[-1]
        op = big["operator"]
        c = _g(op, "api", "create")
        if isinstance(c, dict):
            named = c.get("per_app_named") or {}
            out.append(
                f"- **API load (N = {big['n']}):** {_f(named.get('requests', float('nan')))} operator requests "
                f"per app to install, {_f(named.get('writes_without_events', float('nan')))} writes without "
                f"Events, {_f(named.get('events', float('nan')))} Events, "
                f"{_f(c.get('reads_per_reconcile', float('nan')), 2)} reads per reconcile; "
                f"**{_f(_g(op, 'api', 'steady', 'per_minute', 'requests'), 1)} requests/min** once settled."
            )
        if _helm_ran(big):
            out.append(
                f"- **N = {big['n']} apps, image upgrade:** operator {_f(op['upgrade']['total_s'])} s vs "
                f"`helm upgrade --wait` {_f(_g(big, 'helm', 'upgrade', 'total_s'))} s "
                f"(**{_ratio(op['upgrade']['total_s'], _g(big, 'helm', 'upgrade', 'total_s'))}**)."
            )
        else:
            out.append(
                f"- **N = {big['n']} apps:** all Ready in {_f(op['create']['total_s'])} s (no Helm row)."
            )
        out.append(f"- **Operator peak RSS** at N = {big['n']}: {_f(op['rss_mib']['peak'])} MiB.")
        if op.get("soak"):
            out.append(
                f"- **Memory soak** at N = {big['n']}: {_f(op['soak']['minutes'], 0)} min of upgrades, "
                f"RSS slope {_f(op['soak']['slope_mib_per_hour'], 2)} MiB/hour."
            )
    http = results.get("http")
    if http:
        r = http["ratios"]
        out.append(
            f"- **Reference app vs bare WSGI:** `/api/entries` {r['/api/entries']['rps']:.2f}x the requests/s "
            f"(p99 {_x(r['/api/entries']['p99'])}), `/livez` {_x(r['/livez']['rps'])}."
        )
    return out


def write(results: dict[str, Any]) -> None:
    m, v = results["machine"], results["versions"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`python -m bench`) on {results['date']}; raw numbers in bench/out/results.json",
        "(not committed). Ratios compare approaches measured in the same run on the same machine.",
        "",
        "## Headline",
        "",
        *headline(results),
        "",
    ]
    if NOTES.exists():
        lines += ["## Findings", "", NOTES.read_text().strip(), ""]
    lines += [
        "## Machine and versions",
        "",
        f"- {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}",
        f"- load average at start {', '.join(f'{x:.1f}' for x in m['loadavg_at_start'])}, at end "
        f"{', '.join(f'{x:.1f}' for x in results.get('loadavg_at_end', []))}"
        + (
            ": **other work ran on the same cores during this run** (see the load per phase below), so "
            "absolute numbers are pessimistic and noisy; the ratios come from the same run."
            if max([*m["loadavg_at_start"][:1], *results.get("loadavg_at_end", [])[:1]]) > 1.0
            else " (a quiet machine)."
        ),
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- whole run: {_f(results.get('wall_s', 0) / 60)} min",
        "",
    ]
    scale = results.get("scale")
    if scale and scale["sizes"]:
        st = scale["sizes"][0]["settings"]
        have_plot = plot(scale["sizes"], PLOT)  # the module value now (a test points it elsewhere)
        lines += [
            "## The operator at scale against the Helm-hook way",
            "",
            "One fresh testbed cluster (kwokctl: etcd, kube-apiserver, controller-manager, scheduler, KWOK with",
            f"{scale.get('nodes', 2)} simulated nodes of 110 pods) with an audit policy at Metadata level, and one "
            "local PostgreSQL 15 (fsync off).",
            f"FlaskApps: production, replicas 1, a PostgresServer-provisioned database; operator settings "
            f"FLASKOPS_MAX_WORKERS={st['max_workers']}, provisioning concurrency {st['provision_concurrency']}, "
            f"no webhook. Helm: a generated chart (Secret + Deployment + Service, `pre-install,pre-upgrade` "
            f"migration hook Job, `pre-install` database hook Job), {st['helm_concurrency']} `helm` processes at "
            "once. KWOK runs no containers, so the database hook's SQL (the operator's own provisioning "
            "statements) is executed by the bench in each app's timed window just before its `helm install`. "
            "The operator is a fresh process per N and is stopped while Helm runs; each N starts on an "
            f"emptied cluster. Order per N: PostgreSQL floor, operator (install, {_f(st.get('steady_seconds', 60), 0)} s "
            "settled, upgrade, and the memory soak when asked), API floor, Helm (install with hook DB, upgrade, "
            "install with DB beforehand; only at N <= 500).",
            "",
        ]
        if have_plot:
            lines += ["![seconds until all Ready against N](scale.png)", ""]
        lines += _scale_section(scale)
    if results.get("http"):
        lines += _http_section(results["http"])
    if results.get("profile") and scale:
        lines += _profile_section(results["profile"], scale["sizes"][-1]["n"])
    lines += [
        "## Reproduce",
        "",
        "```sh",
        "make bench                               # all of it (wrk is installed from Debian if missing)",
        'make bench BENCH_ARGS="--sizes 10,100"   # quicker',
        'make bench BENCH_ARGS="--soak-minutes 60"  # plus an hour of upgrades at the largest N (memory)',
        'make bench BENCH_ARGS="--sizes 10 --no-helm --skip-http"  # a smoke run of the harness',
        "make bench-app                           # only the reference app against bare WSGI (~5 min)",
        "python -m bench.app_cpu [APP_DIR]        # the two apps' CPU per request, in-process",
        "python -m bench --report-only            # rewrite this page from bench/out/results.json",
        "```",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
