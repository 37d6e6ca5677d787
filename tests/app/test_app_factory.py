"""The application factory: a short, ordered sequence; config from os.environ by default."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from app_support import APP_DIR, STRONG_KEY
from flask import Flask

from guestbook import ConfigError, create_app


def test_create_app_reads_app_env_and_the_environment(
    monkeypatch: pytest.MonkeyPatch, app_database: str
) -> None:
    monkeypatch.setenv("APP_ENV", "testing")
    monkeypatch.setenv("DATABASE_URL", app_database)
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    monkeypatch.setenv("PROXY_COUNT", "2")
    app = create_app()
    assert app.config["TESTING"] is True
    assert app.config["PROXY_COUNT"] == 2
    with pytest.raises(ConfigError, match="test database outside APP_ENV=testing"):
        create_app("development")  # the argument wins over APP_ENV, and the guard applies


def test_blueprints_and_extensions_are_registered(app: Flask) -> None:
    assert set(app.blueprints) == {"api", "main", "probes"}
    assert {"sqlalchemy", "migrate", "cache", "csrf"} <= set(app.extensions)
    rules = {(rule.rule, rule.endpoint) for rule in app.url_map.iter_rules()}
    assert {
        ("/api/entries", "api.list_entries"),
        ("/api/entries", "api.create_entry"),
        ("/api/entries/<int:entry_id>", "api.get_entry"),
        ("/", "main.index"),
        ("/livez", "probes.livez"),
        ("/readyz", "probes.readyz"),
    } <= rules


def test_each_app_is_independent(make_app: Callable[..., Flask]) -> None:
    first = make_app()
    second = make_app(PROXY_COUNT="1")
    assert first is not second and first.config["PROXY_COUNT"] == 0 and second.config["PROXY_COUNT"] == 1


def test_creating_the_app_opens_no_database_connection() -> None:
    # Gunicorn imports the app in every worker; nothing may connect (or fail) at that point.
    app = create_app(
        "production",
        environ={"SECRET_KEY": STRONG_KEY, "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/nowhere"},
    )
    assert app.name == "guestbook"


def test_packaging_ships_every_file_the_app_needs() -> None:
    # The image installs a wheel: `packages = ["guestbook"]` takes the top-level modules, and
    # package-data must cover everything else (templates, static, migrations).
    pyproject = tomllib.loads((APP_DIR.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["guestbook"]
    package = APP_DIR / "guestbook"
    for path in package.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(package)
        if len(relative.parts) == 1 and path.suffix == ".py":
            continue  # a module of the package itself
        assert any(
            Path(relative).match(p) or relative.as_posix().startswith(p.split("**")[0]) for p in patterns
        ), f"{relative} would be missing from the wheel: add it to package-data or make it a top-level module"
