"""Configuration from the environment: fails hard, lists every problem, refuses unsafe pairings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from app_support import STRONG_KEY
from sqlalchemy.pool import NullPool

from flaskops_testbed.postgres import PostgresTarget
from guestbook import ConfigError, create_app
from guestbook.config import load_config, parse_key_list, secret_key_weakness, tokens

URL = "postgresql://app:pw@db.example:5432/guestbook"


def test_missing_variables_are_all_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        create_app("production", environ={})
    message = str(info.value)
    assert "SECRET_KEY" in message and "DATABASE_URL" in message
    assert info.value.problems[0] == "missing required environment variable(s): SECRET_KEY, DATABASE_URL"


def test_every_kind_of_problem_is_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            "production",
            {
                "DATABASE_URL": "postgresql://app:pw@db/guestbook_test",
                "PROXY_COUNT": "two",
                "DB_POOL_SIZE": "0",
                "SECRET_KEY_FALLBACKS": "[not json",
                "DB_POOLER": "pgpool",
            },
        )
    problems = "\n".join(info.value.problems)
    expected_parts = ("SECRET_KEY", "PROXY_COUNT='two'", "DB_POOL_SIZE=0", "SECRET_KEY_FALLBACKS", "test")
    for expected in (*expected_parts, "DB_POOLER='pgpool' is not one of none, session, transaction"):
        assert expected in problems
    assert len(info.value.problems) == 6


def test_unknown_app_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="APP_ENV='staging' is not one of development, testing, production"):
        load_config(None, {"APP_ENV": "staging", "SECRET_KEY": "x", "DATABASE_URL": URL})


def test_app_env_selects_the_class_and_defaults_to_development() -> None:
    env = {"SECRET_KEY": "x", "DATABASE_URL": URL}
    assert load_config(None, env).ENV_NAME == "development"
    assert load_config(None, {**env, "APP_ENV": "Testing"}).ENV_NAME == "testing"
    assert load_config("production", {**env, "SECRET_KEY": STRONG_KEY}).ENV_NAME == "production"


@pytest.mark.parametrize("env", ["development", "production"])
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db/guestbook_test",
        "postgresql://app:pw@db/test",
        "postgresql://app:pw@test-db.internal/guestbook",
        "postgresql://tests_user:pw@db/guestbook",
        "postgresql://app:pw@db/guestbook-testing",
        "postgresql://app:pw@db/guestbook_test1",
    ],
)
def test_test_database_is_refused_outside_testing(env: str, url: str) -> None:
    with pytest.raises(ConfigError, match="test database outside APP_ENV=testing"):
        load_config(env, {"SECRET_KEY": STRONG_KEY, "DATABASE_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db/contest",
        "postgresql://app:pw@db/latest_entries",
        "postgresql://app:pw@attestation.internal/guestbook",
        "postgresql://testimony:pw@db/guestbook",
        "postgresql://app:test@db/guestbook",  # the password is not an identifier
    ],
)
def test_words_containing_test_are_not_test_tokens(url: str) -> None:
    assert load_config("production", {"SECRET_KEY": STRONG_KEY, "DATABASE_URL": url}).ENV_NAME == "production"


def test_testing_environment_accepts_a_test_database() -> None:
    config = load_config("testing", {"SECRET_KEY": "x", "DATABASE_URL": "postgresql://u@h/guestbook_test"})
    assert config.TESTING is True
    assert config.SQLALCHEMY_ENGINE_OPTIONS["poolclass"] is NullPool


def test_tokens() -> None:
    assert tokens("guestbook_test1") == ["guestbook", "test", "1"]
    assert tokens("Contest-DB") == ["contest", "db"]


@pytest.mark.parametrize(
    "key",
    [
        "dev",
        "secret",
        "changeme",
        "CHANGE-ME",
        "short-but-random-9f8e",
        "a" * 64,
        "abababababababababababababababab",
    ],
)
def test_weak_secret_key_is_refused_in_production(key: str) -> None:
    assert secret_key_weakness(key) is not None
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config("production", {"SECRET_KEY": key, "DATABASE_URL": URL})


def test_weak_fallback_key_is_refused_in_production() -> None:
    # An old key still verifies signatures, so it must be as strong as the current one.
    with pytest.raises(ConfigError, match=r"SECRET_KEY_FALLBACKS\[1\] is a well-known placeholder"):
        load_config(
            "production",
            {"SECRET_KEY": STRONG_KEY, "SECRET_KEY_FALLBACKS": f"{STRONG_KEY}x,dev", "DATABASE_URL": URL},
        )


def test_weak_key_is_allowed_in_development() -> None:
    assert load_config("development", {"SECRET_KEY": "dev", "DATABASE_URL": URL}).SECRET_KEY == "dev"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", []),
        ("old1", ["old1"]),
        ("old1, old2 ,,", ["old1", "old2"]),
        ('["old1", "old,with,commas"]', ["old1", "old,with,commas"]),
    ],
)
def test_secret_key_fallbacks_parse(raw: str, expected: list[str]) -> None:
    assert parse_key_list(raw) == expected


def test_secret_key_fallbacks_json_must_be_a_list_of_strings() -> None:
    with pytest.raises(ValueError, match="list of strings"):
        parse_key_list("[1, 2]")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgresql_url_gets_the_psycopg3_driver(scheme: str) -> None:
    config = load_config("development", {"SECRET_KEY": "x", "DATABASE_URL": f"{scheme}://u:p%40ss@h:5433/db"})
    url = config.SQLALCHEMY_DATABASE_URI
    assert not isinstance(url, str)
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.port, url.database) == ("u", "p@ss", "h", 5433, "db")


def test_url_query_such_as_sslmode_is_kept() -> None:
    config = load_config("development", {"SECRET_KEY": "x", "DATABASE_URL": URL + "?sslmode=require"})
    assert not isinstance(config.SQLALCHEMY_DATABASE_URI, str)
    assert config.SQLALCHEMY_DATABASE_URI.query == {"sslmode": "require"}


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgresql://u:p@h", "not a url"])
def test_non_postgresql_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_config("development", {"SECRET_KEY": "x", "DATABASE_URL": url})


def test_production_engine_options() -> None:
    config = load_config("production", {"SECRET_KEY": STRONG_KEY, "DATABASE_URL": URL})
    options = config.SQLALCHEMY_ENGINE_OPTIONS
    assert "pool_pre_ping" not in options  # replaced by database.py's checkout check (no round trip)
    assert options["pool_recycle"] == 1800
    assert (options["pool_size"], options["max_overflow"], options["pool_timeout"]) == (5, 5, 10)
    assert options["connect_args"]["connect_timeout"] == 3
    assert options["connect_args"]["options"] == "-c statement_timeout=15000"
    assert config.FORCE_HTTPS is True and config.SESSION_COOKIE_SECURE is True


def test_engine_options_from_the_environment() -> None:
    env = {
        "SECRET_KEY": STRONG_KEY,
        "DATABASE_URL": URL,
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "0",
        "DB_POOL_RECYCLE": "300",
        "DB_CONNECT_TIMEOUT": "7",
        "DB_STATEMENT_TIMEOUT_MS": "500",
    }
    options = load_config("production", env).SQLALCHEMY_ENGINE_OPTIONS
    assert (options["pool_size"], options["max_overflow"], options["pool_recycle"]) == (2, 0, 300)
    assert options["connect_args"]["connect_timeout"] == 7
    assert options["connect_args"]["options"] == "-c statement_timeout=500"


@pytest.mark.parametrize(
    ("pooler", "has_options", "prepare_threshold"),
    [("none", True, "default"), ("session", False, "default"), ("transaction", False, None)],
)
def test_db_pooler_decides_the_startup_parameters(
    pooler: str, has_options: bool, prepare_threshold: object
) -> None:
    # PgBouncer refuses an `options` startup parameter; transaction pooling cannot keep prepared statements.
    args = load_config(
        "production", {"SECRET_KEY": STRONG_KEY, "DATABASE_URL": URL, "DB_POOLER": pooler}
    ).SQLALCHEMY_ENGINE_OPTIONS["connect_args"]
    assert ("options" in args) is has_options
    assert args.get("prepare_threshold", "default") == prepare_threshold
    assert args["application_name"] == "guestbook"


def test_production_applies_statement_timeout_on_the_real_server(
    postgres: PostgresTarget, database_factory: Callable[..., str]
) -> None:
    from sqlalchemy import text

    from guestbook.extensions import db

    url = postgres.url(database_factory("guestbook"))
    app = create_app(
        "production",
        environ={"SECRET_KEY": STRONG_KEY, "DATABASE_URL": url, "DB_STATEMENT_TIMEOUT_MS": "1234"},
    )
    with app.app_context():
        assert db.session.execute(text("SHOW statement_timeout")).scalar() == "1234ms"
        assert db.session.execute(text("SELECT current_setting('application_name')")).scalar() == "guestbook"
        db.session.remove()
        db.engine.dispose()
