"""The chart's metrics: the Service, the ServiceMonitor and the PrometheusRule, rendered with monitors on.
Every alert expression is parsed by Prometheus's own rule loader (testbed/promrules.sh, built from the Go
module proxy on first use), and README.md's tables agree with the metrics the operator registers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flaskops import metrics
from tests.chart.chart_support import ROOT, find, operator_container, render

PROMRULES = ROOT / "testbed" / "promrules.sh"
MONITORS = (
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
)


def check_rules(groups: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(groups))
    # The first run builds the checker (about a minute with a cold Go cache; `make promrules` does it).
    return subprocess.run(
        ["bash", str(PROMRULES), str(path)], capture_output=True, text=True, timeout=900, check=False
    )


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render(*MONITORS)


def test_service_monitor_scrapes_the_operator_metrics_port(docs: list[dict[str, Any]]) -> None:
    service = find(docs, "Service", "flaskops-metrics")
    monitor = find(docs, "ServiceMonitor")
    container = operator_container(docs)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # The webhook Service must not be selected too (it has no metrics port).
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = service["spec"]["ports"]
    assert endpoint["port"] == port["name"] == "metrics"
    assert endpoint["honorLabels"] is True  # flaskops_flaskapp_stalled's own `namespace` label
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLASKOPS_METRICS_PORT"] == "8081"
    assert port["targetPort"] == "metrics"
    # The NetworkPolicy admits Prometheus to that port (from metrics.allowedFrom only), apart from the
    # webhook's.
    ingress = find(docs, "NetworkPolicy")["spec"]["ingress"]
    assert {8081, 9443} <= {p["port"] for rule in ingress for p in rule["ports"]}
    assert all(rule.get("from") for rule in ingress if any(p["port"] == 8081 for p in rule["ports"]))


def test_metrics_off_means_no_port_no_service() -> None:
    docs = render("--set", "metrics.enabled=false", *MONITORS)
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert not [d for d in docs if d["metadata"]["name"].endswith("-metrics")]
    container = operator_container(docs)
    assert {e["name"]: e.get("value") for e in container["env"]}["FLASKOPS_METRICS_PORT"] == "0"
    assert "metrics" not in {p["name"] for p in container["ports"]}


def test_monitors_are_off_by_default() -> None:
    docs = render()
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    find(docs, "Service", "flaskops-metrics")


def _rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec = find(docs, "PrometheusRule")["spec"]
    return {r["alert"]: r for g in spec["groups"] for r in g["rules"]}


def test_prometheus_rule_parses_with_prometheus_own_loader(
    docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = check_rules(find(docs, "PrometheusRule")["spec"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{len(_rules(docs))} rules OK" in out.stdout


def test_the_rule_checker_refuses_a_broken_rule(tmp_path: Path) -> None:
    groups = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(rate(x[5m])", "for": "5m"}]}]}
    out = check_rules(groups, tmp_path)
    assert out.returncode == 1
    assert "parse error" in out.stderr


def test_alerts_use_registered_metrics_and_the_thresholds_from_values(docs: list[dict[str, Any]]) -> None:
    rules = _rules(docs)
    assert set(rules) == set(ALERTS_IN_README)
    used = {m for r in rules.values() for m in re.findall(r"\b(flaskops_\w+)", r["expr"])}
    assert used <= set(metrics.REGISTERED)
    assert rules["FlaskAppMigrationFailed"]["for"] == "5m"
    assert rules["FlaskAppStalled"]["for"] == "15m"
    assert rules["PostgresServerUnreachable"]["for"] == "10m"
    assert rules["FlaskopsOperatorDown"]["expr"] == (
        'absent(up{job="flaskops-metrics", namespace="flaskops-system"} == 1)'
    )
    assert rules["FlaskopsWebhookCertificateExpiring"]["expr"].endswith("< 1209600")  # 14 days
    tuned = _rules(
        render(
            *MONITORS,
            "--set",
            "metrics.prometheusRule.certificateExpiryDays=3",
            "--set",
            "webhook.enabled=true",
        )
    )
    assert tuned["FlaskopsWebhookCertificateExpiring"]["expr"].endswith("< 259200")
    # No webhook, no certificate to watch.
    assert "FlaskopsWebhookCertificateExpiring" not in _rules(
        render(*MONITORS, "--set", "webhook.enabled=false")
    )


# --- README.md: the one table of metrics and of alerts, checked against the code and the chart ----------

README = (ROOT / "README.md").read_text()


def _table(heading: str) -> list[list[str]]:
    section = README.split(heading, 1)[1]
    section = section.split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [
        [cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]
    ]  # after the header (the |---| line has no "| ")


ALERTS_IN_README = [re.sub(r"`", "", row[0]) for row in _table("\n### Alerts\n")]


def test_readme_metrics_table_is_what_the_operator_registers() -> None:
    table = {
        row[0].strip("`"): tuple(label.strip("` ") for label in row[2].split(",") if label.strip("` —"))
        for row in _table("\n### Metrics\n")
    }
    assert table == metrics.REGISTERED


def test_renewal_window_must_be_shorter_than_the_validity() -> None:
    with pytest.raises(AssertionError, match="certRenewBeforeDays must be below"):
        render("--set", "webhook.certValidityDays=30", "--set", "webhook.certRenewBeforeDays=30")
    render("--set", "webhook.certValidityDays=31", "--set", "webhook.certRenewBeforeDays=30")
