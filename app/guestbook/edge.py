"""The app's own WSGI layer in front of Flask: trusted forwarding headers, the request id, liveness.

Gunicorn → (Sentry's middleware, when SENTRY_DSN is set) → (OpenTelemetry's, when tracing is on) →
``Edge`` → Flask. Every request passes, in this order:

1. **Forwarding headers** (PROXY_COUNT): with no trusted proxy every ``Forwarded``/``X-Forwarded-*``
   header is dropped; behind N trusted proxies werkzeug's ``ProxyFix`` applies them and
   ``X-Forwarded-Proto`` is replaced by the scheme it settled on. ProxyFix alone is not enough:
   Talisman reads ``X-Forwarded-Proto`` itself (to skip the HTTPS redirect and to send HSTS), so a
   client must not reach it with a header no trusted proxy vouched for.
2. **Request id**: ``X-Request-ID`` is kept when it is short and harmless to log and echo
   (``[A-Za-z0-9._:@/+=-]{1,128}``), else replaced by 128 random bits in hex. It is put in the
   environ (``REQUEST_ID_KEY``, where the log filter finds it) and echoed as the last header of
   whatever answers: a view, an error handler, the HTTPS redirect, the liveness answer below. Gunicorn's
   access log line takes it from there. A view must not set ``X-Request-ID`` itself.
3. **Liveness** (``GET /livez``): answered here, with the status, headers and body Flask gives the
   same request, worked out once per scheme when the app is built (see ``live_answers``); every
   other request, and ``/livez`` by any other method, goes on to Flask.

Why liveness skips Flask: kubelet calls ``/livez`` on every pod every few seconds for the pod's
whole life, and all it may say is "this process answers HTTP" — it must not depend on the
database, the session, the app's hooks or its state, or a database outage restarts every pod.
So nothing in Flask's request machinery (contexts, routing, hooks, response object: ~40-70 µs of
CPU a call, ~0.15 ms under Gunicorn) has anything to contribute to it. What it must keep is kept:
the same security headers (computed by Talisman's own code for the ``probes.livez`` endpoint, so
there is one source of truth), the request id, Gunicorn's JSON access line, and the request in the
Prometheus metrics (counted here with the labels Flask's hook would use). With OpenTelemetry on,
``/livez`` goes through Flask as before, so its requests keep their spans. tests/app/test_app_edge.py
compares this answer with Flask's own for every scheme, proxy setting and forwarded header, so
their headers and bodies cannot drift apart. What the test cannot see is a hook's side effect: if
you make ``/livez`` depend on the request or on app state, or add a ``before_request`` hook that
probes must pass through, let Flask answer it (in ``register_edge``, give ``Edge`` no ``live``
answers). ``/readyz`` is never answered here: its database check is the point of it.
"""

from __future__ import annotations

import io
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics
from .extensions import talisman

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_KEY = "guestbook.request_id"  # the request id, in the WSGI environ
# Accept an upstream id (ingress, mesh, client) only if it is short and harmless to log and echo.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
LIVE_ENDPOINT = "probes.livez"

FORWARDED_HEADERS = (
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
)

# status line, headers without the request id, body
LiveAnswer = tuple[str, list[tuple[str, str]], bytes]


class Edge:
    """The WSGI layer described in the module docstring, around Flask's ``wsgi_app`` (``inner``).

    ``proxies``: PROXY_COUNT. ``live_path``/``live``: the liveness path and its answer per
    ``wsgi.url_scheme`` (a scheme not in it, e.g. a trusted proxy's ``wss``, goes to Flask).
    ``record_live``: called with the seconds each liveness answer took (the metrics), or None.
    """

    def __init__(
        self,
        inner: WSGIApplication,
        proxies: int,
        live_path: str | None = None,
        live: dict[str, LiveAnswer] | None = None,
        record_live: Callable[[float], None] | None = None,
    ) -> None:
        self.inner = inner
        n = proxies
        self.proxy_fix = (
            ProxyFix(self._settled, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n) if n else None
        )
        self.live_path = live_path
        self.live = live or {}
        self.record_live = record_live

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.proxy_fix is None:
            for name in FORWARDED_HEADERS:
                environ.pop(name, None)
            return self._serve(environ, start_response)
        return self.proxy_fix(environ, start_response)

    def _settled(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["HTTP_X_FORWARDED_PROTO"] = environ["wsgi.url_scheme"]
        return self._serve(environ, start_response)

    def _serve(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        given = environ.get("HTTP_X_REQUEST_ID")  # REQUEST_ID_HEADER, as the WSGI server names it
        # 128 random bits as 32 hex digits, like uuid4().hex, without building a UUID object.
        request_id = given if given and _VALID_REQUEST_ID.fullmatch(given) else secrets.token_hex(16)
        environ[REQUEST_ID_KEY] = request_id

        if environ.get("PATH_INFO") == self.live_path and environ.get("REQUEST_METHOD") == "GET":
            answer = self.live.get(environ.get("wsgi.url_scheme", ""))
            if answer is not None:
                started = time.perf_counter()
                status, headers, body = answer
                start_response(status, [*headers, (REQUEST_ID_HEADER, request_id)])
                if self.record_live is not None:
                    self.record_live(time.perf_counter() - started)
                return [body]

        def echo(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> object:
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)  # type: ignore[arg-type]

        return self.inner(environ, echo)  # type: ignore[arg-type]


def live_answers(app: Flask, endpoint: str = LIVE_ENDPOINT) -> tuple[str | None, dict[str, LiveAnswer]]:
    """The path of ``endpoint`` and, per scheme (http, https), the status, headers and body Flask
    answers a plain ``GET`` of it with: its view's response, Talisman's headers for that endpoint
    and scheme (Talisman's own code, CachedTalisman.computed_headers), as Flask's WSGI response
    sends them. ``(None, {})`` when the endpoint does not exist or Talisman uses a CSP nonce (every
    answer differs then).

    Only a view that reads nothing from the request can be answered this way; ``/livez`` is one.
    """
    rules = [rule for rule in app.url_map.iter_rules(endpoint) if not rule.arguments]
    if not rules or talisman.content_security_policy_nonce_in:
        return None, {}
    path = rules[0].rule
    answers: dict[str, LiveAnswer] = {}
    for scheme in ("http", "https"):
        # A plain environ, not test_request_context: that imports flask.testing (click.testing, pdb)
        # and the IDNA codec into every Gunicorn worker, ~8 ms of each worker's start.
        environ = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "443" if scheme == "https" else "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "localhost",
            "wsgi.url_scheme": scheme,
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        with app.request_context(environ):
            response = app.make_response(app.ensure_sync(app.view_functions[endpoint])())
            talisman._set_response_headers(response)
            # What response(environ, start_response) sends, as Flask's wsgi_app calls it.
            body, status, headers = response.get_wsgi_response(environ)
            answers[scheme] = (status, headers, b"".join(body))
    return path, answers


def register_edge(app: Flask) -> None:
    """Put ``Edge`` around the app's WSGI callable (call once the probes blueprint and the metrics
    are registered, before OpenTelemetry wraps the app)."""
    path, answers = (None, {}) if app.config["TRACING"] else live_answers(app)
    statuses = {status.split(" ", 1)[0] for status, _, _ in answers.values()}
    if len(statuses) > 1:  # differs by scheme: not the plain answer this layer is for; Flask answers
        path, answers, statuses = None, {}, set()
    record = metrics.recorder(app, LIVE_ENDPOINT, "GET", statuses.pop()) if statuses else None
    app.wsgi_app = Edge(  # type: ignore[method-assign]
        app.wsgi_app, int(app.config["PROXY_COUNT"]), path, answers, record
    )
