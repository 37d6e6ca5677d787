"""The environment/database pairing rules S1-S6: one pure function, used by the webhook and by reconcile."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .postgres.url import DatabaseIdentity

TEST_TOKENS = frozenset({"test", "tests", "testing"})
NON_PRODUCTION_TOKENS = frozenset(
    {"dev", "development", "staging", "ci", "sandbox", "tmp", "scratch", "local"}
)
PRODUCTION_TOKENS = frozenset({"prod", "production", "live"})

# Rules the admission webhook can judge from the request alone; S6 needs the database itself.
WEBHOOK_RULES = ("S1", "S2", "S3", "S4", "S5")


def location(identity: DatabaseIdentity) -> tuple[str, int, str]:
    """Where a database is, for S5: the same host, port and name is the same database."""
    return (identity.host.lower(), identity.port, identity.dbname)


@dataclass(frozen=True)
class OtherApp:
    """Another FlaskApp and the database it uses (for S5)."""

    namespace: str
    name: str
    environment: str
    location: tuple[str, int, str]
    # creationTimestamp: the app that was there first keeps the database; S5 refuses the newcomer.
    created: str = ""
    # Whether the operator provisions its role (database.server) rather than the user (existingSecret).
    provisioned: bool = False
    # PostgreSQL's system_identifier of its server, once the operator has connected to it.
    server_id: str | None = None


def same_database(other: OtherApp, identity: DatabaseIdentity, server_id: str | None = None) -> bool:
    """Whether `other` uses the database `identity` names: the same host, port and name — or the same
    name on the same server by its system_identifier, whatever host name each PostgresServer uses."""
    if other.location == location(identity):
        return True
    return bool(server_id) and other.server_id == server_id and other.location[2] == identity.dbname


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


def tokens(identifier: str) -> list[str]:
    """Split an identifier into lowercase word and number tokens, so `contest` is not `test` but `test1` is."""
    return re.findall(r"[a-z]+|[0-9]+", identifier.lower())


def _token_hits(identity: DatabaseIdentity, wanted: frozenset[str]) -> list[tuple[str, str, str]]:
    hits = []
    for what, value in (("database", identity.dbname), ("host", identity.host), ("user", identity.user)):
        for token in tokens(value):
            if token in wanted:
                hits.append((what, value, token))
                break
    return hits


def _describe(hits: list[tuple[str, str, str]]) -> str:
    return ", ".join(f"{what} '{value}' has the token '{token}'" for what, value, token in hits)


def check_pairing(
    environment: str,
    identity: DatabaseIdentity,
    *,
    server_name: str | None = None,
    server_environments: Iterable[str] | None = None,
    others: Iterable[OtherApp] = (),
    stamp: str | None = None,
    rules: Iterable[str] = ("S1", "S2", "S3", "S4", "S5", "S6"),
    me: tuple[str, str, str] | None = None,
    server_id: str | None = None,
) -> list[Violation]:
    """Every pairing rule the app breaks, in rule order; an empty list means the pairing is safe.

    `me` is (creationTimestamp, namespace, name) of the app judged, when it exists already: for S5 only
    apps that came before it count, so the first user of a database keeps it. `server_id` is the
    system_identifier of the app's server when known. Messages name nothing of other apps: a tenant
    reads them.
    """
    wanted = set(rules)
    found: list[Violation] = []
    if "S1" in wanted and environment != "testing":
        hits = _token_hits(identity, TEST_TOKENS)
        if hits:
            found.append(
                Violation(
                    "S1",
                    f"a {environment} app must not use a test database: {_describe(hits)}; "
                    "only environment 'testing' may",
                )
            )
    if "S2" in wanted and environment == "production":
        hits = _token_hits(identity, NON_PRODUCTION_TOKENS)
        if hits:
            found.append(
                Violation("S2", f"a production app must not use a non-production database: {_describe(hits)}")
            )
    if "S3" in wanted and environment != "production":
        hits = _token_hits(identity, PRODUCTION_TOKENS)
        if hits:
            found.append(
                Violation("S3", f"a {environment} app must not use a production database: {_describe(hits)}")
            )
    if "S4" in wanted and server_environments is not None:
        allowed = sorted(server_environments)
        if environment not in allowed:
            found.append(
                Violation(
                    "S4",
                    f"PostgresServer '{server_name}' admits environments {allowed}, not '{environment}'",
                )
            )
    if "S5" in wanted:
        clash = sorted(
            (
                o
                for o in others
                if same_database(o, identity, server_id)
                and o.environment != environment
                and (me is None or (o.created, o.namespace, o.name) < me)
            ),
            key=lambda o: (o.namespace, o.name),
        )
        if clash:
            found.append(
                Violation(
                    "S5",
                    f"database '{identity.dbname}' on {identity.host}:{identity.port} is already used by "
                    "another FlaskApp in another environment",
                )
            )
    if "S6" in wanted and stamp is not None and stamp != environment:
        found.append(
            Violation(
                "S6",
                f"database '{identity.dbname}' is stamped for environment '{stamp}', not '{environment}'",
            )
        )
    return found


def summary(violations: list[Violation]) -> str:
    """One message naming every broken rule and its offending value."""
    return "; ".join(str(v) for v in violations)
