"""The application factory: a short, ordered sequence; config from os.environ by default."""

from __future__ import annotations

import subprocess
import sys
import zipfile
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


def test_the_wheel_ships_every_file_the_app_needs_and_builds_quietly(tmp_path: Path) -> None:
    # The image installs a wheel (`pip install ".[app]"`). A file setuptools leaves out (a template, a
    # migration) breaks only the image, and its deprecation warnings used to fill ~190 lines.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(APP_DIR.parent),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = (result.stdout + result.stderr).lower()
    assert "warning" not in output and "deprecat" not in output, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("flaskops-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    package = APP_DIR / "guestbook"
    expected = {
        "guestbook/" + path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected - shipped == set()
