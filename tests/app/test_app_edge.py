"""edge.Edge: /livez answered before Flask with exactly Flask's answer; forwarding and request ids for all."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from werkzeug.test import TestResponse

from guestbook.edge import Edge

FORWARDED_PROTOS: list[str | None] = [None, "https", "http", "https, http", "http, https", "wss"]


class Counted:
    """Flask's WSGI callable, counting the requests that reach it."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.calls += 1
        return self.app(environ, start_response)


def edge_of(app: Flask) -> Edge:
    edge = app.wsgi_app
    assert isinstance(edge, Edge)
    return edge


def both_ways(app: Flask, path: str, **kwargs: Any) -> tuple[TestResponse, TestResponse, int]:
    """The same request answered by the edge and by Flask (the edge's answers set aside), and how
    many of the two reached Flask."""
    edge = edge_of(app)
    counted = edge.inner = Counted(edge.inner)
    client = app.test_client()
    fast = client.get(path, **kwargs)
    answers, edge.live = edge.live, {}
    try:
        slow = client.get(path, **kwargs)
    finally:
        edge.live = answers
        edge.inner = counted.app
    return fast, slow, counted.calls


def raw(response: TestResponse) -> tuple[str, list[tuple[str, str]], bytes]:
    return response.status, response.headers.to_wsgi_list(), response.get_data()


@pytest.mark.parametrize(
    ("env", "extra"),
    [
        ("production", {}),
        ("production", {"PROXY_COUNT": "1"}),
        ("production", {"PROXY_COUNT": "2", "FORCE_HTTPS": "false"}),
        ("testing", {}),
        ("testing", {"PROXY_COUNT": "1", "HSTS_MAX_AGE": "60"}),
    ],
)
def test_livez_is_answered_byte_for_byte_as_flask_answers_it(
    make_app: Callable[..., Flask], env: str, extra: dict[str, str]
) -> None:
    # The security headers, HSTS only over HTTPS, the proxy trust and the echoed request id all
    # come out the same whether the edge or Flask answers; only Flask is left out.
    app = make_app(env, **extra)
    for base, proto in itertools.product(["http://localhost", "https://localhost"], FORWARDED_PROTOS):
        headers = {"X-Request-ID": "probe-1"}
        if proto is not None:
            headers["X-Forwarded-Proto"] = proto
        fast, slow, reached_flask = both_ways(app, "/livez", base_url=base, headers=headers)
        assert raw(fast) == raw(slow), (base, proto)
        assert fast.headers["X-Request-ID"] == "probe-1"
        assert "Content-Security-Policy" in fast.headers and fast.headers["X-Frame-Options"] == "DENY"
        if fast.status_code == 200:
            assert fast.get_json() == {"status": "ok"}
            assert reached_flask == 1, (base, proto)  # the edge answered, Flask did not see it
        else:
            # A trusted proxy named a scheme the edge has no answer for: Flask refuses a plain
            # request to a websocket scheme, whichever way it comes.
            assert (fast.status_code, reached_flask, proto) == (400, 2, "wss")


def test_livez_headers_are_those_of_flask_pages_for_the_same_request(make_app: Callable[..., Flask]) -> None:
    # The same Talisman configuration decides all: Flask's pages get the probe's security headers.
    app = make_app("production", PROXY_COUNT="1", FORCE_HTTPS="false")
    client = app.test_client()
    for proto in ("http", "https"):
        headers = {"X-Forwarded-Proto": proto, "X-Request-ID": "same"}
        probe = client.get("/livez", headers=headers).headers
        for path in ("/readyz", "/api/entries?limit=1"):
            page = client.get(path, headers=headers).headers
            for name in ("Content-Length",):
                del probe[name], page[name]
            assert probe.to_wsgi_list() == page.to_wsgi_list(), (proto, path)
        assert ("Strict-Transport-Security" in probe) is (proto == "https")


def test_generated_request_ids_on_both_paths(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    fast, slow, _ = both_ways(app, "/livez", headers={"X-Request-ID": "bad id"})
    ids = {fast.headers["X-Request-ID"], slow.headers["X-Request-ID"]}
    assert len(ids) == 2 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert fast.headers.getlist("X-Request-ID") == [fast.headers["X-Request-ID"]]


def test_only_get_of_the_exact_path_is_answered_before_flask(make_app: Callable[..., Flask]) -> None:
    app = make_app("production")
    edge = edge_of(app)
    counted = edge.inner = Counted(edge.inner)
    client = app.test_client()
    assert client.get("/livez?anything=1").status_code == 200  # Flask ignores the query too
    assert counted.calls == 0
    assert client.head("/livez").status_code == 200
    assert client.post("/livez").status_code == 302  # no probe: HTTPS is forced, as before
    assert client.get("/livez/").status_code == 302
    assert client.get("/readyz").status_code == 200  # its database check is Flask's, always
    assert counted.calls == 4


def test_probe_requests_are_counted_in_the_metrics_as_before(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = make_app(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    labels = {"endpoint": "probes.livez", "method": "GET", "status": "200"}

    def counts() -> tuple[float, float]:
        total = REGISTRY.get_sample_value("guestbook_http_requests_total", labels) or 0.0
        timed = REGISTRY.get_sample_value(
            "guestbook_http_request_duration_seconds_count", {"endpoint": "probes.livez"}
        )
        return total, timed or 0.0

    before = counts()
    _, _, reached_flask = both_ways(app, "/livez")
    assert reached_flask == 1
    assert counts() == (before[0] + 2, before[1] + 2)  # one each way, with the same labels
