"""Security wiring: sessions, CSRF, and response headers (Flask-Talisman); trusted proxy headers are edge.py's."""

from __future__ import annotations

from flask import Flask, Request, Response, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer

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


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer built once per set of keys.

    Flask builds it for every request, and itsdangerous round-trips a test value through the JSON
    serializer each time (~50 µs of a /livez that never touches the session). The keys
    (SECRET_KEY and SECRET_KEY_FALLBACKS) are the cache key, so a changed key still takes effect.
    """

    def __init__(self) -> None:
        self._built: tuple[object, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if self._built is None or self._built[0] != keys:
            self._built = (keys, super().get_signing_serializer(app))
        return self._built[1]

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # No Cookie header: the empty session Flask would make, without parsing cookies first.
        if "HTTP_COOKIE" not in request.environ and self.get_signing_serializer(app) is not None:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        # Empty and never read or changed: Flask sets no cookie and no Vary, after reading seven
        # cookie settings to find that out.
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)


def register_security(app: Flask) -> None:
    app.session_interface = SessionInterface()
    # Flask-WTF's own hook runs its exemption lookups on every request, GETs included; the
    # documented alternative is to switch it off and call protect() ourselves: here for the
    # methods it checks (WTF_CSRF_METHODS), with the same exemptions.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    csrf.init_app(app)
    if not app.config["WTF_CSRF_CHECK_DEFAULT"]:
        # Flask-WTF registers its hook anyway, and it returns at once for every request then.
        hooks = app.before_request_funcs[None]
        hooks[:] = [f for f in hooks if f.__qualname__ != "CSRFProtect.init_app.<locals>.csrf_protect"]
    # See api.py: JSON-only, no ambient authority, so a CSRF token would protect nothing.
    csrf.exempt(api_bp)
    unsafe = frozenset(app.config["WTF_CSRF_METHODS"])

    @app.before_request
    def csrf_protect() -> None:
        if request.method in unsafe and app.config["WTF_CSRF_ENABLED"]:
            csrf.protect(apply_exemptions=True)

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
