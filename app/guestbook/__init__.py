"""The reference Flask application deployed by flaskops: a guestbook on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask

from . import database, models  # noqa: F401  (models must be registered before Flask-Migrate compares)
from .api import api_bp
from .config import ConfigError, load_config
from .edge import register_edge
from .errors import register_error_handlers
from .extensions import cache, db, migrate
from .main import main_bp
from .metrics import register_metrics
from .observability import configure_logging, configure_sentry
from .probes import probes_bp
from .security import register_security
from .tracing import configure_tracing

__all__ = ["ConfigError", "create_app"]


def create_app(env: str | None = None, environ: Mapping[str, str] | None = None) -> Flask:
    """Build the app for ``env`` (default: APP_ENV), configured from ``environ`` (default: os.environ)."""
    app = GuestbookFlask(__name__)
    load_configuration(app, env, os.environ if environ is None else environ)
    configure_logging(app)
    configure_sentry(app)
    register_extensions(app)
    register_security(app)
    register_metrics(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_edge(app)  # trusted proxies, request id, /livez: needs the blueprints and the metrics
    configure_tracing(app)  # OpenTelemetry's middleware goes around the edge
    return app


class GuestbookFlask(Flask):
    """Flask, remembering which hooks and views are coroutines instead of asking on every request.

    Flask calls ``ensure_sync`` for every before/after/teardown function and the view of each
    request, and each call inspects the function again (~8 inspections a request here). A function
    does not turn into a coroutine later, so the answer is kept per function.
    """

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except AttributeError:
            self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}
        except KeyError:
            pass
        self._sync[func] = super().ensure_sync(func)
        return self._sync[func]


def load_configuration(app: Flask, env: str | None, environ: Mapping[str, str]) -> None:
    """Fail hard (ConfigError listing every problem) before anything else is set up."""
    app.config.from_object(load_config(env, environ))


def register_extensions(app: Flask) -> None:
    # The engine is created lazily: no database connection is opened here, so it is safe pre-fork.
    db.init_app(app)
    database.configure(app)
    migrate.init_app(app, db)
    cache.init_app(app)


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(api_bp, url_prefix="/api")
    app.register_blueprint(main_bp)
    app.register_blueprint(probes_bp)
