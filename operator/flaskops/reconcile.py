"""One idempotent reconcile for create, update and resume: the steps in order, and nothing else.

resolve → safety → database → secret key → migrate → roll out (steps/, one module each). Every step
returns its result; the flow stops at the first that halts (then Available still reports whatever
serves) and steps/status.py merges the results into the Result the controller writes and posts. Nothing
here knows kopf, and nothing outlives one call: running it again after a crash, a restart or a duplicate
event changes nothing, because every step reads what exists and writes only what differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from . import conditions as c
from . import names
from .cache import CachedClient
from .kube import Kube
from .postgres import url as dburl
from .safety import OtherApp
from .spec import FlaskAppSpec, parse_flaskapp
from .steps import database, finalize, migrate, pairing, resolve, rollout, secretkey, status
from .steps.result import Event, Result, StepResult

__all__ = ["Event", "Reconciler", "Result"]


class Reconciler:
    """Brings one FlaskApp's children and database to its spec. Holds only its collaborators."""

    def __init__(
        self,
        kube: Kube | CachedClient,
        *,
        others: Callable[[FlaskAppSpec, dburl.DatabaseIdentity], Iterable[OtherApp]] = lambda app, ident: (),
        now: Callable[[], str] = c.now_iso,
        connect_timeout: int = 5,
        gate: Callable[[str], AbstractContextManager[Any]] = lambda server: nullcontext(),
        namespace_labels: Callable[[str], Mapping[str, str] | None] = lambda namespace: None,
        server_id: Callable[[str], str | None] = lambda server: None,
    ) -> None:
        self.kube = kube
        # The other apps near a database (rule S5), from the operator's index.
        self.others = others
        # The labels of a namespace (for a PostgresServer's allowedNamespaces), None when unknown.
        self.namespace_labels = namespace_labels
        # A PostgresServer's system_identifier as learnt from earlier provisioning, None when unknown.
        self.server_id = server_id
        self.now = now
        self.connect_timeout = connect_timeout
        # Bounds concurrent provisioning per PostgresServer: CREATE DATABASE serialises on the server
        # anyway, and a burst of new apps should not open a connection each.
        self.gate = gate

    def reconcile(self, body: Mapping[str, Any]) -> Result:
        """The new status, the Events to post and when to come back, for the FlaskApp `body`."""
        app = parse_flaskapp(body)
        previous = dict(body.get("status") or {})
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        done: list[StepResult] = []

        def halted(result: StepResult) -> bool:
            done.append(result)
            return result.halt

        rolled: rollout.RolledOut | None = None
        if not self._steps(app, previous, annotations.get(migrate.RETRY_MIGRATION, ""), halted):
            rolled = done[-1] if isinstance(done[-1], rollout.RolledOut) else None
        elif not any(cond.type == names.AVAILABLE for cond in done[-1].conditions):
            # Whatever serves keeps serving untouched; Available still tells the truth about it.
            migrated_image = status.fields(app, previous, done).get("migratedImage")
            done.append(rollout.observe(self.kube, app, migrated_image))
        return status.assemble(
            app,
            previous,
            done,
            self.now,
            rolled_out=bool(rolled and rolled.rolled_out),
            blocked=rolled.blocked if rolled else None,
        )

    def _steps(
        self, app: FlaskAppSpec, previous: Mapping[str, Any], retry: str, halted: Callable[[StepResult], bool]
    ) -> bool:
        """Run the steps in order, handing each result to `halted`; True when one halted the flow."""
        resolved = resolve.resolve(self.kube, app, self.namespace_labels)
        if halted(resolved):
            return True
        target = resolved.target
        assert target is not None
        others = tuple(self.others(app, target.identity))
        known_id = self.server_id(target.server.name) if target.server else None
        if halted(pairing.judge(app, target, others, known_id)):
            return True
        db = database.provision(
            self.kube,
            app,
            target,
            previous,
            others=others,
            gate=self.gate,
            connect_timeout=self.connect_timeout,
        )
        if halted(db):
            return True
        key = secretkey.ensure(self.kube, app, previous)
        if halted(key) or halted(database.ready(target, db)):
            return True
        migrated = migrate.migrate(self.kube, app, target, previous, retry=retry, now=self.now())
        if halted(migrated):
            return True
        migrated_image = migrated.status.get("migratedImage", previous.get("migratedImage"))
        return halted(
            rollout.roll_out(
                self.kube,
                app,
                previous,
                [db.secret_data, key.data],
                migrated=migrated.ok,
                migrated_image=migrated_image,
                now=self.now(),
            )
        )

    def finalize(self, body: Mapping[str, Any]) -> tuple[bool, list[Event]]:
        """Drop the database of a deleted app whose policy is Delete; True when the finalizer may go."""
        meta = body.get("metadata") or {}
        finalized = finalize.finalize(
            self.kube,
            parse_flaskapp(body),
            self.namespace_labels,
            skip_drop=(meta.get("annotations") or {}).get(finalize.SKIP_DROP) == "true",
            deleting_for=c.age_seconds(meta.get("deletionTimestamp"), self.now()),
            connect_timeout=self.connect_timeout,
        )
        return finalized.done, list(finalized.events)
