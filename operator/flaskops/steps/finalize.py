"""Step 6, delete: the children go with their owner (garbage collection); the database is dropped only for
deletionPolicy Delete (never production), only when its ownership record names this app, and a finalizer
never holds a FlaskApp forever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .. import names
from ..postgres import server as credentials
from ..spec import FlaskAppSpec
from . import database, resolve
from .children import Client
from .result import Event, Halt

log = logging.getLogger("flaskops.reconcile")

# Annotation on a FlaskApp being deleted: "true" releases it without dropping the database.
SKIP_DROP = f"{names.ANNOTATION_PREFIX}/skip-database-drop"
# A Delete-policy app whose server stays unreachable this long after deletion is released anyway
# (with a Warning naming the database to drop by hand): a finalizer must never hold an object forever.
DROP_DEADLINE_SECONDS = 600

NOT_DROPPED = "DatabaseNotDropped"


@dataclass(frozen=True)
class Finalized:
    """`done`: the finalizer may go (False: try again later); `events` to post about the app."""

    done: bool
    events: tuple[Event, ...] = ()


def drops_database(app: FlaskAppSpec) -> bool:
    """Whether deleting `app` drops its database (deletionPolicy Delete on a server, never production)."""
    return (
        app.database.deletion_policy == "Delete"
        and bool(app.database.server)
        and app.environment != "production"
    )


def finalize(
    kube: Client,
    app: FlaskAppSpec,
    namespace_labels: resolve.NamespaceLabels,
    *,
    skip_drop: bool,
    deleting_for: float,
    connect_timeout: int,
) -> Finalized:
    """Drop the database of a deleted app whose policy is Delete.

    `namespace_labels`: as for resolve (a server that no longer admits the namespace drops nothing);
    `skip_drop`: the SKIP_DROP annotation is "true"; `deleting_for`: seconds since its deletionTimestamp
    (past DROP_DEADLINE_SECONDS an unreachable server no longer holds the app).
    """
    if not drops_database(app):
        return Finalized(True)
    if skip_drop:
        return Finalized(True, (Event("Warning", NOT_DROPPED, f"{SKIP_DROP} is set: database kept"),))
    try:
        target = resolve.target(kube, app, namespace_labels)
        assert target.server is not None
        admin = database.admin(kube, target.server, connect_timeout)
    except Halt as halt:
        # The server (or its admin Secret) is gone for good: nothing left to drop, do not block deletion.
        msg = f"database not dropped: {halt.conds[0].message if halt.conds else 'server unknown'}"
        return Finalized(True, (Event("Warning", NOT_DROPPED, msg),))
    dbname = target.identity.dbname
    try:
        credentials.drop_database(admin, database.owner(app), dbname, target.identity.user)
    except credentials.NotOwned as exc:
        # Not this app's database or role (no record of this app's UID): never drop, never block on it.
        return Finalized(True, (Event("Warning", NOT_DROPPED, f"database '{dbname}' kept: {exc.public}"),))
    except credentials.DatabaseUnavailable as exc:
        log.warning(
            "drop failed", extra={"namespace": app.namespace, "flaskapp": app.name, "why": exc.reason}
        )
        if deleting_for > DROP_DEADLINE_SECONDS:
            return Finalized(
                True,
                (
                    Event(
                        "Warning",
                        NOT_DROPPED,
                        f"gave up after {DROP_DEADLINE_SECONDS}s ({exc.public}); drop database '{dbname}' "
                        f"and role '{target.identity.user}' on {target.identity.host} by hand",
                    ),
                ),
            )
        return Finalized(False, (Event("Warning", "DatabaseDropFailed", f"will retry: {exc.public}"),))
    return Finalized(
        True, (Event("Normal", "DatabaseDropped", f"dropped database '{dbname}' (deletionPolicy: Delete)"),)
    )
