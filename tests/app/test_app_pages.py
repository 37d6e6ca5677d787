"""The HTML pages: list and form, CSRF, autoescape, HTML error templates."""

from __future__ import annotations

from collections.abc import Callable

from app_support import csrf_token
from flask import Flask
from flask.testing import FlaskClient


def test_index_lists_entries_and_shows_the_form(client: FlaskClient) -> None:
    client.post("/api/entries", json={"author": "Ada", "message": "First!"})
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "First!" in page and "Ada" in page
    assert 'name="csrf_token"' in page
    assert '<form method="post" action="/"' in page


def test_empty_guestbook_says_so(client: FlaskClient) -> None:
    assert "No entries yet" in client.get("/").get_data(as_text=True)


def test_post_without_csrf_token_is_refused(client: FlaskClient) -> None:
    response = client.post("/", data={"author": "Mallory", "message": "forged"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "The CSRF token is missing." in page
    assert response.mimetype == "text/html"
    assert "forged" not in client.get("/").get_data(as_text=True)


def test_post_with_a_wrong_csrf_token_is_refused(client: FlaskClient) -> None:
    csrf_token(client)
    response = client.post("/", data={"author": "M", "message": "forged", "csrf_token": "nope"})
    assert response.status_code == 400
    assert "The CSRF token is invalid." in response.get_data(as_text=True)


def test_post_with_csrf_token_creates_and_redirects(client: FlaskClient) -> None:
    token = csrf_token(client)
    response = client.post("/", data={"author": "Ada", "message": "Signed", "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "Thanks for signing the guestbook." in page
    assert "Signed" in page


def test_invalid_form_is_422_with_messages(client: FlaskClient) -> None:
    token = csrf_token(client)
    response = client.post("/", data={"author": "", "message": "m" * 1001, "csrf_token": token})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "This field is required." in page
    assert "Must be at most 1000 characters." in page  # the API's rules and messages


def test_script_in_a_message_is_escaped(client: FlaskClient) -> None:
    client.post("/api/entries", json={"author": "<b>Eve</b>", "message": "<script>alert('xss')</script>"})
    page = client.get("/").get_data(as_text=True)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in page
    assert "&lt;b&gt;Eve&lt;/b&gt;" in page


def test_unknown_page_is_the_html_404_template(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<h1>404 Page not found</h1>" in page
    assert "Back to the guestbook" in page


def test_wrong_method_on_a_page_is_html_405(client: FlaskClient) -> None:
    response = client.delete("/")
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "405 Method Not Allowed" in response.get_data(as_text=True)
    assert "POST" in response.headers["Allow"]


def test_unhandled_error_is_the_html_500_template(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<h1>500 Internal server error</h1>" in page
    assert "secret detail" not in page


def test_static_stylesheet_is_served(client: FlaskClient) -> None:
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    response.close()
