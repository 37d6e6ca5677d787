"""Error answers: JSON ``{"error", "message"}`` under /api, HTML pages everywhere else."""

from __future__ import annotations

import psycopg
from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from .extensions import db

API_PREFIX = "/api/"
# query_canceled: the statement ran into statement_timeout (DB_STATEMENT_TIMEOUT_MS).
QUERY_CANCELED = "57014"


def wants_json() -> bool:
    """API paths answer JSON, including ones that match no route."""
    return request.path == API_PREFIX.rstrip("/") or request.path.startswith(API_PREFIX)


def _answer(exc: HTTPException, message: str | None = None) -> Response:
    code = exc.code or 500
    message = message or exc.description or exc.name
    if wants_json():
        response = jsonify(error=exc.name, message=message)
    else:
        template = f"errors/{code}.html" if code in (404, 500) else "errors/error.html"
        response = Response(render_template(template, code=code, title=exc.name, message=message))
    response.status_code = code
    # Keep the headers the exception carries, e.g. Allow on 405.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_http_exception(exc: HTTPException) -> Response:
    return _answer(exc)


def handle_csrf_error(exc: CSRFError) -> Response:
    return _answer(exc, f"{exc.description} Reload the page and submit the form again.")


def handle_internal_error(exc: InternalServerError) -> Response:
    # The failed request may have left the session mid-transaction; never let that leak onward.
    db.session.rollback()
    return _answer(InternalServerError(), "Something went wrong on our side. It has been logged.")


def handle_database_error(exc: Exception) -> Response:
    """A statement cut by DB_STATEMENT_TIMEOUT_MS is a 503 with Retry-After (the database is slow, not
    the request wrong); any other database error goes on as an unhandled one (logged, Sentry, 500)."""
    original = exc.orig if isinstance(exc, OperationalError) else exc
    if getattr(original, "sqlstate", None) != QUERY_CANCELED:
        raise exc
    db.session.rollback()
    current_app.logger.warning(
        "a database statement ran into its timeout",
        extra={"event": "statement_timeout", "error": str(original).strip().splitlines()[0]},
    )
    response = _answer(ServiceUnavailable(), "The database did not answer in time. Try again in a moment.")
    response.headers["Retry-After"] = "1"
    return response


def register_error_handlers(app: Flask) -> None:
    # psycopg's own for reads run on the driver (database.read), SQLAlchemy's wrapper for the rest.
    app.register_error_handler(psycopg.errors.QueryCanceled, handle_database_error)
    app.register_error_handler(OperationalError, handle_database_error)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(InternalServerError, handle_internal_error)
