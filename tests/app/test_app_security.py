"""Security headers, HTTPS redirects (probes exempt), key rotation, ProxyFix."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from app_support import STRONG_KEY, csrf_token
from flask import Flask, request
from flask.testing import FlaskClient

OLD_KEY = "old-" + STRONG_KEY[::-1]


def test_security_headers_on_every_response(client: FlaskClient) -> None:
    for path in ("/", "/api/entries", "/livez", "/no-such-page"):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "Strict-Transport-Security" not in headers  # plain HTTP: HSTS would be ignored anyway


def test_hsts_only_over_https(make_app: Callable[..., Flask]) -> None:
    client = make_app("production").test_client()
    response = client.get("/", base_url="https://guestbook.example")
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_session_cookie_is_secure_httponly_lax_in_production(make_app: Callable[..., Flask]) -> None:
    client = make_app("production").test_client()
    response = client.get("/", base_url="https://guestbook.example")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_an_untouched_session_sets_no_cookie_and_no_vary(make_app: Callable[..., Flask]) -> None:
    # security.SessionInterface skips Flask's cookie work only when there is nothing to do.
    client = make_app("production").test_client()
    response = client.get("/api/entries", base_url="https://guestbook.example")
    assert "Set-Cookie" not in response.headers and "Vary" not in response.headers
    page = client.get("/", base_url="https://guestbook.example")  # the form's token is in the session
    assert page.headers["Set-Cookie"].startswith("session=") and "Cookie" in page.headers["Vary"]
    again = client.get("/api/entries", base_url="https://guestbook.example")  # with the cookie now
    assert "Set-Cookie" not in again.headers


def test_production_redirects_plain_http_to_https(make_app: Callable[..., Flask]) -> None:
    response = make_app("production").test_client().get("/api/entries?limit=3")
    assert response.status_code == 302
    assert response.headers["Location"] == "https://localhost/api/entries?limit=3"
    assert response.headers["X-Request-ID"]  # even redirects carry the request id


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_probes_are_not_redirected_in_production(make_app: Callable[..., Flask], path: str) -> None:
    # kubelet probes speak plain HTTP to the pod; a 302 would fail them.
    response = make_app("production").test_client().get(path)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_force_https_can_be_turned_off(make_app: Callable[..., Flask]) -> None:
    client = make_app("production", FORCE_HTTPS="false").test_client()
    assert client.get("/api/entries").status_code == 200


def _flash_cookie(app: Flask, text: str) -> str:
    """A session cookie, signed by ``app``'s current key, carrying one flash message."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["_flashes"] = [("message", text)]
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def test_session_signed_with_the_old_key_still_reads_after_rotation(make_app: Callable[..., Flask]) -> None:
    before = make_app(SECRET_KEY=OLD_KEY)
    cookie = _flash_cookie(before, "signed with the old key")

    rotated = make_app(SECRET_KEY=STRONG_KEY, SECRET_KEY_FALLBACKS=OLD_KEY).test_client()
    rotated.set_cookie("session", cookie)
    assert "signed with the old key" in rotated.get("/").get_data(as_text=True)

    forgotten = make_app(SECRET_KEY=STRONG_KEY).test_client()  # the old key dropped entirely
    forgotten.set_cookie("session", cookie)
    assert "signed with the old key" not in forgotten.get("/").get_data(as_text=True)


def test_rotated_app_signs_new_sessions_with_the_new_key(make_app: Callable[..., Flask]) -> None:
    rotated = make_app(SECRET_KEY=STRONG_KEY, SECRET_KEY_FALLBACKS=f'["{OLD_KEY}"]')
    cookie = _flash_cookie(rotated, "fresh")
    only_new = make_app(SECRET_KEY=STRONG_KEY).test_client()
    only_new.set_cookie("session", cookie)
    assert "fresh" in only_new.get("/").get_data(as_text=True)


def test_form_token_issued_before_rotation_fails_once(make_app: Callable[..., Flask]) -> None:
    # Documented caveat: Flask-WTF 1.3 signs CSRF tokens with SECRET_KEY only, ignoring fallbacks.
    before = make_app(SECRET_KEY=OLD_KEY).test_client()
    token = csrf_token(before)
    session_cookie = before.get_cookie("session")
    assert session_cookie is not None

    rotated = make_app(SECRET_KEY=STRONG_KEY, SECRET_KEY_FALLBACKS=OLD_KEY).test_client()
    rotated.set_cookie("session", session_cookie.value)  # the session itself survives rotation...
    stale = rotated.post("/", data={"author": "a", "message": "b", "csrf_token": token})
    assert stale.status_code == 400  # ...but the old form token does not
    assert "The CSRF token is invalid." in stale.get_data(as_text=True)
    fresh = rotated.post("/", data={"author": "a", "message": "b", "csrf_token": csrf_token(rotated)})
    assert fresh.status_code == 302  # reloading the form fixes it


def _echo_app(make_app: Callable[..., Flask], **extra: str) -> Flask:
    app = make_app(**extra)

    @app.get("/echo")
    def echo() -> dict[str, str]:
        return {"remote_addr": str(request.remote_addr), "scheme": request.scheme, "host": request.host}

    return app


FORWARDED = {
    "X-Forwarded-For": "198.51.100.9, 203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "guestbook.example",
}


def test_forwarded_headers_are_ignored_without_proxies(make_app: Callable[..., Flask]) -> None:
    seen = _echo_app(make_app).test_client().get("/echo", headers=FORWARDED).get_json()
    assert seen == {"remote_addr": "127.0.0.1", "scheme": "http", "host": "localhost"}


def test_proxy_fix_trusts_exactly_proxy_count_hops(make_app: Callable[..., Flask]) -> None:
    seen = _echo_app(make_app, PROXY_COUNT="1").test_client().get("/echo", headers=FORWARDED).get_json()
    # One trusted proxy: the last X-Forwarded-For hop is the client; the spoofable first one is not.
    assert seen == {"remote_addr": "203.0.113.7", "scheme": "https", "host": "guestbook.example"}
    seen = _echo_app(make_app, PROXY_COUNT="2").test_client().get("/echo", headers=FORWARDED).get_json()
    assert seen["remote_addr"] == "198.51.100.9"


def test_api_is_exempt_from_csrf_but_pages_are_not(client: FlaskClient) -> None:
    assert client.post("/api/entries", json={"author": "a", "message": "b"}).status_code == 201
    assert client.post("/", data={"author": "a", "message": "b"}).status_code == 400


def test_https_form_post_needs_a_same_origin_referer(make_app: Callable[..., Flask]) -> None:
    # Flask-WTF's SSL-strict check: over HTTPS the Referer must name this host.
    client = make_app("production").test_client()
    base = "https://guestbook.example"
    page = client.get("/", base_url=base).get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    form = {"author": "a", "message": "b", "csrf_token": token}
    refused = client.post("/", data=form, base_url=base)
    assert refused.status_code == 400
    assert "The referrer header is missing." in refused.get_data(as_text=True)
    foreign = client.post("/", data=form, base_url=base, headers={"Referer": "https://evil.example/"})
    assert foreign.status_code == 400
    accepted = client.post("/", data=form, base_url=base, headers={"Referer": base + "/"})
    assert accepted.status_code == 302


def test_proxy_count_0_trusts_no_forwarded_proto(make_app: Callable[..., Flask]) -> None:
    # Talisman reads X-Forwarded-Proto itself: a client must not talk its way past the redirect.
    client = make_app("production").test_client()
    response = client.get("/api/entries", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 302
    assert response.headers["Location"] == "https://localhost/api/entries"
    assert "Strict-Transport-Security" not in response.headers


def test_a_trusted_proxy_saying_https_is_believed(make_app: Callable[..., Flask]) -> None:
    client = make_app("production", PROXY_COUNT="1").test_client()
    response = client.get("/api/entries", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_only_the_trusted_hop_decides_the_scheme(make_app: Callable[..., Flask]) -> None:
    # The client's own "https" ahead of what the one trusted proxy appended ("http") counts for nothing.
    client = make_app("production", PROXY_COUNT="1").test_client()
    response = client.get("/api/entries", headers={"X-Forwarded-Proto": "https, http"})
    assert response.status_code == 302
    assert "Strict-Transport-Security" not in response.headers


def test_headers_worked_out_once_still_follow_the_scheme_and_endpoint(make_app: Callable[..., Flask]) -> None:
    # CachedTalisman computes headers per (endpoint, secure); one app sees every combination here.
    client = make_app("production", FORCE_HTTPS="false").test_client()
    for base, hsts in [("http://a.example", False), ("https://a.example", True), ("http://a.example", False)]:
        for path in ("/", "/livez"):
            headers = client.get(path, base_url=base).headers
            assert ("Strict-Transport-Security" in headers) is hsts, (base, path)
            assert headers["X-Frame-Options"] == "DENY"
            assert headers.getlist("Content-Security-Policy") == [headers["Content-Security-Policy"]]
