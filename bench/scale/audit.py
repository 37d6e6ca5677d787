"""The API server's audit log: who sent which request, counted per window and per app.

The audit policy logs every request at Metadata level once it completes (a watch when it ends), except
Leases and health/metrics endpoints. The operator is `flaskops-operator` (its own client) plus `kopf/...`
(kopf's watches, its Events and its annotation/finalizer patches); Helm is `Helm/...`; the bench's own
client is `flaskops-bench` and is never counted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
READ_VERBS = frozenset({"get", "list"})  # a watch is counted apart: it is how reads should be served

POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One event per request, when it completes (watches too, when they end).
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        # Node heartbeats and leader election: thousands of lines that belong to nobody we measure.
        {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/metrics"]},
        {"level": "Metadata"},
    ],
}


class Request(NamedTuple):
    time: float  # requestReceivedTimestamp, epoch seconds
    who: str  # operator, helm, bench or other
    verb: str  # get, list, watch, create, update, patch, delete, ...
    resource: str  # e.g. "secrets", "flaskapps/status"


def who(user_agent: str) -> str:
    if user_agent.startswith("flaskops-operator") or user_agent.startswith("kopf/"):
        return "operator"
    if user_agent.lower().startswith("helm"):
        return "helm"
    if user_agent.startswith("flaskops-bench"):
        return "bench"
    return "other"


def files(path: Path) -> list[Path]:
    """The audit log and its rotated parts (kube-apiserver renames it to audit-<time>.log at 100 MB)."""
    return sorted(path.parent.glob(f"{path.stem}*{path.suffix}"), key=lambda p: p.stat().st_mtime)


def read(paths: Iterable[Path], keep: frozenset[str] = frozenset({"operator", "helm"})) -> list[Request]:
    """Every audited request of the actors in `keep` (the others are thousands of controller lines)."""
    out = []
    for path in paths:
        with path.open() as fh:
            for line in fh:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                actor = who(ev.get("userAgent", ""))
                if actor not in keep:
                    continue
                ts = datetime.fromisoformat(ev["requestReceivedTimestamp"]).timestamp()
                ref = ev.get("objectRef") or {}
                resource = ref.get("resource", ev.get("requestURI", "?").split("?")[0])
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                out.append(Request(ts, actor, ev.get("verb", "?"), resource))
    return out


def count(requests: list[Request], t0: float, t1: float, actor: str, apps: int = 0) -> dict[str, Any]:
    """Requests of `actor` received in [t0, t1]: totals, by verb, by "verb resource", and, with `apps`,
    the same per app plus the issue's named counts (writes without Events, Events, status patches)."""
    window = [r for r in requests if t0 <= r.time <= t1 and r.who == actor]
    verbs = Counter(r.verb for r in window)
    by_resource = Counter(f"{r.verb} {r.resource}" for r in window)
    events = sum(1 for r in window if r.verb == "create" and r.resource == "events")
    writes = sum(n for v, n in verbs.items() if v in WRITE_VERBS)
    out: dict[str, Any] = {
        "total": len(window),
        "writes": writes,
        "reads": sum(n for v, n in verbs.items() if v in READ_VERBS),
        "watches": verbs.get("watch", 0),
        "events": events,
        "status_patches": sum(
            1 for r in window if r.verb in ("patch", "update") and r.resource.endswith("/status")
        ),
        "verbs": dict(verbs),
        "by_resource": dict(by_resource.most_common(30)),
    }
    if apps:
        out["per_app"] = {v: round(k / apps, 2) for v, k in sorted(verbs.items())}
        out["per_app_named"] = {
            "requests": round(len(window) / apps, 2),
            "writes": round(writes / apps, 2),
            "writes_without_events": round((writes - events) / apps, 2),
            "events": round(events / apps, 2),
            "status_patches": round(out["status_patches"] / apps, 2),
            "reads": round(out["reads"] / apps, 2),
        }
    seconds = max(t1 - t0, 1e-9)
    out["per_minute"] = {
        "requests": round(len(window) * 60 / seconds, 2),
        "reads": round(out["reads"] * 60 / seconds, 2),
        "writes": round(writes * 60 / seconds, 2),
    }
    return out
