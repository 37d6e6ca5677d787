"""Who can read /metrics: it names every stalled FlaskApp of every namespace with its reason
(flaskops_flaskapp_stalled{namespace, flaskapp, reason}), so a tenant's pod must not reach it."""

from __future__ import annotations

import pytest

from flaskops import metrics
from tests.chart.chart_support import find, render


def test_the_stalled_metric_names_other_namespaces_apps() -> None:
    """Why the port matters: the series' labels are another tenant's namespace, app and failure reason."""
    assert metrics.REGISTERED["flaskops_flaskapp_stalled"] == ("namespace", "flaskapp", "reason")


@pytest.mark.xfail(
    strict=True,
    reason="finding 5: the chart's NetworkPolicy admits the metrics port from every pod of every "
    "namespace (no `from`), so any tenant pod can list other namespaces' stalled apps and reasons",
)
def test_the_metrics_port_is_not_open_to_every_pod() -> None:
    policy = find(render(), "NetworkPolicy")
    port = next(p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"] if p["port"] == 8081)
    rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == port for p in r["ports"])]
    assert rules and all(r.get("from") for r in rules), rules
