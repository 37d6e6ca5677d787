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
    return float((size["helm"].get("install_precreated") or {}).get("total_s", float("nan")))


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
        ("helm, hook creates DB", [s["helm"]["install_hook_db"]["total_s"] for s in sizes], "s-"),
        ("helm, DB beforehand", [_pre(s) for s in sizes], "^-"),
        ("floor: PostgreSQL", [s["pg_floor"]["ensure_database_s"] for s in sizes], "x--"),
        ("floor: API writes", [s["api_floor"]["total_s"] for s in sizes], "+--"),
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
    ax2.plot(ns, [s["helm"]["upgrade"]["total_s"] for s in sizes], "s-", label="helm upgrade --wait")
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
    rows = []
    for s in sizes:
        op, h = s["operator"], s["helm"]
        mark = " †" if op["create"].get("stalled") else ""
        rows.append(
            [
                str(s["n"]),
                _f(op["create"]["total_s"]) + mark,
                f"{_f(op['create']['p50_s'])} / {_f(op['create']['p95_s'])}{mark}",
                _f(h["install_hook_db"]["total_s"]),
                f"{_f(h['install_hook_db']['p50_s'])} / {_f(h['install_hook_db']['p95_s'])}",
                _f(_pre(s)),
                f"**{_ratio(op['create']['total_s'], h['install_hook_db']['total_s'])}**{mark}",
                _ratio(op["create"]["total_s"], _pre(s)) + mark,
                _f(s["pg_floor"]["ensure_database_s"]),
                _f(s["pg_floor"]["create_database_s"]),
                _f(s["api_floor"]["total_s"]),
            ]
        )
    lines += [
        "### Install N apps at once: seconds until all are Ready",
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
                "floor: PG provisioning SQL",
                "floor: PG bare CREATE DATABASE",
                "floor: API minimum writes",
            ],
            rows,
        ),
        "",
        *[
            f"† N = {s['n']}: not a measurement of the operator — {s['operator']['create']['stalled']}"
            for s in sizes
            if s["operator"]["create"].get("stalled")
        ],
        "",
    ]
    rows = []
    for s in sizes:
        op, h = s["operator"], s["helm"]
        rows.append(
            [
                str(s["n"]),
                _f(op["upgrade"]["total_s"]),
                f"{_f(op['upgrade']['p50_s'])} / {_f(op['upgrade']['p95_s'])}",
                _f(h["upgrade"]["total_s"]),
                f"{_f(h['upgrade']['p50_s'])} / {_f(h['upgrade']['p95_s'])}",
                f"**{_ratio(op['upgrade']['total_s'], h['upgrade']['total_s'])}**",
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
    rows = []
    for s in sizes:
        op, h = s["operator"], s["helm"]
        api = op.get("api") or {}
        if not api:
            continue

        def verbs(d: dict[str, Any]) -> str:
            return ", ".join(f"{v} {k}" for v, k in sorted(d.get("per_app", {}).items(), key=lambda x: -x[1]))

        def total(d: dict[str, Any], n: int = s["n"]) -> str:
            return _f(d["total"] / n)

        def writes(d: dict[str, Any], n: int = s["n"]) -> str:
            return _f(d["writes"] / n)

        rows.append(
            [
                str(s["n"]),
                f"{total(api['create'])} ({writes(api['create'])} writes): {verbs(api['create'])}",
                f"{total(h['install_hook_db']['api'])} ({writes(h['install_hook_db']['api'])} writes): "
                f"{verbs(h['install_hook_db']['api'])}",
                f"{total(api['upgrade'])} ({writes(api['upgrade'])} writes)",
                f"{total(h['upgrade']['api'])} ({writes(h['upgrade']['api'])} writes)",
                _f(api["steady"]["writes_per_minute"], 2),
                str(api["steady"]["total"]),
            ]
        )
    lines += [
        "### API requests per app (audit log, by user agent)",
        "",
        "Operator = `flaskops-operator` (its client) + `kopf/…` (watches, kopf's own patches); Helm = `Helm/…`.",
        "Watches are counted when they end. Steady state: the 60 s after all apps were Ready.",
        "",
        *_table(
            [
                "N",
                "operator, install: requests/app (writes) by verb",
                "helm install (hook DB): requests/app (writes) by verb",
                "operator, upgrade",
                "helm upgrade",
                "operator writes/min, steady",
                "operator requests in steady 60 s",
            ],
            rows,
        ),
        "",
    ]
    rows = []
    for s in sizes:
        op = s["operator"]
        rows.append(
            [
                str(s["n"]),
                _f(op["rss_mib"]["idle"]),
                _f(op["rss_mib"]["peak"]),
                _f(op["cpu_s_create"]),
                _f(1000 * op["cpu_s_create"] / s["n"]),
            ]
        )
    lines += [
        "### Operator process",
        "",
        *_table(
            [
                "N",
                "RSS after start (MiB)",
                "peak RSS (MiB)",
                "CPU s during install",
                "CPU ms per app (install)",
            ],
            rows,
        ),
        "",
    ]
    big = sizes[-1]
    lines += [
        f"Top API requests of the operator during the N = {big['n']} install (verb resource: count):",
        "",
        "```",
        *[
            f"{k:<40} {v}"
            for k, v in (big["operator"].get("api") or {}).get("create", {}).get("by_resource", {}).items()
        ],
        "```",
        "",
    ]
    if scale.get("errors"):
        lines += ["Sizes that failed: " + "; ".join(scale["errors"]), ""]
    return lines


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
        # The install headline comes from the largest N whose install was not stalled by the testbed.
        valid = [x for x in scale["sizes"] if not x["operator"]["create"].get("stalled")]
        s = valid[-1] if valid else scale["sizes"][-1]
        op, h = s["operator"], s["helm"]
        api = op.get("api") or {}
        out.append(
            f"- **N = {s['n']} apps, install:** operator {_f(op['create']['total_s'])} s to all Ready vs "
            f"`helm install --wait` with a DB hook Job {_f(h['install_hook_db']['total_s'])} s "
            f"(**{_ratio(op['create']['total_s'], h['install_hook_db']['total_s'])}**) and with databases "
            f"made beforehand {_f(_pre(s))} s "
            f"({_ratio(op['create']['total_s'], _pre(s))}); floors: PostgreSQL "
            f"{_f(s['pg_floor']['ensure_database_s'])} s, API writes {_f(s['api_floor']['total_s'])} s."
        )
        api_line = (
            f"- **API load (N = {s['n']}):** {_f(api['create']['total'] / s['n'])} operator requests per app "
            f"to install ({_f(api['create']['writes'] / s['n'])} writes) vs "
            f"{_f(h['install_hook_db']['api']['total'] / s['n'])} for Helm "
            f"({_f(h['install_hook_db']['api']['writes'] / s['n'])} writes); "
            f"**{_f(api['steady']['writes_per_minute'], 1)} writes/min** once everything is Ready."
            if api
            else ""
        )
        s = scale["sizes"][-1]
        op, h = s["operator"], s["helm"]
        out.append(
            f"- **N = {s['n']} apps, image upgrade:** operator {_f(op['upgrade']['total_s'])} s vs "
            f"`helm upgrade --wait` {_f(h['upgrade']['total_s'])} s "
            f"(**{_ratio(op['upgrade']['total_s'], h['upgrade']['total_s'])}**)."
        )
        if api_line:
            out.append(api_line)
        out.append(f"- **Operator peak RSS** at N = {s['n']}: {_f(op['rss_mib']['peak'])} MiB.")
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
        f"{', '.join(f'{x:.1f}' for x in results.get('loadavg_at_end', []))}: **other engineers' test suites ran on "
        "the same 2 cores during this run**, so absolute numbers are pessimistic and noisy; the ratios come "
        "from the same run.",
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- whole run: {_f(results.get('wall_s', 0) / 60)} min",
        "",
    ]
    scale = results.get("scale")
    if scale and scale["sizes"]:
        st = scale["sizes"][0]["settings"]
        have_plot = plot(scale["sizes"])
        lines += [
            "## The operator at scale against the Helm-hook way",
            "",
            "One fresh testbed cluster (kwokctl: etcd, kube-apiserver, controller-manager, scheduler, KWOK with",
            "2 simulated nodes) with an audit policy at Metadata level, and one local PostgreSQL 15 (fsync off).",
            f"FlaskApps: production, replicas 1, a PostgresServer-provisioned database; operator settings "
            f"FLASKOPS_MAX_WORKERS={st['max_workers']}, provisioning concurrency {st['provision_concurrency']}, "
            f"no webhook. Helm: a generated chart (Secret + Deployment + Service, `pre-install,pre-upgrade` "
            f"migration hook Job, `pre-install` database hook Job), {st['helm_concurrency']} `helm` processes at "
            "once. KWOK runs no containers, so the database hook's SQL (the operator's own provisioning "
            "statements) is executed by the bench in each app's timed window just before its `helm install`. "
            "The operator is a fresh process per N and is stopped while Helm runs; each N starts on an "
            "emptied cluster. Order per N: PostgreSQL floor, operator (install, 60 s steady, upgrade), API "
            "floor, Helm (install with hook DB, upgrade, install with DB beforehand).",
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
        "make bench-app                           # only the reference app against bare WSGI (~5 min)",
        "python -m bench.app_cpu [APP_DIR]        # the two apps' CPU per request, in-process",
        "python -m bench --report-only            # rewrite this page from bench/out/results.json",
        "```",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
