"""The pooled-admin-connection benchmark runs end to end on its own PostgreSQL and leaves the operator's
pools as it found them."""

from __future__ import annotations

import re

import pytest

from bench import pg_admin_pool
from flaskops.postgres import pool


def test_the_benchmark_prints_its_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    before = pool.POOLS

    assert pg_admin_pool.main(["--apps", "4", "--rounds", "2", "--concurrency", "2"]) == 0

    out = capsys.readouterr().out
    assert len(re.findall(r"^round \d (before|after)", out, re.M)) == 4, out
    ratio = re.search(r"after/before: operator CPU ([0-9.]+)x, wall ([0-9.]+)x", out)
    assert ratio is not None and float(ratio[1]) > 0 and float(ratio[2]) > 0, out
    assert re.search(r"one admin login: [0-9.]+ ms CPU", out), out
    assert pool.POOLS is before
