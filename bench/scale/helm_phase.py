"""The Helm-hook way for one size N: `helm install --wait` of the generated chart with the database hook
Job (its SQL run by the bench, see bench.helm_baseline), `helm upgrade --wait` of all N to the new image,
then N more installs with the databases created beforehand. The operator is not running meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import helm_baseline
from bench.common import latency_stats, loadavg, log, parallel, percentile
from bench.scale.cluster import IMAGE_V1, IMAGE_V2, Cluster
from bench.scale.pg import provision


def run(cl: Cluster, pg: Any, n: int, work: Path, concurrency: int) -> dict[str, Any]:
    """The three Helm batches; each {t0, t1, total_s, p50_s, p95_s, max_s, duration_p50_s, failures}.

    Leaves its namespaces (helm-<N>, helmpre-<N>) under "namespaces" for the caller to delete.
    """
    from flaskops_testbed import paths

    helm_bin = paths.tool("helm")
    chart = helm_baseline.write_chart(work / "chart")
    names = [f"app-{i:04d}" for i in range(n)]
    out: dict[str, Any] = {"concurrency": concurrency, "load": {"start": loadavg()}}

    def helm(*args: str) -> None:
        r = helm_baseline.helm(helm_bin, cl.kubeconfig, *args)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())

    def install(ns: str, create_db: bool) -> Callable[[str], None]:
        def action(name: str) -> None:
            dbname = f"{ns}_{name}".replace("-", "_")
            if create_db:
                provision(pg, dbname)  # what the createdb hook's container would execute
            helm(
                *("install", name, str(chart), "-n", ns, "--wait", "--timeout", "15m"),
                *("--set", f"image={IMAGE_V1}"),
                *("--set", f"createDatabase={'true' if create_db else 'false'}"),
                *("--set", f"dbName={dbname}", "--set", f"databaseUrl={pg.url(dbname)}"),
                *("--set", "secretKey=" + "k" * 48),
            )

        return action

    def upgrade(ns: str) -> Callable[[str], None]:
        def action(name: str) -> None:
            helm(
                *("upgrade", name, str(chart), "-n", ns, "--wait", "--timeout", "15m"),
                *("--reuse-values", "--set", f"image={IMAGE_V2}"),
            )

        return action

    ns = f"helm-{n}"
    cl.namespace(ns)
    log(f"helm: {n} x helm install --wait with the database hook Job (concurrency {concurrency})")
    out["install_hook_db"] = helm_baseline.run_many(names, install(ns, True), concurrency, "helm install")
    log(f"helm: done in {out['install_hook_db']['total_s']:.1f}s; {n} x helm upgrade --wait")
    out["upgrade"] = helm_baseline.run_many(names, upgrade(ns), concurrency, "helm upgrade")
    log(f"helm: done in {out['upgrade']['total_s']:.1f}s; databases beforehand, then {n} x helm install")
    ns2 = f"helmpre-{n}"
    cl.namespace(ns2)
    t0 = time.time()
    parallel([f"{ns2}_{nm}".replace("-", "_") for nm in names], lambda d: provision(pg, d), 4)
    out["precreate_databases_s"] = time.time() - t0
    out["install_precreated"] = helm_baseline.run_many(
        names, install(ns2, False), concurrency, "helm install (databases beforehand)"
    )
    log(f"helm: done in {out['install_precreated']['total_s']:.1f}s")
    for key in ("install_hook_db", "upgrade", "install_precreated"):
        out[key].update(latency_stats(out[key]["latency_s"]))
        out[key]["duration_p50_s"] = percentile(out[key]["duration_s"], 50)
        del out[key]["duration_s"]
    out["namespaces"] = [ns, ns2]
    out["load"]["end"] = loadavg()
    return out
