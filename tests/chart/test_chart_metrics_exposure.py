"""Who can read /metrics: it names every stalled FlaskApp of every namespace with its reason
(flaskops_flaskapp_stalled{namespace, flaskapp, reason}), so a tenant's pod must not reach it."""

from __future__ import annotations

from flaskops import metrics
from tests.chart.chart_support import find, render


def test_the_stalled_metric_names_other_namespaces_apps() -> None:
    """Why the port matters: the series' labels are another tenant's namespace, app and failure reason."""
    assert metrics.REGISTERED["flaskops_flaskapp_stalled"] == ("namespace", "flaskapp", "reason")


def test_the_metrics_port_is_not_open_to_every_pod() -> None:
    policy = find(render(), "NetworkPolicy")
    port = next(p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"] if p["port"] == 8081)
    rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == port for p in r["ports"])]
    assert rules and all(r.get("from") for r in rules), rules
    # By default: namespaces labelled for scraping only.
    assert rules[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"flaskops.dev/metrics-scraper": "true"}}}
    ]


def test_the_scrapers_are_the_users_to_name() -> None:
    prometheus = '[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]'
    policy = find(render("--set-json", f"metrics.allowedFrom={prometheus}"), "NetworkPolicy")
    (rule,) = [r for r in policy["spec"]["ingress"] if any(p["port"] == 8081 for p in r["ports"])]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # The webhook and health ports keep their own rule (the API server's address is unknown to the chart).
    assert any(p["port"] == 9443 for r in policy["spec"]["ingress"] for p in r["ports"] if "from" not in r)
