"""Kubernetes probes: never redirected to HTTPS (kubelet probes speak plain HTTP), never CSRF-checked."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db, talisman

probes_bp = Blueprint("probes", __name__)
LIVE = b'{"status":"ok"}\n'  # what jsonify(status="ok") writes, encoded once


@probes_bp.get("/livez")
@talisman(force_https=False)
def livez() -> Response:
    """The process answers. No I/O: a database outage must not get every pod restarted.

    A plain ``GET`` is answered by edge.Edge in front of Flask with this view's response (and
    Talisman's headers), worked out when the app is built; other methods, and every request while
    OpenTelemetry is on, come here.
    """
    return current_app.response_class(LIVE, mimetype="application/json")


@probes_bp.get("/readyz")
@talisman(force_https=False)
def readyz() -> tuple[Response, int]:
    """PostgreSQL answers ``SELECT 1`` within READYZ_TIMEOUT_MS; 503 takes the pod out of the Service."""
    timeout_ms = int(current_app.config["READYZ_TIMEOUT_MS"])
    try:
        db.session.execute(text("SELECT set_config('statement_timeout', :t, true)"), {"t": str(timeout_ms)})
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        # One line per failed probe, not a traceback: the cause is all an operator needs here.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        current_app.logger.warning("readiness check failed: %s", reason)
        return jsonify(status="unavailable", message="The database does not answer."), 503
    db.session.rollback()
    return jsonify(status="ok"), 200
