"""Step 1, resolve: which database the app uses — a PostgresServer (and the role and database
postgres.naming.identity_for names on it) or the URL in the user's existingSecret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .. import conditions as c
from .. import manifests, names, tenancy
from ..postgres import naming
from ..postgres import url as dburl
from ..spec import FlaskAppSpec, PostgresServerSpec, parse_postgresserver
from .children import Client
from .result import RETRY_DATABASE_SECONDS, Halt, StepResult


@dataclass(frozen=True)
class Target:
    """The database the app will use, resolved from a PostgresServer or the user's URL."""

    identity: dburl.DatabaseIdentity
    server: PostgresServerSpec | None
    sslmode: str
    # For an existing Secret: a digest of the URL, so a change to it rolls the pods.
    url_digest: str = ""

    @property
    def database_key(self) -> str:
        """Which database the pods use, as migrations track it: a change means a new migration first."""
        if self.url_digest:
            return f"url:{self.url_digest}"
        i = self.identity
        return f"{i.host.lower()}:{i.port}/{i.dbname}?user={i.user}"


@dataclass(frozen=True)
class Resolved(StepResult):
    """The step's result; `target` is None exactly when it halted."""

    target: Target | None = None


NamespaceLabels = Callable[[str], Mapping[str, str] | None]


def resolve(kube: Client, app: FlaskAppSpec, namespace_labels: NamespaceLabels) -> Resolved:
    """The app's database target, or a halt with DatabaseReady=False: ServerNotFound, NamespaceNotAllowed,
    a reserved name (stalled), SecretNotFound (retried), InvalidDatabaseURL (stalled).

    Reads the PostgresServer (cache) or the user's existingSecret (API server: not the operator's to
    watch); `namespace_labels(ns)` gives a namespace's labels (None when unknown).
    """
    try:
        return Resolved(target=target(kube, app, namespace_labels))
    except Halt as halt:
        return halt.result(Resolved)


def target(kube: Client, app: FlaskAppSpec, namespace_labels: NamespaceLabels) -> Target:
    """As `resolve`, raising Halt (for the finalizer, which only needs the target)."""
    if app.database.server:
        obj = kube.get(names.POSTGRESSERVER_KIND, None, app.database.server)
        if obj is None:
            raise Halt(
                c.false(
                    names.DATABASE_READY,
                    "ServerNotFound",
                    f"PostgresServer '{app.database.server}' does not exist; create it "
                    "(see examples/postgresserver.yaml)",
                )
            )
        server = parse_postgresserver(obj)
        if not tenancy.admits(server.allowed_namespaces, namespace_labels(app.namespace)):
            raise Halt(
                c.false(
                    names.DATABASE_READY,
                    tenancy.NAMESPACE_NOT_ALLOWED,
                    tenancy.refusal_message(server.name, app.namespace),
                ),
                stalled=True,
            )
        try:
            identity = naming.identity_for(app, server)
        except naming.ReservedName as exc:
            refusal = exc.refusal
            raise Halt(c.false(names.DATABASE_READY, refusal.reason, refusal.message), stalled=True) from None
        return Target(identity, server, server.ssl_mode)
    ref = app.database.existing_secret
    assert ref is not None  # the CRD's CEL rule demands exactly one of server / existingSecret
    data = kube.read_secret_data(app.namespace, ref.name)
    if data is None or ref.key not in data:
        what = f"Secret '{ref.name}'" if data is None else f"key '{ref.key}' in Secret '{ref.name}'"
        raise Halt(
            c.false(
                names.DATABASE_READY,
                "SecretNotFound",
                f"{what} does not exist (spec.database.existingSecret)",
            ),
            retry_after=RETRY_DATABASE_SECONDS,
        )
    try:
        identity = dburl.parse_database_url(data[ref.key])
    except ValueError as exc:
        raise Halt(
            c.false(
                names.DATABASE_READY,
                "InvalidDatabaseURL",
                f"key '{ref.key}' in Secret '{ref.name}' is not a PostgreSQL URL: {exc}",
            ),
            stalled=True,
        ) from None
    return Target(identity, None, "prefer", url_digest=manifests.digest(data[ref.key]))
