"""One command line: the chart's operator container, the Dockerfile's `operator` target and the end-to-end
tests' OperatorProcess all run `python -m flaskops --liveness=http://<addr>/healthz`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tests.chart.chart_support import ROOT, operator_container, render
from tests.e2e.e2e_support import OperatorProcess


def dockerfile_stage(target: str) -> dict[str, list[str]]:
    """ENTRYPOINT and CMD (exec form) of one stage of the Dockerfile."""
    stage: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", line)
        if m and current == target:
            stage[m.group(1)] = json.loads(m.group(2))
    return stage


def normalize(argv: list[str]) -> list[str]:
    """The interpreter as `python` and the liveness address as ADDR: the parts that differ by design."""
    out = ["python" if i == 0 and Path(a).name.startswith("python") else a for i, a in enumerate(argv)]
    return [re.sub(r"^(--liveness=http://)[^/]+(/healthz)$", r"\1ADDR\2", a) for a in out]


def test_chart_dockerfile_and_e2e_run_the_same_command() -> None:
    container = operator_container(render())
    chart = [*container["command"], *container["args"]]
    image = dockerfile_stage("operator")
    dockerfile = [*image["ENTRYPOINT"], *image["CMD"]]
    e2e = OperatorProcess(Path("kubeconfig"), Path("log")).argv()
    assert e2e[0] == sys.executable
    assert chart == dockerfile, "the chart's command/args and the Dockerfile's ENTRYPOINT/CMD differ"
    assert normalize(e2e) == normalize(chart), "tests/e2e run the operator differently from the chart"
    assert chart == ["python", "-m", "flaskops", "--liveness=http://0.0.0.0:8080/healthz"]


def test_role_only_mode_adds_the_namespace_only() -> None:
    container = operator_container(render("--set", "operator.watchNamespace=shop"))
    assert container["args"] == ["--liveness=http://0.0.0.0:8080/healthz", "--namespace=shop"]


def test_operator_image_runs_as_the_charts_numeric_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    operator_stage = text[text.index("AS operator\n") :]
    user = re.search(r"^USER (\d+):(\d+)$", operator_stage, re.MULTILINE)
    assert user, "the operator stage must set a numeric USER"
    ctx = operator_container(render())["securityContext"]
    assert (ctx["runAsUser"], ctx["runAsGroup"]) == (int(user.group(1)), int(user.group(2)))
    # Only the operator's dependencies: not the app's (Flask, gunicorn).
    assert '".[operator]"' in text[text.index("AS operator-builder") : text.index("AS operator\n")]


def test_operator_image_names_its_user_and_builds_offline() -> None:
    """Two failures only a real run showed (tests/e2e/test_real_pods.py runs the image on a real node):
    kopf's getpass.getuser() dies without a passwd entry for the numeric user, and a `# syntax=` line makes
    BuildKit fetch its frontend from a registry."""
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    builder = text[text.index("AS operator-builder") : text.index("AS operator\n")]
    operator_stage = text[text.index("AS operator\n") :]
    assert re.search(r"useradd .*--uid 10001 ", builder.replace("\\\n", " "))
    assert "COPY --from=operator-builder /etc/passwd /etc/group /etc/" in operator_stage
    assert re.search(r"^ENV LOGNAME=\S+$", operator_stage, re.MULTILINE)  # getuser() asks LOGNAME first
