"""The scale benchmark's order of work: one fresh cluster (audit log on), then per size N the PostgreSQL
floor, the operator, the API floor and (N <= helm_max_n) Helm, the cluster emptied between sizes; the
audit log read once at the end and its counts attached to each window."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.common import loadavg, log
from bench.scale import audit, floors, helm_phase, operator_phase
from bench.scale.cluster import Cluster, setup
from bench.scale.pg import drop_databases

PG_SWEEP = (1, 2, 4, 8)


# The Job, Deployment and ReplicaSet controllers write through one client limited to 20 requests/s (burst
# 30) by default: 500 apps need ~4000 such writes (pods, status), a 200 s floor under any install — the
# operator's and Helm's alike — that says nothing of either. Large clusters raise it; so does the bench
# (the same for both approaches, and stated in RESULTS.md).
CONTROLLER_MANAGER_ARGS = {"kube-api-qps": "200", "kube-api-burst": "400"}


def run_size(
    cl: Cluster,
    pg: Any,
    n: int,
    work: Path,
    *,
    profile: bool,
    helm: bool,
    helm_skipped: str = "",
    helm_concurrency: int,
    operator_only: bool,
    steady_seconds: float,
    soak_minutes: float,
    pg_sweep: Sequence[int],
) -> dict[str, Any]:
    from flaskops import settings

    cfg = settings.from_env()
    result: dict[str, Any] = {
        "n": n,
        "load": {"start": loadavg()},
        "settings": {
            "max_workers": cfg.max_workers,
            "provision_concurrency": cfg.provision_concurrency,
            "helm_concurrency": helm_concurrency,
            "replicas": 1,
            "steady_seconds": steady_seconds,
            "soak_minutes": soak_minutes,
            "pg_sweep": list(pg_sweep),
        },
    }

    def operator() -> str:
        result["operator"], meta = operator_phase.run(
            cl, n, work, profile=profile, steady_seconds=steady_seconds, soak_minutes=soak_minutes
        )
        return str(meta["namespace"])

    if operator_only:  # before/after comparisons of an operator change
        op_ns = operator()
        cl.release_flaskapps(op_ns)
        cl.delete_namespaces([op_ns])
        drop_databases(pg, f"op{n}_")
        result["load"]["end"] = loadavg()
        return result
    log(f"=== N = {n}: PostgreSQL floor (concurrency {', '.join(map(str, pg_sweep))})")
    result["pg_floor"] = floors.pg_floor(pg, n, pg_sweep, cfg.provision_concurrency, f"floor{n}")
    op_ns = operator()
    log(f"=== N = {n}: API floor ({cfg.max_workers} workers)")
    result["api_floor"] = floors.api_floor(cl, n, cfg.max_workers, f"floor-{n}")
    log("deleting the operator's and the floor's namespaces")
    cl.release_flaskapps(op_ns)
    cl.delete_namespaces([op_ns, f"floor-{n}"])
    drop_databases(pg, f"op{n}_")
    if helm:
        result["helm"] = helm_phase.run(cl, pg, n, work, helm_concurrency)
        log("deleting the Helm namespaces")
        cl.delete_namespaces(result["helm"].pop("namespaces"))
        drop_databases(pg, "helm")
    else:
        result["helm"] = {"skipped": helm_skipped}
    result["load"]["end"] = loadavg()
    return result


def attach_audit(cl: Cluster, results: list[dict[str, Any]]) -> None:
    """Per window: the operator's (or Helm's) requests, by verb, per app, per minute; reads per reconcile."""
    requests = audit.read(audit.files(cl.audit_log))
    for r in results:
        n = r["n"]
        op = r["operator"]
        op["api"] = {}
        for phase in ("create", "steady", "upgrade", "soak"):
            w = op.get(phase)
            if not w:
                continue
            c = audit.count(requests, w["t0"], w["t1"], "operator", apps=n if phase != "steady" else 0)
            rec = (w.get("reconciles") or {}).get("total", float("nan"))
            c["reconciles"] = rec
            c["reads_per_reconcile"] = c["reads"] / rec if rec and rec == rec else float("nan")
            c["reconciles_per_app"] = rec / n if rec == rec else float("nan")
            op["api"][phase] = c
        for phase in ("install_hook_db", "upgrade", "install_precreated"):
            h = r.get("helm") or {}
            if phase in h:
                h[phase]["api"] = audit.count(requests, h[phase]["t0"], h[phase]["t1"], "helm", apps=n)


def run(
    pg: Any,
    work: Path,
    sizes: list[int],
    *,
    profile: bool,
    helm_concurrency: int,
    helm_max_n: int = 500,
    operator_only: bool = False,
    cluster_name: str = "bench",
    steady_seconds: float = 60,
    soak_minutes: float = 0,
    pg_sweep: Sequence[int] = PG_SWEEP,
) -> dict[str, Any]:
    """Every size on one fresh cluster named `cluster_name` (stopped at the end); Helm only at N <= helm_max_n.

    Returns {"sizes": [per-N results], "audit_log_bytes", "errors": ["N = ...: exception"]}; a size that
    fails is reported in "errors" and the others still run.
    """
    from flaskops_testbed import cluster as kwok

    policy = work / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(audit.POLICY))
    kwok.stop(cluster_name)  # a fresh cluster every run
    log("starting the bench cluster (audit log on)")
    # A KWOK node takes 110 pods, like a kubelet's default; the Helm phase keeps two sets of N apps
    # (plus surge pods during upgrades), the operator phase one set plus surge: size for the larger.
    pods = max(2.5 * n if n <= helm_max_n and not operator_only else 2 * n for n in sizes)
    nodes = max(2, math.ceil(pods / 110) + 1)
    kc = kwok.start(
        cluster_name, nodes=nodes, audit_policy=policy, extra_controller_manager_args=CONTROLLER_MANAGER_ARGS
    )
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        cl = Cluster(kc.kubeconfig, kc.audit_log, kc.cluster_dir)
        setup(cl, pg)
        for n in sizes:
            try:
                results.append(
                    run_size(
                        cl,
                        pg,
                        n,
                        work,
                        profile=profile and n == max(sizes),
                        helm=n <= helm_max_n,
                        helm_skipped=(
                            "not asked (--no-helm)"
                            if helm_max_n <= 0
                            else f"N > {helm_max_n}: `helm install --wait` of that many releases, three batches, "
                            "takes hours on 2 cores"
                        ),
                        helm_concurrency=helm_concurrency,
                        operator_only=operator_only,
                        steady_seconds=steady_seconds,
                        soak_minutes=soak_minutes if n == max(sizes) else 0,
                        pg_sweep=pg_sweep,
                    )
                )
            except Exception as exc:  # keep the sizes that finished; say what broke
                log(f"N = {n} failed: {exc!r}")
                errors.append(f"N = {n}: {exc!r}")
            (work / "partial.json").write_text(json.dumps(results, default=str))
        log("reading the audit log")
        attach_audit(cl, results)
        audit_bytes = sum(p.stat().st_size for p in audit.files(kc.audit_log))
    finally:
        kwok.stop(cluster_name)
    return {"sizes": results, "audit_log_bytes": audit_bytes, "errors": errors, "nodes": nodes}
