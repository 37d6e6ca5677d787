"""PostgreSQL connection URLs: build the universal URL and the Secret's keys, parse a user's URL.

Pure: no driver. `DatabaseIdentity` is what the pairing rules (safety.py) look at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

from flaskops import names

DEFAULT_PORT = 5432
# libpq's sslmode values; anything else is a typo that libpq would refuse at connect time.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# postgres:// and postgresql:// are libpq's; postgresql+driver:// is SQLAlchemy's spelling.
_SCHEME = re.compile(r"^postgres(ql)?$|^postgresql\+[a-z0-9_]+$")


@dataclass(frozen=True)
class DatabaseIdentity:
    """Where a database lives and who uses it: what the pairing rules look at."""

    host: str
    port: int
    dbname: str
    user: str


class Address(NamedTuple):
    """A server's host and port, e.g. from the operator's index entry of a PostgresServer."""

    host: str
    port: int


def _netloc_host(host: str) -> str:
    # An IPv6 literal must be bracketed in a URL or its colons read as a port.
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _check(host: str, port: int, dbname: str, user: str, sslmode: str) -> None:
    if not host:
        raise ValueError("database host is empty")
    if not 0 < port < 65536:
        raise ValueError(f"database port {port} is not between 1 and 65535")
    if not dbname:
        raise ValueError("database name is empty")
    if not user:
        raise ValueError("database user is empty")
    if sslmode not in SSL_MODES:
        raise ValueError(f"sslMode {sslmode!r} is not one of {', '.join(SSL_MODES)}")


def database_url(host: str, port: int, dbname: str, user: str, password: str, sslmode: str) -> str:
    """The universal postgresql://user:pass@host:port/db?sslmode=… URL, every part escaped."""
    _check(host, port, dbname, user, sslmode)
    # safe="" escapes "/" too: an unescaped "/", "@", ":", "?" or "#" in a password breaks every parser.
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"postgresql://{userinfo}@{_netloc_host(host)}:{port}/{quote(dbname, safe='')}?sslmode={sslmode}"


def db_secret_data(
    host: str, port: int, dbname: str, user: str, password: str, sslmode: str
) -> dict[str, str]:
    """The `<app>-db` Secret's data: exactly the keys of `names.DB_SECRET_KEYS`, all consistent."""
    url = database_url(host, port, dbname, user, password, sslmode)
    by_key = {
        "DATABASE_URL": url,
        # libpq's own variables, so psql and any libpq client work from `envFrom` alone.
        "PGHOST": host,
        "PGPORT": str(port),
        "PGDATABASE": dbname,
        "PGUSER": user,
        "PGPASSWORD": password,
        # CloudNativePG's keys, so tools written for its Secrets read ours.
        "uri": url,
        "host": host,
        "port": str(port),
        "dbname": dbname,
        "user": user,
        "username": user,
        "password": password,
    }
    # Projecting over the contract's tuple fails loudly if names.py gains a key this function does not fill.
    return {key: by_key[key] for key in names.DB_SECRET_KEYS}


def parse_database_url(url: str) -> DatabaseIdentity:
    """Host, port, database and user of a postgres(ql)(+driver):// URL; ValueError says what is wrong."""
    # Messages never quote the URL: it usually carries a password.
    if not url or not url.strip():
        raise ValueError("the database URL is empty")
    parts = urlsplit(url.strip())
    if not _SCHEME.match(parts.scheme.lower()):
        shown = parts.scheme or "(none)"
        raise ValueError(
            f"the database URL has scheme {shown!r}; expected postgresql://, postgres:// or postgresql+driver://"
        )
    if "," in parts.netloc.rpartition("@")[2]:
        raise ValueError("the database URL names several hosts; give exactly one host")
    query = parse_qs(parts.query)
    # libpq lets the query string carry host/port/dbname/user; the URL's own parts win when both exist.
    host = parts.hostname or _first(query, "host")
    if not host:
        raise ValueError(
            "the database URL has no host (expected postgresql://user:password@host:port/dbname)"
        )
    if host.startswith("/"):
        raise ValueError("the database URL points at a Unix socket; use a TCP host name the pods can reach")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the database URL's port is not a number between 0 and 65535") from None
    if port is None:
        port_text = _first(query, "port")
        if port_text is not None and not port_text.isdigit():
            raise ValueError("the database URL's port is not a number")
        port = int(port_text) if port_text else DEFAULT_PORT
    if not 0 < port < 65536:
        raise ValueError(f"the database URL's port {port} is not between 1 and 65535")
    user = unquote(parts.username) if parts.username else _first(query, "user")
    if not user:
        raise ValueError(
            "the database URL has no user (expected postgresql://user:password@host:port/dbname)"
        )
    dbname = unquote(parts.path.lstrip("/")) or _first(query, "dbname")
    if not dbname:
        raise ValueError("the database URL has no database name (expected ...@host:port/dbname)")
    return DatabaseIdentity(host=host, port=port, dbname=dbname, user=user)


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None
