"""Step 3, database: the role and database on the PostgresServer (created or checked, with the pairing
judged again inside that session) and the `<app>-db` Secret the pods read; for an existingSecret, only
the digest of the user's URL. The SQL itself is in postgres/server.py; ownership rules in ownership.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from .. import budget, names, ownership, tenancy
from .. import conditions as c
from ..kube import decode_secret
from ..postgres import server as credentials
from ..postgres import url as dburl
from ..safety import OtherApp
from ..spec import FlaskAppSpec, PostgresServerSpec
from . import pairing
from .children import Client, ensure_secret, repaired, require_owned
from .resolve import Target
from .result import RETRY_DATABASE_SECONDS, Event, Halt, StepResult
from .status import fresh

log = logging.getLogger("flaskops.reconcile")

Gate = Callable[[str], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Provisioned(StepResult):
    """The step's result. `secret_data`: the data of the Secret the pods read for the database (for an
    existingSecret, its URL's digest): what the Deployment's checksum covers. `record`: status.database
    once the whole credentials stage (this and the secret key) went through (see `ready`)."""

    secret_data: Mapping[str, str] = field(default_factory=dict)
    record: Mapping[str, Any] = field(default_factory=dict)


def owner(app: FlaskAppSpec) -> ownership.Owner:
    """The ownership record this app writes on its role and database."""
    return ownership.Owner(namespace=app.namespace, name=app.name, uid=app.uid, environment=app.environment)


def provision(
    kube: Client,
    app: FlaskAppSpec,
    target: Target,
    previous: Mapping[str, Any],
    *,
    others: Iterable[OtherApp],
    gate: Gate,
    connect_timeout: int,
) -> Provisioned:
    """Provision (server) or take (existingSecret) the app's database credentials.

    `previous`: the status before this reconcile — whether DatabaseReady is fresh for this generation (then
    PostgreSQL is not asked again while the Secret is intact), the replicas running (their connection
    slots), what it was provisioned with and the server's system_identifier. `gate(server)` bounds the
    concurrent provisioning sessions per server (raises TimeoutError when no slot frees in time).
    Halts with DatabaseReady=False: NotOwned (a Secret's name or a role/database someone else owns),
    AdminSecretNotFound, WaitingForServer, the server's refusal or unreachability (retried), S5/S6 from
    `pairing.check` (stalled), InvalidDatabaseName.
    """
    events: list[Event] = []
    try:
        return _provision(kube, app, target, previous, events, others, gate, connect_timeout)
    except Halt as halt:
        return halt.result(Provisioned, events=events)


def ready(target: Target, provisioned: Provisioned) -> StepResult:
    """DatabaseReady=True and status.database, once the database and the secret key are both in place."""
    ident = target.identity
    return StepResult(
        conditions=(
            c.true(
                names.DATABASE_READY,
                "Provisioned" if target.server else "ExistingSecret",
                f"database '{ident.dbname}' on {ident.host}:{ident.port} as '{ident.user}'",
            ),
        ),
        status={"database": dict(provisioned.record)},
    )


def admin(kube: Client, server: PostgresServerSpec, connect_timeout: int) -> credentials.AdminConnection:
    """The admin connection of `server` from its admin Secret; Halt (retried) when the Secret is missing."""
    data = kube.read_secret_data(server.admin_secret_namespace, server.admin_secret_name)
    keys = (names.ADMIN_USERNAME_KEY, names.ADMIN_PASSWORD_KEY)
    if data is None or any(k not in data for k in keys):
        # The tenant reads this: it names the server, not where its admin credentials live.
        log.warning(
            "admin secret missing",
            extra={
                "postgresserver": server.name,
                "secret": f"{server.admin_secret_namespace}/{server.admin_secret_name}",
            },
        )
        raise Halt(
            c.false(
                names.DATABASE_READY,
                "AdminSecretNotFound",
                f"the admin Secret of PostgresServer '{server.name}' is missing or lacks the keys "
                f"{list(keys)}; the cluster admin must create it (see its spec.adminSecretRef)",
            ),
            retry_after=RETRY_DATABASE_SECONDS,
        )
    return credentials.AdminConnection(
        host=server.host,
        port=server.port,
        sslmode=server.ssl_mode,
        username=data[names.ADMIN_USERNAME_KEY],
        password=data[names.ADMIN_PASSWORD_KEY],
        connect_timeout=connect_timeout,
    )


def _provision(
    kube: Client,
    app: FlaskAppSpec,
    target: Target,
    previous: Mapping[str, Any],
    events: list[Event],
    others: Iterable[OtherApp],
    gate: Gate,
    connect_timeout: int,
) -> Provisioned:
    ident = target.identity
    is_fresh = fresh(previous.get("conditions") or [], names.DATABASE_READY, app.generation)
    server_id = ((previous.get("database") or {}).get("systemIdentifier")) if is_fresh else None
    if target.server is not None:
        # Pods the Deployment had when last seen: a scale-down keeps their slots until they are gone.
        running = int(previous.get("replicas") or 0)
        session = _Session(kube, app, target, target.server, previous, others, gate, connect_timeout, running)
        db_data, learnt = session.run(events, fresh=is_fresh)
        server_id = learnt or server_id
        secret_name = names.db_secret_name(app.name)
    else:
        secret_name = app.database.existing_secret.name  # type: ignore[union-attr]
        db_data = {"DATABASE_URL": target.url_digest}
    record: dict[str, Any] = {
        "secretName": secret_name,
        "host": ident.host,
        "port": ident.port,
        "name": ident.dbname,
        "user": ident.user,
    }
    if server_id:
        record["systemIdentifier"] = server_id
    return Provisioned(events=tuple(events), secret_data=db_data, record=record)


@dataclass(frozen=True)
class _Session:
    """What provisioning one app on one server needs (lives for one call of `provision`)."""

    kube: Client
    app: FlaskAppSpec
    target: Target
    server: PostgresServerSpec
    previous: Mapping[str, Any]
    others: Iterable[OtherApp]
    gate: Gate
    connect_timeout: int
    running: int

    def run(self, events: list[Event], *, fresh: bool) -> tuple[dict[str, str], str | None]:
        """The `<app>-db` Secret's data, and the server's system_identifier when PostgreSQL was asked."""
        app, kube, ident = self.app, self.kube, self.target.identity
        secret_name = names.db_secret_name(app.name)
        obj = kube.get("Secret", app.namespace, secret_name)
        require_owned(app, obj, names.DATABASE_READY, "Secret", secret_name)
        existing = decode_secret(obj)
        want = dburl.db_secret_data(
            ident.host,
            ident.port,
            ident.dbname,
            ident.user,
            (existing or {}).get("password", ""),
            self.target.sslmode,
        )
        if fresh and existing == want:
            # Provisioned for this generation and the Secret is intact: no need to reach PostgreSQL again
            # (child events re-run reconcile often; a spec change re-provisions, re-checking S6 first).
            # Its labels and ownerReference are put back if someone removed them (no write otherwise).
            ensure_secret(kube, app, secret_name, "db-credentials", want, obj)
            return dict(existing), None
        if fresh and obj is None:
            events.append(
                repaired(
                    "Secret", secret_name, "was deleted; recreated with a new password (the pods roll to it)"
                )
            )
        conn = admin(kube, self.server, self.connect_timeout)
        # The password is generated once and never regenerated while its Secret exists. It is (re)applied
        # to the role on every provisioning pass, so a role that outlived its Secret (Retain, then the app
        # was re-created) gets the Secret's password rather than keeping an unknown one.
        password = (existing or {}).get("password") or credentials.generate_password()
        # Rules S5 (by the server's system_identifier) and S6 (the database's stamp) are judged inside the
        # provisioning session, before it writes anything: a refused pairing leaves nothing behind.
        result = self.ensure_database(conn, password)
        if result.database_created:
            events.append(
                Event(
                    "Normal", "DatabaseCreated", f"created database '{ident.dbname}' and role '{ident.user}'"
                )
            )
        if result.adopted:
            events.append(
                Event(
                    "Warning",
                    "DatabaseAdopted",
                    f"adopted existing role '{ident.user}' and database '{ident.dbname}' "
                    "(spec.database.adoptExisting): the role's password was replaced by the one in Secret "
                    f"'{secret_name}' — clients still using the old password are locked out — and both now "
                    "record this FlaskApp as their owner",
                )
            )
        data = dburl.db_secret_data(
            ident.host, ident.port, ident.dbname, ident.user, password, self.target.sslmode
        )
        won = ensure_secret(kube, app, secret_name, "db-credentials", data, obj)
        if not won:
            # Another writer created the Secret between our read and our create: its password is the one.
            data = kube.read_secret_data(app.namespace, secret_name) or data
            self.ensure_database(conn, data["password"])
        return data, result.system_identifier

    def ensure_database(
        self, conn: credentials.AdminConnection, password: str
    ) -> credentials.ProvisionResult:
        app, server, ident = self.app, self.server, self.target.identity
        provisioned = self.previous.get("database") or {}
        claim = ownership.Claim(
            owner=owner(app),
            dbname=ident.dbname,
            role=ident.user,
            adopt=app.database.adopt_existing,
            adoptable=tenancy.adoptable(server.adoptable_databases, app.namespace, ident.dbname),
            provisioned_before=(provisioned.get("name"), provisioned.get("user"))
            == (ident.dbname, ident.user),
        )

        def judge(server_id: str | None, stamp: str | None) -> None:
            pairing.check(app, self.target, self.others, stamp=stamp, server_id=server_id)

        try:
            with self.gate(server.name):
                return credentials.ensure_database(
                    conn, claim, password, check=judge, connection_limit=budget.worst_case(app, self.running)
                )
        except TimeoutError as exc:
            raise Halt(
                c.false(names.DATABASE_READY, "WaitingForServer", f"{exc}; retrying"),
                retry_after=RETRY_DATABASE_SECONDS,
            ) from None
        except credentials.NotOwned as exc:
            log.warning(
                "refused to touch a database or role",
                extra={"namespace": app.namespace, "flaskapp": app.name, "why": exc.reason},
            )
            raise Halt(
                c.false(names.DATABASE_READY, exc.condition_reason, exc.public), stalled=True
            ) from None
        except credentials.DatabaseUnavailable as exc:
            # The whole story (admin role, server text) goes to the operator's log; the tenant gets `public`.
            log.warning(
                "provisioning failed",
                extra={"namespace": app.namespace, "flaskapp": app.name, "why": exc.reason},
            )
            raise Halt(
                c.false(
                    names.DATABASE_READY,
                    exc.condition_reason,
                    f"PostgresServer '{server.name}': {exc.public}",
                ),
                retry_after=RETRY_DATABASE_SECONDS,
            ) from None
        except ValueError as exc:
            raise Halt(c.false(names.DATABASE_READY, "InvalidDatabaseName", str(exc)), stalled=True) from None
