"""Structured logs: JSON lines with the request id, which is honoured or generated and echoed."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask, current_app
from flask.testing import FlaskClient


def test_request_id_is_generated_and_echoed(client: FlaskClient) -> None:
    first = client.get("/livez").headers["X-Request-ID"]
    second = client.get("/livez").headers["X-Request-ID"]
    assert len(first) == 32 and first != second


def test_upstream_request_id_is_honoured(client: FlaskClient) -> None:
    response = client.get("/api/entries", headers={"X-Request-ID": "ingress-abc.123"})
    assert response.headers["X-Request-ID"] == "ingress-abc.123"


@pytest.mark.parametrize("given", ["x" * 129, "semi;colon", "has space", "<script>"])
def test_unsafe_request_id_is_replaced(client: FlaskClient, given: str) -> None:
    echoed = client.get("/livez", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert echoed != given and len(echoed) == 32


def test_app_logs_are_json_lines_with_the_request_id(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app()

    @app.get("/api/log-something")
    def log_something() -> dict[str, bool]:
        current_app.logger.info("hello from a view", extra={"entry_count": 3})
        return {"ok": True}

    capsys.readouterr()
    app.test_client().get("/api/log-something", headers={"X-Request-ID": "rid-42"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    record = next(r for r in lines if r["message"] == "hello from a view")
    assert record["request_id"] == "rid-42"
    assert record["level"] == "INFO" and record["logger"] == "guestbook" and record["entry_count"] == 3
    assert "timestamp" in record


def test_creating_apps_repeatedly_does_not_duplicate_log_lines(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    make_app()
    app = make_app()
    capsys.readouterr()
    with app.app_context():
        app.logger.warning("once")
    out = capsys.readouterr()
    assert out.out.count('"once"') == 1
    assert out.err == ""
