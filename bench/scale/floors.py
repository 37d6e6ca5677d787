"""The two floors the operator is compared with, measured on the same machine in the same run.

- PostgreSQL: N x the operator's provisioning SQL (`flaskops.postgres.server.ensure_database`), swept over the
  concurrencies the operator may use (FLASKOPS_PROVISION_CONCURRENCY), and N x a bare `CREATE DATABASE`
  at the operator's own concurrency.
- API server: the minimum writes per app (2 Secrets, Job, Deployment, Service, one status patch) sent
  directly with the python client at the operator's worker count (FLASKOPS_MAX_WORKERS), with the CPU
  seconds kube-apiserver and etcd spent meanwhile (/proc/<pid>/stat).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bench.common import loadavg, log, parallel
from bench.scale.cluster import GROUP, PLURAL, VERSION, Cluster, cpu_delta, flaskapp
from bench.scale.pg import drop_databases, provision

MIN_WRITES_PER_APP = 6


def pg_floor(
    pg: Any, n: int, concurrencies: Sequence[int], operator_concurrency: int, prefix: str
) -> dict[str, Any]:
    """Seconds for N provisionings at each concurrency; seconds for N bare CREATE DATABASE at the operator's.

    Returns {"sweep": [{"concurrency", "ensure_database_s"}], "operator_concurrency", "ensure_database_s"
    (at the operator's concurrency, when swept), "create_database_s", "load": {"start", "end"}}.
    Every database made here is dropped before returning.
    """
    from psycopg import sql

    out: dict[str, Any] = {
        "operator_concurrency": operator_concurrency,
        "load": {"start": loadavg()},
        "sweep": [],
    }
    for c in concurrencies:
        names = [f"{prefix}_c{c}_{i:04d}" for i in range(n)]
        t0 = time.time()
        parallel(names, lambda d: provision(pg, d), c)
        seconds = time.time() - t0
        out["sweep"].append({"concurrency": c, "ensure_database_s": seconds})
        log(f"  PostgreSQL floor: {n} provisionings at concurrency {c}: {seconds:.1f}s")
        drop_databases(pg, f"{prefix}_c{c}_")
    at_op = [s for s in out["sweep"] if s["concurrency"] == operator_concurrency]
    out["ensure_database_s"] = at_op[0]["ensure_database_s"] if at_op else float("nan")

    def create(d: str) -> None:
        with pg.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(d)))

    bare = [f"{prefix}_bare_{i:04d}" for i in range(n)]
    t0 = time.time()
    parallel(bare, create, operator_concurrency)
    out["create_database_s"] = time.time() - t0
    drop_databases(pg, f"{prefix}_bare_")
    out["load"]["end"] = loadavg()
    return out


def api_floor(cl: Cluster, n: int, workers: int, namespace: str) -> dict[str, Any]:
    """The minimum writes per app, sent directly at `workers` threads; seconds and control-plane CPU seconds.

    The N FlaskApps the status patches need are created first, outside the timed window.
    """
    from flaskops import manifests
    from flaskops.spec import parse_flaskapp

    cl.namespace(namespace)
    names = [f"app-{i:04d}" for i in range(n)]
    bodies = parallel(
        names,
        lambda nm: cl.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, flaskapp(nm, namespace, f"floor_{nm}".replace("-", "_"))
        ),
        workers,
    )
    specs = [parse_flaskapp(b) for b in bodies]

    def writes(app: Any) -> None:
        cl.core.create_namespaced_secret(
            namespace, manifests.secret(app, f"{app.name}-db", "db-credentials", {"DATABASE_URL": "x"})
        )
        cl.core.create_namespaced_secret(
            namespace, manifests.secret(app, f"{app.name}-secret-key", "secret-key", {"SECRET_KEY": "x"})
        )
        cl.batch.create_namespaced_job(namespace, manifests.migration_job(app))
        cl.apps.create_namespaced_deployment(namespace, manifests.deployment(app, app.image, "0"))
        cl.core.create_namespaced_service(namespace, manifests.service(app))
        cl.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, app.name, {"status": {"observedGeneration": 1}}
        )

    load0, cpu0 = loadavg(), cl.cpu()
    t0 = time.time()
    parallel(specs, writes, workers)
    t1 = time.time()
    return {
        "workers": workers,
        "writes_per_app": MIN_WRITES_PER_APP,
        "t0": t0,
        "t1": t1,
        "total_s": t1 - t0,
        "cpu_s": cpu_delta(cpu0, cl.cpu()),
        "load": {"start": load0, "end": loadavg()},
    }
