"""The scale benchmark's pure parts: audit-log counting per window and per app, the soak's slope, and
RESULTS.md showing every number issue 13 asks for (from a synthetic results file)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import report
from bench.scale import audit
from bench.scale.audit import Request
from bench.scale.operator_phase import per_minute, reconcile_delta, slope_per_hour


def test_who_splits_user_agents() -> None:
    assert audit.who("flaskops-operator/0.1") == "operator"
    assert audit.who("kopf/1.45") == "operator"
    assert audit.who("Helm/4.3.1") == "helm"
    assert audit.who("flaskops-bench") == "bench"
    assert audit.who("kube-controller-manager/v1.36.3") == "other"


def test_read_keeps_the_measured_actors_and_subresources(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    lines = [
        {
            "requestReceivedTimestamp": "2026-01-01T00:00:01.000000Z",
            "userAgent": "kopf/1.45",
            "verb": "patch",
            "objectRef": {"resource": "flaskapps", "subresource": "status"},
        },
        {
            "requestReceivedTimestamp": "2026-01-01T00:00:02.000000Z",
            "userAgent": "kube-scheduler",
            "verb": "create",
            "objectRef": {"resource": "pods", "subresource": "binding"},
        },
        {
            "requestReceivedTimestamp": "2026-01-01T00:00:03.000000Z",
            "userAgent": "Helm/4",
            "verb": "get",
            "requestURI": "/version?timeout=32s",
        },
    ]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    got = audit.read(audit.files(log))
    assert [(r.who, r.verb, r.resource) for r in got] == [
        ("operator", "patch", "flaskapps/status"),
        ("helm", "get", "/version"),
    ]


def test_count_per_app_names_events_status_patches_and_reads() -> None:
    reqs = [
        Request(1, "operator", "create", "secrets"),
        Request(2, "operator", "create", "events"),
        Request(3, "operator", "patch", "flaskapps/status"),
        Request(4, "operator", "get", "secrets"),
        Request(5, "operator", "list", "flaskapps"),
        Request(6, "operator", "watch", "flaskapps"),
        Request(7, "helm", "create", "secrets"),
        Request(99, "operator", "create", "secrets"),  # outside the window
    ]
    c = audit.count(reqs, 0, 60, "operator", apps=2)
    assert (c["total"], c["writes"], c["reads"], c["watches"], c["events"], c["status_patches"]) == (
        6,
        3,
        2,
        1,
        1,
        1,
    )
    assert c["per_app_named"] == {
        "requests": 3.0,
        "writes": 1.5,
        "writes_without_events": 1.0,
        "events": 0.5,
        "status_patches": 0.5,
        "reads": 1.0,
    }
    assert c["per_app"]["create"] == 1.0
    assert c["per_minute"] == {"requests": 6.0, "reads": 2.0, "writes": 3.0}


def test_slope_and_per_minute_samples() -> None:
    samples = [(float(t), 100 + t / 3600 * 5) for t in range(0, 3601, 1)]  # +5 MiB over an hour
    minute = per_minute(samples, 0, 3600)
    assert len(minute) == 61 and minute[1][0] == 60
    assert slope_per_hour(minute) == pytest.approx(5.0)
    assert math.isnan(slope_per_hour(minute[:1]))
    assert reconcile_delta({"ready": 3}, {"ready": 10, "progressing": 2}) == {
        "total": 9,
        "by_result": {"ready": 7, "progressing": 2},
    }
    assert math.isnan(reconcile_delta({"ready": 3}, {})["total"])


def _size(n: int, helm: bool) -> dict[str, object]:
    window = {"t0": 0, "t1": 10, "total_s": 10.0, "p50_s": 5.0, "p95_s": 9.0}
    named = {
        "requests": 20.0,
        "writes": 9.0,
        "writes_without_events": 7.0,
        "events": 2.0,
        "status_patches": 2.0,
        "reads": 3.0,
    }
    api = {
        "per_app_named": named,
        "per_app": {"create": 5.0, "get": 3.0},
        "reconciles_per_app": 3.0,
        "reads_per_reconcile": 1.0,
        "by_resource": {"get secrets": 3 * n},
        "per_minute": {"requests": 4.0, "reads": 1.0, "writes": 3.0},
        "verbs": {"watch": 4},
        "reconciles": 0,
    }
    load = {"start": [1.0, 1.0, 1.0], "end": [2.0, 2.0, 2.0]}
    out: dict[str, object] = {
        "n": n,
        "load": load,
        "settings": {
            "max_workers": 8,
            "provision_concurrency": 4,
            "helm_concurrency": 8,
            "steady_seconds": 60,
            "pg_sweep": [1, 2, 4, 8],
        },
        "pg_floor": {
            "sweep": [{"concurrency": c, "ensure_database_s": 8.0 / c} for c in (1, 2, 4, 8)],
            "operator_concurrency": 4,
            "ensure_database_s": 2.0,
            "create_database_s": 1.5,
            "load": load,
        },
        "api_floor": {
            "total_s": 2.5,
            "workers": 8,
            "cpu_s": {"kube-apiserver": 3.25, "etcd": 0.75},
            "load": load,
        },
        "operator": {
            "create": {**window, "control_plane_cpu_s": {"kube-apiserver": 9.0, "etcd": 2.0}},
            "steady": {"t0": 10, "t1": 70, "seconds": 60.0},
            "upgrade": window,
            "soak": {
                "minutes": 60.0,
                "rounds": 30,
                "round_s": [20.0] * 30,
                "rss_start_mib": 90.0,
                "rss_end_mib": 91.0,
                "slope_mib_per_hour": 1.0,
                "rss_mib_per_minute": [90.0, 91.0],
                "reconciles": {"total": 3000},
            },
            "rss_mib": {"idle": 70.0, "all_ready": 80.0, "settled": 81.0, "peak": 95.0},
            "cpu_s_create": 5.0,
            "cpu_s_upgrade": 4.0,
            "load": {
                "start": [1.0, 1.0],
                "create_end": [1.5, 1.0],
                "steady_end": [1.2, 1.0],
                "upgrade_end": [1.4, 1.0],
            },
            "api": {"create": api, "upgrade": api, "steady": api, "soak": api},
        },
        "helm": {"skipped": "N > 500: takes hours"},
    }
    if helm:
        batch = {**window, "total_s": 30.0, "api": api}
        out["helm"] = {
            "install_hook_db": batch,
            "upgrade": batch,
            "install_precreated": {**batch, "total_s": 20.0},
            "load": load,
        }
    return out


def test_results_page_shows_every_number_the_issue_asks_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(report, "PLOT", tmp_path / "scale.png")
    monkeypatch.setattr(report, "NOTES", tmp_path / "NOTES.md")
    results = {
        "date": "2026-12-04 14:00 UTC",
        "machine": {
            "nproc": 2,
            "cpu": "x",
            "ram_gib": 23,
            "kernel": "6",
            "python": "3.11",
            "loadavg_at_start": [1.0, 1.0, 1.0],
        },
        "versions": {"kopf": "1.45"},
        "loadavg_at_end": [2.0, 2.0, 2.0],
        "scale": {"sizes": [_size(10, True), _size(1000, False)], "errors": [], "nodes": 20},
    }
    report.write(results)
    page = (tmp_path / "RESULTS.md").read_text()
    for needle in (
        "| 1000 | 10.0 | 5.0 / 9.0 | skipped |",  # apply -> all Ready, Helm skipped at N = 1000
        "Helm skipped at N = 1000: N > 500: takes hours.",
        "| 10 | 10.0 | 5.0 / 9.0 | 30.0 |",
        "**0.33x**",  # the Helm ratio
        "| 10 | 20.0 | 7.0 | 2.0 | 2.0 | 3.0 | 3.0 | **1.00** | create 5.0, get 3.0 |",  # per app by verb
        "| 1000 | 60 | **4.00** | 1.00 | 3.00 | watch 4 |",  # settled requests/min, reads and writes
        "| 10 | 70.0 | 80.0 | 81.0 | **95.0** |",  # RSS after start, at Ready, settled, peak
        "| 10 | 8.0 | 4.0 | 2.0 | 1.0 | 1.5 (c=4) | 2.5 (8 workers) | 3.2 | 0.8 | 9.0 / 2.0 |",  # floors
        "**1.00 MiB/hour**",  # the soak
        "1.0/1.0 → 1.5/1.0 → 1.2/1.0 → 1.4/1.0",  # load per phase
        "### How each number is measured",
        "20 simulated nodes",
    ):
        assert needle in page, needle
