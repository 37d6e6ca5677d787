"""Structured logs: JSON lines on stdout, each tied to the request that caused it by a request id;
errors to Sentry when SENTRY_DSN is set."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from flask import Flask, has_request_context, request
from flask.logging import default_handler
from pythonjsonlogger.json import JsonFormatter

from .edge import REQUEST_ID_KEY

LOG_FIELDS = "%(levelname)s %(name)s %(message)s"
RENAMED = {"levelname": "level", "name": "logger"}


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is being handled.

    The id is the one edge.Edge gave the request (honoured from X-Request-ID or generated) and echoes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            request_id = request.environ.get(REQUEST_ID_KEY)
            if request_id is not None:
                record.request_id = request_id
        return True


class StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stdout is at the time of the record (it may be replaced after setup)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def json_formatter() -> JsonFormatter:
    return JsonFormatter(LOG_FIELDS, rename_fields=RENAMED, timestamp=True)


def configure_logging(app: Flask) -> None:
    """Send the app's and alembic's logs to stdout as JSON (idempotent across create_app calls)."""
    handler = StdoutHandler()
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    handler._guestbook = True  # type: ignore[attr-defined]
    # Flask adds its plain-text stderr handler when app.logger is first touched; JSON replaces it.
    app.logger.removeHandler(default_handler)
    for logger in (app.logger, logging.getLogger("alembic")):
        for old in [h for h in logger.handlers if getattr(h, "_guestbook", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(app.config["LOG_LEVEL"] if logger is app.logger else logging.INFO)
        logger.propagate = False


def configure_sentry(app: Flask) -> None:
    """Send unhandled errors to Sentry when SENTRY_DSN is set; without it the SDK is not even imported.

    The SDK is initialised here, in create_app, which Gunicorn runs in each worker after the fork,
    so its background sender thread belongs to the worker. The SDK's default data collection sends
    no personal data (no cookies, user IPs or request bodies); SENTRY_ENVIRONMENT defaults to APP_ENV.
    """
    dsn = app.config["SENTRY_DSN"]
    if not dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=app.config["SENTRY_ENVIRONMENT"],
        integrations=[FlaskIntegration()],
    )
