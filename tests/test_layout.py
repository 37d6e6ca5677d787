"""The test tree itself: pytest (rootdir-relative imports, no __init__.py) refuses two test modules of the
same basename in one run — a clean-clone CI run once died at collection on tests/e2e/test_drift.py and
tests/operator/test_drift.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique() -> None:
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
