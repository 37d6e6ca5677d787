"""The chart README's values table is generated from values.yaml by helm-docs (testbed/chart-docs.sh, the
same script `make chart-docs` runs): the committed README must be exactly what it generates now, and
every value must carry a description."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.chart.chart_support import CHART, ROOT

SCRIPT = ROOT / "testbed" / "chart-docs.sh"


def generated() -> str:
    # The first run builds helm-docs from the Go module proxy (about 15 s with a warm module cache).
    out = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=900, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_readme_values_table_is_current() -> None:
    readme = (CHART / "README.md").read_text()
    assert generated() == readme, (
        "charts/flaskops/README.md is stale: run `make chart-docs` (edit README.md.gotmpl and the `# --` "
        "comments in values.yaml, not README.md)"
    )


def test_every_value_is_described() -> None:
    rows = re.findall(r"^\| ([\w.]+) \| (\w+) \| `.*` \| (.*) \|$", (CHART / "README.md").read_text(), re.M)
    assert rows, "no values table in the chart README"
    blank = [key for key, _, description in rows if not description.strip()]
    assert not blank, f"values without a `# --` comment in values.yaml: {blank}"
    # Every top-level value appears (helm-docs lists leaves, or a parent described as a whole).
    top = set(yaml.safe_load((CHART / "values.yaml").read_text()))
    assert top == {key.split(".")[0] for key, _, _ in rows}
