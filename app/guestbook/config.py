"""Configuration from the environment: one class per APP_ENV, and refusal to start when it is unsafe.

Every problem is collected first and reported at once, so a broken Deployment shows the whole list in
its first crash log instead of one variable per restart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from .database import POOLERS, connect_args
from .tracing import enabled as tracing_enabled

ENVIRONMENTS = ("development", "testing", "production")
DEFAULT_ENV = "development"

# The playbook's guard, tokenised: `contest` and `latest` are not `test`, `app_test1` is.
TEST_TOKENS = frozenset({"test", "tests", "testing"})

# Well-known placeholder keys that show up in tutorials, templates and .env.example files.
WEAK_SECRET_KEYS = frozenset(
    {
        "dev",
        "development",
        "secret",
        "secret-key",
        "secret_key",
        "secretkey",
        "changeme",
        "change-me",
        "change_me",
        "default",
        "test",
        "testing",
        "password",
        "your-secret-key",
        "super-secret",
        "supersecret",
        "please-change-me",
        "insecure",
    }
)
MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_DISTINCT_CHARS = 10

PSYCOPG_SCHEME = "postgresql+psycopg"


class ConfigError(RuntimeError):
    """The environment does not describe a configuration this app may start with."""

    def __init__(self, env: str, problems: list[str]) -> None:
        self.env = env
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"refusing to start guestbook (APP_ENV={env}): {len(problems)} problem(s)\n{lines}")


def tokens(identifier: str) -> list[str]:
    """Lowercase word and number tokens of an identifier (`guestbook_test1` -> guestbook, test, 1)."""
    return re.findall(r"[a-z]+|[0-9]+", identifier.lower())


def find_test_tokens(url: URL) -> list[str]:
    """Which parts of a database URL (database, host, user) carry a test token."""
    hits = []
    for what, value in (("database", url.database), ("host", url.host), ("user", url.username)):
        if value and TEST_TOKENS.intersection(tokens(value)):
            hits.append(f"{what} {value!r}")
    return hits


def secret_key_weakness(key: str) -> str | None:
    """Why a key is too weak for production, or None when it is acceptable."""
    if key.strip().lower() in WEAK_SECRET_KEYS:
        return "is a well-known placeholder"
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"is shorter than {MIN_SECRET_KEY_LENGTH} characters"
    if len(set(key)) < MIN_SECRET_KEY_DISTINCT_CHARS:
        return f"has fewer than {MIN_SECRET_KEY_DISTINCT_CHARS} distinct characters"
    return None


def parse_key_list(raw: str) -> list[str]:
    """SECRET_KEY_FALLBACKS: a JSON list of strings, or comma-separated; empty items are dropped."""
    raw = raw.strip()
    if not raw:
        return []
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"looks like a JSON list but does not parse: {exc.msg}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("a JSON value must be a list of strings")
        return [v for v in value if v.strip()]
    return [part.strip() for part in raw.split(",") if part.strip()]


def database_uri(raw: str) -> URL:
    """Parse DATABASE_URL; the plain postgresql:// (or postgres://) form gets the psycopg 3 driver."""
    url = make_url(raw.strip())
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername=PSYCOPG_SCHEME)
    if not url.drivername.startswith("postgresql"):
        raise ValueError(f"must be a PostgreSQL URL (postgresql://...), not {url.drivername}://")
    if not url.database:
        raise ValueError("names no database (postgresql://user:password@host:port/DBNAME)")
    return url


class _Reader:
    """Reads typed values from the environment, remembering every problem instead of raising."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.missing: list[str] = []
        self.problems: list[str] = []

    def required(self, name: str) -> str:
        value = self.environ.get(name, "")
        if not value.strip():
            self.missing.append(name)
        return value

    def optional(self, name: str, default: str = "") -> str:
        return self.environ.get(name, default)

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not an integer")
            return default
        if value < minimum:
            self.problems.append(f"{name}={value} must be at least {minimum}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.environ.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}={raw!r} is not a boolean (use true or false)")
        return default


class BaseConfig:
    """Settings shared by every environment; the subclasses change only what differs."""

    ENV_NAME: ClassVar[str] = ""
    TESTING = False
    DEBUG = False
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # Far above the largest valid body (1,080 characters, each at most 12 bytes as a JSON escape or a
    # percent-encoded form value); anything larger is refused with 413 before it is read.
    MAX_CONTENT_LENGTH = 64 * 1024
    # Only the production class defaults to HTTPS-only cookies, redirects and a strong key.
    SECURE_DEFAULT: ClassVar[bool] = False
    REQUIRE_STRONG_SECRET_KEY: ClassVar[bool] = False
    LOG_LEVEL_DEFAULT: ClassVar[str] = "INFO"

    def __init__(self, environ: Mapping[str, str]) -> None:
        r = _Reader(environ)
        self.SECRET_KEY = r.required("SECRET_KEY")
        raw_url = r.required("DATABASE_URL")

        try:
            self.SECRET_KEY_FALLBACKS = parse_key_list(r.optional("SECRET_KEY_FALLBACKS"))
        except ValueError as exc:
            r.problems.append(f"SECRET_KEY_FALLBACKS {exc}")
            self.SECRET_KEY_FALLBACKS = []

        url: URL | None = None
        if raw_url.strip():
            try:
                url = database_uri(raw_url)
            except (ArgumentError, ValueError) as exc:
                r.problems.append(f"DATABASE_URL {exc}")
        # Keep the URL object: str(URL) would mask the password as ***.
        self.SQLALCHEMY_DATABASE_URI: URL | str = url if url is not None else ""

        self.PROXY_COUNT = r.integer("PROXY_COUNT", 0)
        self.FORCE_HTTPS = r.boolean("FORCE_HTTPS", self.SECURE_DEFAULT)
        self.SESSION_COOKIE_SECURE = r.boolean("SESSION_COOKIE_SECURE", self.SECURE_DEFAULT)
        self.HSTS_MAX_AGE = r.integer("HSTS_MAX_AGE", 31536000)
        self.LOG_LEVEL = r.optional("LOG_LEVEL", self.LOG_LEVEL_DEFAULT).upper()
        if self.LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            r.problems.append(f"LOG_LEVEL={self.LOG_LEVEL!r} is not a logging level")
            self.LOG_LEVEL = "INFO"

        # prometheus_client's multiprocess directory; gunicorn.conf.py sets it when METRICS_PORT is set.
        self.METRICS = bool(r.optional("PROMETHEUS_MULTIPROC_DIR").strip())
        self.TRACING = tracing_enabled(r.environ)
        self.SENTRY_DSN = r.optional("SENTRY_DSN").strip()
        self.SENTRY_ENVIRONMENT = r.optional("SENTRY_ENVIRONMENT").strip() or self.ENV_NAME
        self.CACHE_TYPE = r.optional("CACHE_TYPE", "SimpleCache")
        self.CACHE_DEFAULT_TIMEOUT = r.integer("CACHE_DEFAULT_TIMEOUT", 300)
        for name in ("CACHE_REDIS_URL", "CACHE_DIR", "CACHE_KEY_PREFIX"):
            if r.optional(name):
                setattr(self, name, r.optional(name))
        self.ENTRIES_CACHE_SECONDS = r.integer("ENTRIES_CACHE_SECONDS", 5)

        self.DB_CONNECT_TIMEOUT = r.integer("DB_CONNECT_TIMEOUT", 3, minimum=1)
        self.DB_STATEMENT_TIMEOUT_MS = r.integer("DB_STATEMENT_TIMEOUT_MS", 15000)
        self.DB_POOLER = r.optional("DB_POOLER", "none").strip().lower() or "none"
        if self.DB_POOLER not in POOLERS:
            r.problems.append(f"DB_POOLER={self.DB_POOLER!r} is not one of {', '.join(POOLERS)}")
            self.DB_POOLER = "none"
        # Migrations (migrations/env.py): how long one DDL statement may wait for a table lock while
        # reads queue behind it, and how often the whole upgrade is retried when it times out.
        self.MIGRATION_LOCK_TIMEOUT_MS = r.integer("MIGRATION_LOCK_TIMEOUT_MS", 5000)
        self.MIGRATION_LOCK_RETRIES = r.integer("MIGRATION_LOCK_RETRIES", 5)
        self.MIGRATION_LOCK_RETRY_DELAY_MS = r.integer("MIGRATION_LOCK_RETRY_DELAY_MS", 1000)
        self._url = url
        self.READYZ_TIMEOUT_MS = r.integer("READYZ_TIMEOUT_MS", 1000, minimum=1)
        self.SQLALCHEMY_ENGINE_OPTIONS = self.engine_options(r)

        if url is not None and not self.TESTING:
            hits = find_test_tokens(url)
            if hits:
                r.problems.append(
                    "DATABASE_URL points at a test database outside APP_ENV=testing "
                    f"({', '.join(hits)} has a 'test' token): use APP_ENV=testing or another database"
                )
        if self.REQUIRE_STRONG_SECRET_KEY:
            for name, key in [("SECRET_KEY", self.SECRET_KEY)] + [
                (f"SECRET_KEY_FALLBACKS[{i}]", k) for i, k in enumerate(self.SECRET_KEY_FALLBACKS)
            ]:
                if not key.strip():
                    continue  # reported as missing
                weakness = secret_key_weakness(key)
                if weakness:
                    r.problems.append(
                        f"{name} {weakness}; generate one with "
                        "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
                    )

        problems = []
        if r.missing:
            problems.append(f"missing required environment variable(s): {', '.join(r.missing)}")
        problems.extend(r.problems)
        if problems:
            raise ConfigError(self.ENV_NAME, problems)

    def connect_args(self) -> dict[str, Any]:
        """libpq options every connection gets: a bounded connect, and the statement timeout when
        it travels as a startup parameter (DB_POOLER=none; see database.py for the others)."""
        return connect_args(
            self._url or URL.create(PSYCOPG_SCHEME),
            self.DB_POOLER,
            self.DB_CONNECT_TIMEOUT,
            self.DB_STATEMENT_TIMEOUT_MS,
        )

    def engine_options(self, r: _Reader) -> dict[str, Any]:
        """A pool that never grows without bound; database.py replaces dead connections at checkout."""
        return {
            "pool_recycle": r.integer("DB_POOL_RECYCLE", 1800),
            "pool_size": r.integer("DB_POOL_SIZE", 5, minimum=1),
            "max_overflow": r.integer("DB_MAX_OVERFLOW", 5),
            "pool_timeout": r.integer("DB_POOL_TIMEOUT", 10, minimum=1),
            "connect_args": self.connect_args(),
        }


class DevelopmentConfig(BaseConfig):
    """Local work: plain HTTP, any key, verbose logs. DEBUG comes from `flask run --debug`."""

    ENV_NAME = "development"
    LOG_LEVEL_DEFAULT = "DEBUG"


class TestingConfig(BaseConfig):
    """The test suite: a test database is expected, and every test gets a fresh connection."""

    __test__ = False  # not a pytest test class, despite the name
    ENV_NAME = "testing"
    TESTING = True

    def engine_options(self, r: _Reader) -> dict[str, Any]:
        # NullPool: no connection outlives the test that opened it (the playbook's choice).
        return {"poolclass": NullPool, "connect_args": self.connect_args()}


class ProductionConfig(BaseConfig):
    """Serving real users: HTTPS only, secure cookies, a strong SECRET_KEY."""

    ENV_NAME = "production"
    SECURE_DEFAULT = True
    REQUIRE_STRONG_SECRET_KEY = True


configs: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(env: str | None, environ: Mapping[str, str]) -> BaseConfig:
    """The configuration for ``env`` (default: APP_ENV, else development), read from ``environ``."""
    name = (env or environ.get("APP_ENV") or DEFAULT_ENV).strip().lower()
    if name not in configs:
        raise ConfigError(name, [f"APP_ENV={name!r} is not one of {', '.join(ENVIRONMENTS)}"])
    return configs[name](environ)
