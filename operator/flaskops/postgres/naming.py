"""Which database and role an app uses, and the names and stamps the operator writes on the server.

Pure: no driver, no I/O. `identity_for` is the one answer to "which database and role does this app
use", for reconcile, the admission webhook and the operator's index of apps.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Protocol

from flaskops import names, ownership

from .errors import ReservedName
from .url import DatabaseIdentity

if TYPE_CHECKING:
    from flaskops.spec import FlaskAppSpec

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "ReservedName",
    "ServerAddress",
    "check_identifier",
    "default_names",
    "identity_for",
    "names_for",
    "parse_stamp",
    "reserved",
    "stamp_for",
]

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1; longer names are silently truncated.
_HASH_CHARS = 8


class ServerAddress(Protocol):
    """Where a PostgresServer listens: `spec.PostgresServerSpec`, or `url.Address` built from an index."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


def default_names(namespace: str, app: str) -> tuple[str, str]:
    """Database and role names for an app: `<namespace>__<app>`, a valid identifier of at most 63 bytes.

    Database and role share the name, as in CloudNativePG. Names stay readable when that is unambiguous;
    otherwise a hash of the exact namespace and app is appended, so two apps never share a name.
    Raises ValueError for an empty namespace or app.
    """
    if not namespace or not app:
        raise ValueError("namespace and app name must not be empty")
    # "-" becomes "_" and the separator is "__": DNS labels never start or end with "-", so
    # namespace/app split back uniquely unless a name holds "--" or a character other than [a-z0-9-].
    readable = all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", part) for part in (namespace, app))
    base = f"{_identifier_part(namespace)}__{_identifier_part(app)}"
    # Unquoted identifiers cannot start with a digit, and roles named pg_* are reserved by the server;
    # a leading "_" is never produced otherwise, so it keeps the mapping unique.
    if base[0].isdigit() or base.startswith("pg_"):
        base = f"_{base}"
    if readable and len(base) <= MAX_IDENTIFIER_BYTES:
        return base, base
    # Hex never spells a pairing-rule token (prod, test, dev, ...), so the suffix cannot trip S1-S3.
    digest = hashlib.sha256(f"{namespace}/{app}".encode()).hexdigest()[:_HASH_CHARS]
    head = base[: MAX_IDENTIFIER_BYTES - _HASH_CHARS - 1].rstrip("_")
    name = f"{head}_{digest}"
    return name, name


def names_for(namespace: str, app: str, requested: str | None) -> tuple[str, str]:
    """The (database, role) an app uses: `spec.database.name` for both when given, else `default_names`.

    No reserved-name check: `identity_for` adds it. The operator's index calls this directly, because an
    index entry is made without knowing the server's address.
    """
    return (requested, requested) if requested else default_names(namespace, app)


def reserved(app: FlaskAppSpec) -> ownership.Refusal | None:
    """The refusal when the app's database or role name is reserved by name alone, else None.

    Only `spec.database.name` can be reserved: default names contain "__" and never start with "pg_".
    """
    return ownership.reserved_names(*_app_names(app))


def identity_for(app: FlaskAppSpec, server: ServerAddress) -> DatabaseIdentity:
    """The database and role `app` uses on `server`: host and port from the server, names from the app.

    Names: `spec.database.name` for both database and role when given, else `default_names(namespace,
    name)` (an app without namespace or name yet, as admission may see it, counts as "default"/"unnamed").
    Pure and cheap; no server is contacted. Raises ReservedName (its `refusal.reason` is "ReservedName")
    when the name is reserved by name alone (`ownership.reserved_names`); the server's own reservations
    (the admin role, privileged roles, templates) are judged at provisioning by `ownership.decide`.
    """
    dbname, role = _app_names(app)
    refusal = ownership.reserved_names(dbname, role)
    if refusal is not None:
        raise ReservedName(refusal)
    return DatabaseIdentity(server.host, int(server.port), dbname, role)


def _app_names(app: FlaskAppSpec) -> tuple[str, str]:
    return names_for(app.namespace or "default", app.name or "unnamed", app.database.name)


def _identifier_part(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]", "_", text.lower())
    return cleaned.strip("_") or "x"


def check_identifier(what: str, name: str) -> None:
    """Raise ValueError unless `name` is 1 to MAX_IDENTIFIER_BYTES bytes long (UTF-8).

    PostgreSQL truncates longer names with only a NOTICE: we would then look for a name that never exists.
    """
    if not name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{what} {name!r} must be 1 to {MAX_IDENTIFIER_BYTES} bytes long")


def stamp_for(environment: str) -> str:
    """The comment the operator writes on a database it provisions for `environment`."""
    if environment not in names.ENVIRONMENTS:
        raise ValueError(f"environment {environment!r} is not one of {', '.join(names.ENVIRONMENTS)}")
    return f"{names.DATABASE_STAMP_PREFIX}{environment}"


def parse_stamp(comment: str | None) -> str | None:
    """The environment stamped in a database comment, or None if it carries no stamp."""
    if not comment:
        return None
    # The stamp is one line of the comment, so a comment a person wrote before us is kept beside it.
    for line in comment.splitlines():
        line = line.strip()
        if line.startswith(names.DATABASE_STAMP_PREFIX):
            return line[len(names.DATABASE_STAMP_PREFIX) :].strip() or None
    return None
