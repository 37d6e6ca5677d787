"""Security wiring: proxy headers, CSRF, and response headers (Flask-Talisman)."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .api import api_bp
from .extensions import csrf, talisman

# Everything from our own origin; no inline script or style, no framing, forms post only to us.
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def register_proxy_fix(app: Flask) -> None:
    """Trust X-Forwarded-* from exactly PROXY_COUNT proxies (0: trust none, the safe default)."""
    n = int(app.config["PROXY_COUNT"])
    if n > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n
        )


def register_security(app: Flask) -> None:
    csrf.init_app(app)
    # See api.py: JSON-only, no ambient authority, so a CSRF token would protect nothing.
    csrf.exempt(api_bp)
    talisman.init_app(
        app,
        force_https=app.config["FORCE_HTTPS"],
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_samesite=app.config["SESSION_COOKIE_SAMESITE"],
        strict_transport_security=True,  # sent only on secure requests
        strict_transport_security_max_age=app.config["HSTS_MAX_AGE"],
        content_security_policy=CONTENT_SECURITY_POLICY,
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
        x_content_type_options=True,
    )
    register_proxy_fix(app)
