"""Provisioning with and without the pooled admin connection (postgres/pool.py), in-process, one session.

    python -m bench.pg_admin_pool [--apps 200] [--concurrency 4] [--rounds 2]

On a fresh local PostgreSQL, `--apps` databases are provisioned with the operator's own call
(server.ensure_database, a new role and database each, the password set) by `--concurrency` threads (the
operator's FLASKOPS_PROVISION_CONCURRENCY gate), once with a new admin login per provisioning (`before`:
what the operator did before the pool; server.py's code path with the pool swapped for fresh logins) and
once through the pool (`after`); the rounds alternate, and every round drops what it made. Per mode: this
process's CPU seconds (all its threads: time.process_time), the wall time, and PostgreSQL's CPU seconds
(the postmaster and its exited backends, /proc). Then the parts: the CPU of one admin login (connect,
SCRAM, the session settings, close) and of the pool's checkout check (one empty query), each over
`--apps` calls, and the login's share of a `before` provisioning. Prints the before/after ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import loadavg, parallel


class _FreshLogins:
    """The pool's interface with a new login per lease: the operator before pooling."""

    def lease(self, admin: Any) -> Any:
        from flaskops.postgres import pool

        return pool.Lease(pool.login(admin), None)

    def close(self) -> None:
        pass


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its reaped children (PostgreSQL's exited backends)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _round(pg: Any, admin: Any, mode: str, apps: int, concurrency: int, prefix: str) -> dict[str, float]:
    from flaskops import ownership
    from flaskops.postgres import pool, server

    pools: Any = _FreshLogins() if mode == "before" else pool.AdminPools(max_size=concurrency)
    pool.POOLS = pools

    def provision(i: int) -> None:
        name = f"{prefix}{i:04d}"
        owner = ownership.Owner("bench", name, f"uid-{name}", "production")
        server.ensure_database(
            admin, ownership.Claim(owner, name, name), server.generate_password(), set_password=True
        )

    postmaster = pg._running_pid()
    pg_cpu0, cpu0, wall0 = _tree_cpu(postmaster), time.process_time(), time.monotonic()
    parallel(range(apps), provision, concurrency)
    pools.close()  # its backends exit, so PostgreSQL's CPU for them is counted
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and pg.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flaskops'")[0][0]
    ):
        time.sleep(0.05)  # the backends of closed connections exit on their own, a moment later
    return {"cpu": cpu, "wall": wall, "pg_cpu": _tree_cpu(postmaster) - pg_cpu0}


def _parts(admin: Any, calls: int) -> dict[str, float]:
    """CPU seconds per call of an admin login and of the pool's checkout check."""
    from psycopg_pool import ConnectionPool

    from flaskops.postgres import pool

    cpu0 = time.process_time()
    for _ in range(calls):
        conn = pool.login(admin)
        pool.configure_session(conn, admin)
        conn.close()
    login = (time.process_time() - cpu0) / calls
    conn = pool.login(admin)
    try:
        cpu0 = time.process_time()
        for _ in range(calls):
            ConnectionPool.check_connection(conn)
        check = (time.process_time() - cpu0) / calls
    finally:
        conn.close()
    return {"login": login, "check": check}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_admin_pool")
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    from bench.scale.pg import admin as admin_of
    from bench.scale.pg import drop_databases
    from flaskops.postgres import pool
    from flaskops_testbed.postgres import LocalPostgres

    work = Path(tempfile.mkdtemp(prefix="fbench-pool-", dir="/tmp"))
    pg = LocalPostgres(work / "pg")
    pg.start()
    original = pool.POOLS
    try:
        admin = admin_of(pg)
        print(
            f"load at start {loadavg()}; {args.apps} apps at concurrency {args.concurrency}, {args.rounds} rounds"
        )
        totals: dict[str, dict[str, float]] = {
            m: {"cpu": 0.0, "wall": 0.0, "pg_cpu": 0.0} for m in ("before", "after")
        }
        for r in range(args.rounds):
            for mode in ("before", "after") if r % 2 == 0 else ("after", "before"):
                prefix = f"bp{r}{mode[0]}_"
                got = _round(pg, admin, mode, args.apps, args.concurrency, prefix)
                drop_databases(pg, prefix)
                for key, value in got.items():
                    totals[mode][key] += value
                print(
                    f"round {r} {mode:6}: operator CPU {got['cpu']:6.2f} s, wall {got['wall']:6.2f} s, "
                    f"PostgreSQL CPU {got['pg_cpu']:6.2f} s"
                )
        parts = _parts(admin, args.apps)
        n = args.apps * args.rounds
        before, after = totals["before"], totals["after"]
        print(
            f"per provisioning: operator CPU {1000 * before['cpu'] / n:.2f} ms before, "
            f"{1000 * after['cpu'] / n:.2f} ms after; PostgreSQL CPU {1000 * before['pg_cpu'] / n:.2f} / "
            f"{1000 * after['pg_cpu'] / n:.2f} ms"
        )
        print(
            f"one admin login: {1000 * parts['login']:.2f} ms CPU "
            f"({100 * parts['login'] * n / before['cpu']:.0f} % of a provisioning before); "
            f"the checkout check: {1000 * parts['check']:.3f} ms CPU"
        )
        print(
            f"after/before: operator CPU {after['cpu'] / before['cpu']:.2f}x, wall {after['wall'] / before['wall']:.2f}x, "
            f"PostgreSQL CPU {after['pg_cpu'] / before['pg_cpu']:.2f}x"
        )
        print(f"load at end {loadavg()}")
    finally:
        pool.POOLS.close()
        pool.POOLS = original
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
