"""One idempotent reconcile for create, update and resume: resolve, safety, credentials, migrate, roll out.

Nothing here knows kopf: the handlers pass in a body and get back the new status, the Events to post and
whether to retry. Every step reads what exists and writes only what differs, so running it again after
a crash, a restart or a duplicate event changes nothing.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import (
    blockers,
    budget,
    drift,
    manifests,
    migrations,
    names,
    ownership,
    rollout,
    tenancy,
)
from . import conditions as c
from .cache import CachedClient
from .kube import ApiException, Kube, decode_secret
from .postgres import naming
from .postgres import server as credentials
from .postgres import url as dburl
from .safety import OtherApp, Violation, check_pairing, summary
from .spec import FlaskAppSpec, PostgresServerSpec, parse_flaskapp, parse_postgresserver

log = logging.getLogger(__name__)

# Annotation on each child: the digest of what the operator last sent, so an unchanged child is not rewritten.
APPLIED_HASH = f"{names.ANNOTATION_PREFIX}/applied-hash"
# Annotation on the secret-key Secret: which spec.secretKey.rotation produced the current key.
ROTATION = f"{names.ANNOTATION_PREFIX}/rotation"
# Annotation on a FlaskApp: any new value re-runs a failed migration with an unchanged spec.
RETRY_MIGRATION = f"{names.ANNOTATION_PREFIX}/retry-migration"
# How many old signing keys stay valid after rotations.
MAX_FALLBACKS = 2

# Annotation on a FlaskApp being deleted: "true" releases it without dropping the database.
SKIP_DROP = f"{names.ANNOTATION_PREFIX}/skip-database-drop"
RETRY_DATABASE_SECONDS = 10.0
# The reason on a step's condition when a child's name is taken by an object this FlaskApp does not own.
NOT_OWNED = "NotOwned"
# HTTP statuses of a child the API server refuses as invalid (422 Invalid; 400 when it cannot decode it).
INVALID = (400, 422)
# A Delete-policy app whose server stays unreachable this long after deletion is released anyway
# (with a Warning naming the database to drop by hand): a finalizer must never hold an object forever.
DROP_DEADLINE_SECONDS = 600


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Result:
    """What a reconcile decided: the full new status, Events to post, and whether to come back later."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    # Nothing failed, but a child makes no progress that would wake the reconcile: look again this soon.
    recheck_after: float | None = None

    @property
    def ready(self) -> bool:
        return c.is_true(self.status.get("conditions") or [], names.READY)


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


class Halt(Exception):
    """Stop the flow here with these conditions (the rest keep their earlier values)."""

    def __init__(
        self,
        *conds: c.Condition,
        stalled: bool = False,
        retry_after: float | None = None,
        events: Iterable[Event] = (),
    ) -> None:
        super().__init__(conds[0].message if conds else "halt")
        self.conds = conds
        self.stalled = stalled
        self.retry_after = retry_after
        self.events = list(events)


class Reconciler:
    """Brings one FlaskApp's children and database to its spec."""

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
        # Set by a reconcile: when to look again at a child that makes no progress, and why a rollout is stuck.
        self._recheck: float | None = None
        self._blocked: str | None = None
        self._provisioned: dict[str, Any] = {}

    # --- the flow -----------------------------------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any]) -> Result:
        app = parse_flaskapp(body)
        old = dict(body.get("status") or {})
        status: dict[str, Any] = {k: v for k, v in old.items() if k != "conditions"}
        status["desiredImage"] = app.image
        updates: list[c.Condition] = []
        events: list[Event] = []
        retry_after: float | None = None
        stalled = False
        rolled_out = False
        self._recheck = None
        self._blocked = None
        # What this app's status (operator-written) says it was provisioned with before this reconcile.
        self._provisioned = dict(old.get("database") or {})
        try:
            target = self._resolve(app)
            self._check_safety(app, target, stamp=None, server_id=self._known_server_id(target))
            updates.append(
                c.true(names.ENVIRONMENT_SAFE, "SafePairing", "the environment/database pairing is safe")
            )
            fresh = _fresh(old.get("conditions") or [], names.DATABASE_READY, app.generation)
            secret_data = self._credentials(app, target, status, events, fresh=fresh)
            updates.append(
                c.true(
                    names.DATABASE_READY,
                    "Provisioned" if target.server else "ExistingSecret",
                    f"database '{target.identity.dbname}' on {target.identity.host}:{target.identity.port} "
                    f"as '{target.identity.user}'",
                )
            )
            migrated = self._migrate(body, app, target, old, status, events)
            updates.append(migrated)
            cond, rolled_out = self._roll_out(
                app, status, secret_data, events, migrated=migrated.status == "True"
            )
            updates.append(cond)
        except Halt as halt:
            updates.extend(halt.conds)
            events.extend(halt.events)
            stalled = halt.stalled
            retry_after = halt.retry_after
            if not any(cond.type == names.AVAILABLE for cond in halt.conds):
                # Whatever serves keeps serving untouched; Available still tells the truth about it.
                current = rollout.view(
                    _owned_or_none(app, self.kube.get("Deployment", app.namespace, app.name))
                )
                updates.append(self._availability(app, status, current))

        conds = c.merge(old.get("conditions") or [], updates, app.generation, self.now())
        summary_conds = _summary(
            conds,
            app,
            rolled_out=rolled_out,
            stalled=stalled,
            retrying=retry_after is not None,
            blocked=self._blocked,
        )
        conds = c.merge(conds, summary_conds, app.generation, self.now())
        status["conditions"] = conds
        status["observedGeneration"] = app.generation
        events = _transition_events(old.get("conditions") or [], conds) + events
        return Result(status=status, events=events, retry_after=retry_after, recheck_after=self._recheck)

    # --- 1. resolve ---------------------------------------------------------------------------------------

    def _resolve(self, app: FlaskAppSpec) -> Target:
        if app.database.server:
            obj = self.kube.get(names.POSTGRESSERVER_KIND, None, app.database.server)
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
            if not tenancy.admits(server.allowed_namespaces, self.namespace_labels(app.namespace)):
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
                raise Halt(
                    c.false(names.DATABASE_READY, refusal.reason, refusal.message), stalled=True
                ) from None
            return Target(identity, server, server.ssl_mode)
        ref = app.database.existing_secret
        assert ref is not None  # the CRD's CEL rule demands exactly one of server / existingSecret
        data = self.kube.read_secret_data(app.namespace, ref.name)
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

    # --- 2. safety ----------------------------------------------------------------------------------------

    def _known_server_id(self, target: Target) -> str | None:
        return self.server_id(target.server.name) if target.server else None

    def _check_safety(
        self, app: FlaskAppSpec, target: Target, stamp: str | None, server_id: str | None = None
    ) -> None:
        violations = check_pairing(
            app.environment,
            target.identity,
            server_name=target.server.name if target.server else None,
            server_environments=target.server.environments if target.server else None,
            others=self.others(app, target.identity),
            stamp=stamp,
            me=(app.created, app.namespace, app.name),
            server_id=server_id,
        )
        if violations:
            raise _unsafe(violations)

    # --- 3. credentials -----------------------------------------------------------------------------------

    def _admin(self, server: PostgresServerSpec) -> credentials.AdminConnection:
        data = self.kube.read_secret_data(server.admin_secret_namespace, server.admin_secret_name)
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
            connect_timeout=self.connect_timeout,
        )

    def _credentials(
        self, app: FlaskAppSpec, target: Target, status: dict[str, Any], events: list[Event], *, fresh: bool
    ) -> list[Mapping[str, str]]:
        """Provision role + database and write the Secrets; returns the Secret data the pods read."""
        ident = target.identity
        server_id = ((status.get("database") or {}).get("systemIdentifier")) if fresh else None
        if target.server is not None:
            # Pods the Deployment had when last seen: a scale-down keeps their slots until they are gone.
            running = int(status.get("replicas") or 0)
            db_data, learnt = self._provision(app, target, events, fresh=fresh, running=running)
            server_id = learnt or server_id
            secret_name = names.db_secret_name(app.name)
        else:
            secret_name = app.database.existing_secret.name  # type: ignore[union-attr]
            db_data = {"DATABASE_URL": target.url_digest}
        key_data = self._secret_key(app, status, events)
        status["database"] = {
            "secretName": secret_name,
            "host": ident.host,
            "port": ident.port,
            "name": ident.dbname,
            "user": ident.user,
        }
        if server_id:
            status["database"]["systemIdentifier"] = server_id
        return [db_data, key_data]

    def _provision(
        self, app: FlaskAppSpec, target: Target, events: list[Event], *, fresh: bool, running: int = 0
    ) -> tuple[dict[str, str], str | None]:
        """The `<app>-db` Secret's data, and the server's system_identifier when PostgreSQL was asked."""
        server = target.server
        assert server is not None
        ident = target.identity
        secret_name = names.db_secret_name(app.name)
        obj = self.kube.get("Secret", app.namespace, secret_name)
        _require_owned(app, obj, names.DATABASE_READY, "Secret", secret_name)
        existing = decode_secret(obj)
        want = dburl.db_secret_data(
            ident.host,
            ident.port,
            ident.dbname,
            ident.user,
            (existing or {}).get("password", ""),
            target.sslmode,
        )
        if fresh and existing == want:
            # Provisioned for this generation and the Secret is intact: no need to reach PostgreSQL again
            # (child events re-run reconcile often; a spec change re-provisions, re-checking S6 first).
            # Its labels and ownerReference are put back if someone removed them (no write otherwise).
            self._ensure_secret(app, secret_name, "db-credentials", want, obj)
            return dict(existing), None
        if fresh and obj is None:
            events.append(
                _repaired(
                    "Secret", secret_name, "was deleted; recreated with a new password (the pods roll to it)"
                )
            )
        admin = self._admin(server)
        # The password is generated once and never regenerated while its Secret exists. It is (re)applied
        # to the role on every provisioning pass, so a role that outlived its Secret (Retain, then the app
        # was re-created) gets the Secret's password rather than keeping an unknown one.
        password = (existing or {}).get("password") or credentials.generate_password()
        # Rules S5 (by the server's system_identifier) and S6 (the database's stamp) are judged inside the
        # provisioning session, before it writes anything: a refused pairing leaves nothing behind.
        result = self._ensure_database(admin, server, app, target, password, running=running)
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
            ident.host, ident.port, ident.dbname, ident.user, password, target.sslmode
        )
        won = self._ensure_secret(app, secret_name, "db-credentials", data, obj)
        if not won:
            # Another writer created the Secret between our read and our create: its password is the one.
            data = self.kube.read_secret_data(app.namespace, secret_name) or data
            self._ensure_database(admin, server, app, target, data["password"], running=running)
        return data, result.system_identifier

    def _ensure_database(
        self,
        admin: credentials.AdminConnection,
        server: PostgresServerSpec,
        app: FlaskAppSpec,
        target: Target,
        password: str,
        *,
        running: int = 0,
    ) -> credentials.ProvisionResult:
        ident = target.identity
        claim = ownership.Claim(
            owner=_owner(app),
            dbname=ident.dbname,
            role=ident.user,
            adopt=app.database.adopt_existing,
            adoptable=tenancy.adoptable(server.adoptable_databases, app.namespace, ident.dbname),
            provisioned_before=(self._provisioned.get("name"), self._provisioned.get("user"))
            == (ident.dbname, ident.user),
        )

        def judge(server_id: str | None, stamp: str | None) -> None:
            self._check_safety(app, target, stamp=stamp, server_id=server_id)

        try:
            with self.gate(server.name):
                return credentials.ensure_database(
                    admin, claim, password, check=judge, connection_limit=budget.worst_case(app, running)
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

    def _secret_key(
        self, app: FlaskAppSpec, status: Mapping[str, Any], events: list[Event]
    ) -> Mapping[str, str]:
        if app.secret_key_ref is not None:
            data = self.kube.read_secret_data(app.namespace, app.secret_key_ref.name)
            if data is None or app.secret_key_ref.key not in data:
                raise Halt(
                    c.false(
                        names.DATABASE_READY,
                        "SecretKeyNotFound",
                        f"key '{app.secret_key_ref.key}' in Secret '{app.secret_key_ref.name}' does not exist "
                        "(spec.secretKey.secretRef)",
                    ),
                    retry_after=RETRY_DATABASE_SECONDS,
                )
            return {"SECRET_KEY": manifests.digest(data[app.secret_key_ref.key])}
        name = names.secret_key_secret_name(app.name)
        obj = self.kube.get("Secret", app.namespace, name)
        _require_owned(app, obj, names.DATABASE_READY, "Secret", name)
        existing = decode_secret(obj)
        rotation = app.secret_key_rotation or ""
        seen_rotation = ((obj or {}).get("metadata") or {}).get("annotations", {}).get(ROTATION, "")
        # Removing spec.secretKey.rotation is not a rotation: only a new, non-empty value rotates the key.
        if existing and names.SECRET_KEY in existing and (seen_rotation == rotation or not rotation):
            self._ensure_secret(app, name, "secret-key", existing, obj, annotations={ROTATION: seen_rotation})
            return existing
        if obj is None and status.get("servingImage"):
            # It existed (the app served with it): someone deleted it. The old key is gone with it.
            events.append(
                _repaired(
                    "Secret",
                    name,
                    "was deleted; recreated with a new SECRET_KEY (sessions signed with the old one end)",
                )
            )
        data = {names.SECRET_KEY: secrets.token_urlsafe(48), names.SECRET_KEY_FALLBACKS: ""}
        if existing and names.SECRET_KEY in existing:
            old = [existing[names.SECRET_KEY]] + [
                k for k in existing.get(names.SECRET_KEY_FALLBACKS, "").split(",") if k
            ]
            data[names.SECRET_KEY_FALLBACKS] = ",".join(old[:MAX_FALLBACKS])
            events.append(
                Event("Normal", "SecretKeyRotated", f"rotated SECRET_KEY in Secret '{name}' ({rotation})")
            )
        self._ensure_secret(app, name, "secret-key", data, obj, annotations={ROTATION: rotation})
        return data

    def _ensure_secret(
        self,
        app: FlaskAppSpec,
        name: str,
        component: str,
        data: Mapping[str, str],
        live: Mapping[str, Any] | None,
        annotations: Mapping[str, str] | None = None,
    ) -> bool:
        """Write the Secret when it differs from `live` (data, labels, owner, annotations); False when a
        concurrent writer created it first."""
        body = manifests.secret(app, name, component, data, annotations)
        if live is not None and not drift.differences(body, live):
            return True
        if live is None:
            try:
                self.kube.create(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                # Taken: by a concurrent reconcile of this app, or by an object the label-selected watch
                # does not see (someone else's, never to be overwritten).
                _require_owned(
                    app, self.kube.live("Secret", app.namespace, name), names.DATABASE_READY, "Secret", name
                )
                return False
            return True
        self.kube.apply(body)
        return True

    # --- 4. migrate ---------------------------------------------------------------------------------------

    def _migrate(
        self,
        body: Mapping[str, Any],
        app: FlaskAppSpec,
        target: Target,
        old: Mapping[str, Any],
        status: dict[str, Any],
        events: list[Event],
    ) -> c.Condition:
        database = target.database_key
        if not app.migrations.enabled:
            status["migratedImage"] = app.image
            status["migration"] = {**(status.get("migration") or {}), "database": database}
            return c.true(names.MIGRATED, "MigrationsDisabled", "spec.migrations.enabled is false")
        retry = ((body.get("metadata") or {}).get("annotations") or {}).get(RETRY_MIGRATION, "")
        if _migrated(old, app.image, target):
            if retry:
                # Nothing to retry: the token is taken as seen, so the retry handler stops waking for it.
                status["migration"] = {**(status.get("migration") or {}), "retry": retry}
            # The same words as when its Job finished, so a later reconcile does not rewrite the message.
            job_name = (status.get("migration") or {}).get("jobName")
            done = (
                f"Job '{job_name}' migrated the database to {app.image}"
                if job_name
                else f"migrated to {app.image}"
            )
            return c.true(names.MIGRATED, "Migrated", done)
        # Anything else — a new image, or the same image on another database — migrates before any rollout.
        job_body = manifests.migration_job(app, retry=retry, database=database)
        job_name = job_body["metadata"]["name"]
        # Only Jobs this app owns count: one that merely carries our labels is never waited on or deleted.
        jobs = [
            j
            for j in self.kube.jobs(app.namespace, app.name)
            if _owned_or_none(app, j) is not None
            and (j["metadata"].get("labels") or {}).get(names.LABEL_COMPONENT) == "migration"
        ]
        mine = next((j for j in jobs if j["metadata"]["name"] == job_name), None)
        if mine is None:
            busy = migrations.running_other_than(jobs, job_name)
            if busy is not None and busy.never_ran:
                # The spec moved on from a Job whose container never started (a quota, an image that does
                # not pull): nothing of it ran, so it goes rather than hold the new migration until its
                # deadline. A migration that runs is never killed: the new one waits for it.
                if _delete_decided(self.kube, "Job", app.namespace, busy.name, busy.uid) is not None:
                    events.append(
                        Event(
                            "Normal",
                            MIGRATION_ABANDONED,
                            f"deleted Job '{busy.name}' ({busy.image}): it never started and the spec moved on",
                        )
                    )
                busy = None
            if busy is not None:
                return c.false(
                    names.MIGRATED,
                    "Migrating",
                    f"waiting for migration Job '{busy.name}' ({busy.image}) to finish before migrating to "
                    f"{app.image} (one migration at a time)",
                )
            try:
                mine = self.kube.create(job_body)
            except ApiException as exc:
                if _invalid(exc):
                    raise _rejected(exc, names.MIGRATED, f"Job '{job_name}'") from None
                if exc.status != 409:
                    raise
                mine = self.kube.live("Job", app.namespace, job_name) or job_body
                _require_owned(app, mine, names.MIGRATED, "Job", job_name)
            log.info(
                "migration started", extra={"namespace": app.namespace, "job": job_name, "image": app.image}
            )
        job = migrations.view(mine)
        status["migration"] = {
            k: v
            for k, v in {
                "jobName": job.name,
                "image": app.image,
                "database": database,
                "retry": retry or None,
                "hash": job_name.rsplit("-", 1)[-1],
                "startedAt": job.started_at,
                "completedAt": job.completed_at,
                "outcome": job.outcome,
            }.items()
            if v is not None
        }
        if job.outcome == migrations.RUNNING:
            age = _age_seconds(job.created_at, self.now()) if job.created_at else JOB_PATIENCE_SECONDS
            if job.ready == 0 and age < JOB_PATIENCE_SECONDS:
                # A Job's first seconds: its pod is being created and scheduled. Look again once they pass
                # (a pod that starts wakes the reconcile sooner) rather than read the namespace's Events now.
                self._recheck = JOB_PATIENCE_SECONDS - age + 1
            elif job.ready == 0:
                # Not running yet, or never will as it is: come back, and name the cause if Kubernetes did.
                self._recheck = RECHECK_SECONDS
                blocker = blockers.for_job(self._warnings(app), job.name, since=job.created_at)
                if blocker is not None:
                    return c.false(
                        names.MIGRATED,
                        MIGRATION_BLOCKED,
                        f"Job '{job.name}' cannot run: {blocker.describe()}; still serving "
                        f"{status.get('servingImage') or 'nothing'}",
                    )
            return c.false(
                names.MIGRATED, "Migrating", f"Job '{job.name}' is migrating the database to {app.image}"
            )
        if job.outcome == migrations.FAILED:
            raise Halt(
                c.false(
                    names.MIGRATED,
                    "MigrationFailed",
                    f"Job '{job.name}' failed ({job.message}); still serving "
                    f"{status.get('servingImage') or 'nothing'}. Fix the image or spec.migrations, or set the "
                    f"annotation {RETRY_MIGRATION} to retry",
                ),
                stalled=True,
            )
        status["migratedImage"] = app.image
        uids = {j["metadata"]["name"]: j["metadata"].get("uid") for j in jobs}
        for stale in migrations.superseded(jobs, keep=job_name):
            _delete_decided(self.kube, "Job", app.namespace, stale, uids.get(stale))
        return c.true(names.MIGRATED, "Migrated", f"Job '{job.name}' migrated the database to {app.image}")

    # --- 5. roll out --------------------------------------------------------------------------------------

    def _roll_out(
        self,
        app: FlaskAppSpec,
        status: dict[str, Any],
        secret_data: list[Mapping[str, str]],
        events: list[Event],
        *,
        migrated: bool,
    ) -> tuple[c.Condition, bool]:
        """Apply the Deployment and Service; the Available condition and whether the rollout is complete."""
        current = self.kube.get("Deployment", app.namespace, app.name)
        _require_owned(app, current, names.AVAILABLE, "Deployment", app.name)
        if not migrated:
            # No rollout before the migration succeeded: whatever serves now keeps serving untouched.
            return self._availability(app, status, rollout.view(current)), False
        checksum = manifests.secrets_checksum(*secret_data)
        desired = _desired_deployment(app, checksum, current)
        try:
            applied = self._apply_if_changed(
                app, desired, current, events, existed=bool(status.get("servingImage"))
            )
        except ApiException as exc:
            if not _invalid(exc):
                raise
            raise _rejected(exc, names.AVAILABLE, f"Deployment '{app.name}'") from None
        if applied is not None:
            old_image = rollout.view(current).image
            if old_image and old_image != app.image:
                # An upgrade: the first rollout is told by Ready.
                events.append(
                    Event("Normal", "RolloutStarted", f"rolling Deployment '{app.name}' to {app.image}")
                )
            current = applied
        svc = manifests.service(app)
        svc_current = self.kube.get("Service", app.namespace, app.name)
        _require_owned(app, svc_current, names.AVAILABLE, "Service", app.name)
        self._apply_if_changed(app, svc, svc_current, events, existed=bool(status.get("servingImage")))
        self._disruption_budget(app, events)
        view = rollout.view(current)
        rolled_out = view.rolled_out and view.image == app.image
        if not rolled_out and view.exists:
            self._recheck = RECHECK_SECONDS
            self._blocked = view.failure
            stuck = _age_seconds(view.progressed_at, self.now()) >= STUCK_SECONDS
            if self._blocked is None and stuck:
                since = view.progressed_at
                # The ReplicaSet being scaled up, as the controller's own Event names it; the Progressing
                # condition may still name the previous one (see blockers.newest_scaled_up).
                # One list per namespace (shared between its apps for a few seconds), not one per app.
                scaled = self.kube.list(
                    "Event", app.namespace, fields="involvedObject.kind=Deployment,reason=ScalingReplicaSet"
                )
                replica_set = blockers.newest_scaled_up(scaled, app.name) or view.replica_set
                blocker = blockers.for_replica_set(self._warnings(app), replica_set, since=since)
                self._blocked = blocker.describe() if blocker else None
                log.info(
                    "rollout not progressing",
                    extra={
                        "namespace": app.namespace,
                        "flaskapp": app.name,
                        "replicaSet": replica_set,
                        "since": since,
                        "blocker": self._blocked,
                    },
                )
        return self._availability(app, status, view), rolled_out

    def _warnings(self, app: FlaskAppSpec) -> list[dict[str, Any]]:
        """The Warning Events in the app's namespace (what the controllers and the kubelet said)."""
        return self.kube.list("Event", app.namespace, fields="type=Warning")

    def _disruption_budget(self, app: FlaskAppSpec, events: list[Event]) -> None:
        """A PodDisruptionBudget while replicas >= 2; removed (only if ours) below that."""
        current = self.kube.get("PodDisruptionBudget", app.namespace, app.name)
        if app.replicas >= manifests.PDB_MIN_REPLICAS:
            _require_owned(app, current, names.AVAILABLE, "PodDisruptionBudget", app.name)
            # existed=False: apps deployed before budgets existed have none, so a missing one is no repair.
            self._apply_if_changed(app, manifests.pod_disruption_budget(app), current, events, existed=False)
        elif current is not None and _owned_or_none(app, current) is not None:
            # One replica: a budget of maxUnavailable 1 would only hide that a drain takes the app down.
            uid = current["metadata"].get("uid")
            _delete_decided(self.kube, "PodDisruptionBudget", app.namespace, app.name, uid)

    def _availability(
        self, app: FlaskAppSpec, status: dict[str, Any], dep: rollout.RolloutView
    ) -> c.Condition:
        status["replicas"] = dep.replicas
        status["readyReplicas"] = dep.ready_replicas
        # The scale subresource's labelSelectorPath: what an HPA uses to find the pods' metrics.
        status["selector"] = ",".join(f"{k}={v}" for k, v in sorted(manifests.web_selector(app).items()))
        # Only an image that was migrated is ever named as serving: a Deployment someone pointed at another
        # image is put back, and until then it is not what this app serves.
        if dep.rolled_out and dep.image and dep.image == status.get("migratedImage"):
            status["servingImage"] = dep.image
        if not dep.exists:
            return c.false(
                names.AVAILABLE, "NotDeployed", "no Deployment yet: it is created after the migration"
            )
        if dep.available:
            return c.true(names.AVAILABLE, "MinimumReplicasAvailable", dep.message)
        return c.false(names.AVAILABLE, "MinimumReplicasUnavailable", dep.message)

    def _apply_if_changed(
        self,
        app: FlaskAppSpec,
        desired: dict[str, Any],
        current: Mapping[str, Any] | None,
        events: list[Event],
        *,
        existed: bool,
    ) -> dict[str, Any] | None:
        """Server-side apply `desired` unless the child already carries it; the object the API server
        returned when it applied, else None.

        `current` is what the operator knows of the child (a cache view, or a whole object). A child whose
        content is verified to carry `desired` — applied or compared by this process since its content last
        changed — is not read again. Anything else (a first sight after a start, someone's edit, an object
        the cache does not know) is read whole from the API server and compared field by field.
        `existed`: whether the child should be there already (the app served before), so that its absence
        is someone's deletion, reported as a repair, not a first creation.
        """
        digest = manifests.digest(desired)
        kind, name = desired["kind"], desired["metadata"]["name"]
        namespace = desired["metadata"]["namespace"]
        if current is not None and _applied_hash(current) == digest and self.kube.verified(current, digest):
            return None
        live = self.kube.live(kind, namespace, name)
        # The label-selected watch does not see an object someone else made under this name.
        _require_owned(app, live, names.AVAILABLE, kind, name)
        have = _applied_hash(live)
        changed = drift.differences(desired, live) if live is not None else []
        if live is not None and have == digest and not changed:
            self.kube.verify(live, digest)
            return None
        if live is not None and have == digest:
            # Same spec as last applied, yet the object differs: someone edited a field flaskops sets.
            events.append(
                _repaired(kind, name, f"was changed outside flaskops ({', '.join(changed[:3])}); put back")
            )
        elif live is None and existed:
            events.append(_repaired(kind, name, "was deleted; recreated"))
        if live is not None and changed:
            # An apply alone cannot undo every edit: an item someone re-keyed in a list merged by key (a
            # Service port changed from 80 to 8081) is theirs, and ours would be added beside it. A merge
            # patch replaces such lists whole; the apply below then owns the fields again.
            self.kube.merge_patch(kind, namespace, name, {"spec": desired["spec"]})
        desired["metadata"].setdefault("annotations", {})[APPLIED_HASH] = digest
        applied = self.kube.apply(desired)
        self.kube.verify(applied, digest)
        log.info("applied", extra={"kind": kind, "namespace": namespace, "child": name, "was": have})
        return applied

    # --- 6. delete ----------------------------------------------------------------------------------------

    def finalize(self, body: Mapping[str, Any]) -> tuple[bool, list[Event]]:
        """Drop the database of a deleted app whose policy is Delete; True when the finalizer may go."""
        app = parse_flaskapp(body)
        if (
            app.database.deletion_policy != "Delete"
            or not app.database.server
            or app.environment == "production"
        ):
            return True, []
        meta = body.get("metadata") or {}
        if (meta.get("annotations") or {}).get(SKIP_DROP) == "true":
            return True, [Event("Warning", "DatabaseNotDropped", f"{SKIP_DROP} is set: database kept")]
        try:
            target = self._resolve(app)
            assert target.server is not None
            admin = self._admin(target.server)
        except Halt as halt:
            # The server (or its admin Secret) is gone for good: nothing left to drop, do not block deletion.
            msg = f"database not dropped: {halt.conds[0].message if halt.conds else 'server unknown'}"
            return True, [Event("Warning", "DatabaseNotDropped", msg)]
        dbname = target.identity.dbname
        try:
            credentials.drop_database(admin, _owner(app), dbname, target.identity.user)
        except credentials.NotOwned as exc:
            # Not this app's database or role (no record of this app's UID): never drop, never block on it.
            return True, [Event("Warning", "DatabaseNotDropped", f"database '{dbname}' kept: {exc.public}")]
        except credentials.DatabaseUnavailable as exc:
            log.warning(
                "drop failed",
                extra={"namespace": app.namespace, "flaskapp": app.name, "why": exc.reason},
            )
            if _age_seconds(meta.get("deletionTimestamp"), self.now()) > DROP_DEADLINE_SECONDS:
                return True, [
                    Event(
                        "Warning",
                        "DatabaseNotDropped",
                        f"gave up after {DROP_DEADLINE_SECONDS}s ({exc.public}); drop database '{dbname}' "
                        f"and role '{target.identity.user}' on {target.identity.host} by hand",
                    )
                ]
            return False, [Event("Warning", "DatabaseDropFailed", f"will retry: {exc.public}")]
        return True, [
            Event("Normal", "DatabaseDropped", f"dropped database '{dbname}' (deletionPolicy: Delete)")
        ]


# --- pure helpers ----------------------------------------------------------------------------------------


def _owner(app: FlaskAppSpec) -> ownership.Owner:
    return ownership.Owner(namespace=app.namespace, name=app.name, uid=app.uid, environment=app.environment)


# A child that makes no progress is looked at again this often (nothing else wakes the reconcile: a Job
# whose pods a quota refuses never changes), and its pods' Warning Events are read once it has been stuck
# this long (a pod's first seconds are noisy).
RECHECK_SECONDS = 15.0
STUCK_SECONDS = 20.0
# A migration Job without a ready pod this long is looked into (its pod's Warning Events are read).
JOB_PATIENCE_SECONDS = 5.0
# Reasons on Migrated / Ready while a child cannot progress (the child's own reason is in the message).
MIGRATION_BLOCKED = "MigrationBlocked"
# The Event when a superseded migration Job that never started is deleted.
MIGRATION_ABANDONED = "MigrationAbandoned"
ROLLOUT_BLOCKED = "RolloutBlocked"

# The reason of the Warning Event posted when a child someone deleted or edited is put back.
DRIFT_REPAIRED = "DriftRepaired"


def _repaired(kind: str, name: str, what: str) -> Event:
    return Event("Warning", DRIFT_REPAIRED, f"{kind} '{name}' {what}")


def _applied_hash(obj: Mapping[str, Any] | None) -> str | None:
    """The digest of the desired state the operator last applied to a child (its annotation)."""
    return (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(APPLIED_HASH)


def _owned_or_none(app: FlaskAppSpec, obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The object when this FlaskApp owns it (an ownerReference with its UID), else None."""
    if obj is None:
        return None
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return obj if any(ref.get("uid") == app.uid for ref in refs) else None


def _delete_decided(
    kube: Kube | CachedClient, kind: str, namespace: str, name: str, uid: str | None
) -> bool | None:
    """Delete the object the operator decided about, and only it: the delete names its uid, so an object
    someone re-created under the name meanwhile is never deleted. True: deleted; False: already gone;
    None: the name holds another object now (409 Conflict) — not ours any more, left alone."""
    try:
        return kube.delete(kind, namespace, name, uid=uid or None)
    except ApiException as exc:
        if exc.status != 409:
            raise
        log.info(
            "not deleted: re-created meanwhile", extra={"kind": kind, "namespace": namespace, "child": name}
        )
        return None


def _desired_deployment(
    app: FlaskAppSpec, checksum: str, current: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The Deployment to apply. A Deployment whose pods run without the default topology spread keeps them
    so until its pod template changes for another reason: an operator upgrade alone restarts no app."""
    desired = manifests.deployment(app, app.image, checksum)
    if current is None or app.topology_spread_constraints is not None:
        return desired
    pod = ((current.get("spec") or {}).get("template") or {}).get("spec") or {}
    if pod.get("topologySpreadConstraints"):
        return desired
    plain = manifests.deployment(app, app.image, checksum, default_spread=False)
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    base = annotations.get(names.ANNOTATION_BASE_TEMPLATE)
    if base is None:
        # Applied by an operator without the annotation: unchanged when its whole digest still matches.
        unchanged = annotations.get(APPLIED_HASH) == manifests.digest(
            manifests.legacy_deployment(app, app.image, checksum)
        )
    else:
        unchanged = base == plain["metadata"]["annotations"][names.ANNOTATION_BASE_TEMPLATE]
    return plain if unchanged else desired


def _require_owned(
    app: FlaskAppSpec, obj: Mapping[str, Any] | None, type_: str, kind: str, name: str
) -> None:
    """Halt when a child's name is taken by an object this FlaskApp does not own: never overwrite, adopt
    or delete it (Knative's NotOwned)."""
    if obj is not None and _owned_or_none(app, obj) is None:
        raise Halt(
            c.false(
                type_,
                NOT_OWNED,
                f"{kind} '{name}' exists and is not owned by this FlaskApp; flaskops never overwrites, adopts "
                f"or deletes it — delete or rename that {kind}, or rename the FlaskApp",
            ),
            stalled=True,
        )


def _migrated(old_status: Mapping[str, Any], image: str, target: Target) -> bool:
    """Whether `image` was migrated on the database `target` names, by the status before this reconcile.

    A migration is for this image on this database: the record is status.migration (image, database,
    outcome). Status written before migrations tracked their database (flaskops 0.1) has no database
    there; its status.database is the one its migration ran on, so the same identity counts.
    """
    if old_status.get("migratedImage") != image:
        return False
    record = old_status.get("migration") or {}
    if record.get("outcome") not in (None, "Succeeded") or record.get("image", image) != image:
        return False
    if record.get("database"):
        return bool(record["database"] == target.database_key)
    db = old_status.get("database") or {}
    i = target.identity
    return (str(db.get("host", "")).lower(), db.get("port"), db.get("name"), db.get("user")) == (
        i.host.lower(),
        i.port,
        i.dbname,
        i.user,
    )


def _fresh(conds: Iterable[Mapping[str, Any]], type_: str, generation: int) -> bool:
    """Whether a condition is True and was decided for this generation."""
    cond = c.find(conds, type_)
    return bool(cond and cond.get("status") == "True" and cond.get("observedGeneration") == generation)


def _age_seconds(since: str | None, now: str) -> float:
    if not since:
        return 0.0
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (datetime.strptime(now, fmt) - datetime.strptime(since, fmt)).total_seconds()


def _invalid(exc: ApiException) -> bool:
    """Whether the API server refused a child as invalid (the same request can never succeed)."""
    if exc.status in INVALID:
        return True
    # A server-side apply whose content cannot even be converted to the typed object (e.g. a resource quantity
    # "lots") comes back as a 500 carrying the conversion error, every time.
    return exc.status == 500 and "unable to convert unstructured object" in str(exc.body or "")


def _rejected(exc: ApiException, type_: str, what: str) -> Halt:
    """The API server refused a child built from the spec: the schema passes `resources`, `env` and labels
    through as they are, and the same spec can never succeed, so stall with the server's reason."""
    try:
        detail = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        detail = str(exc.reason)
    return Halt(
        c.false(type_, "InvalidSpec", f"the API server refused {what}: {detail}; fix the FlaskApp's spec"),
        stalled=True,
    )


def _unsafe(violations: list[Violation]) -> Halt:
    message = summary(violations)
    return Halt(
        c.false(names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing", message),
        stalled=True,
        events=[Event("Warning", "UnsafeDatabasePairing", f"refusing to act: {message}")],
    )


def _summary(
    conds: list[dict[str, Any]],
    app: FlaskAppSpec,
    *,
    rolled_out: bool,
    stalled: bool,
    retrying: bool,
    blocked: str | None = None,
) -> list[c.Condition]:
    """Ready, Reconciling and Stalled from the step conditions (kstatus semantics)."""
    by_type = {x["type"]: x for x in conds}
    steps = (names.ENVIRONMENT_SAFE, names.DATABASE_READY, names.MIGRATED, names.AVAILABLE)
    # The first step that failed, in flow order. A step not evaluated yet blocks only when no step failed:
    # resolving the server (DatabaseReady) fails before the pairing (EnvironmentSafe) is ever judged, and
    # `kubectl get` should show that reason (ServerNotFound), not "Pending".
    blocking = next(
        (by_type[t] for t in steps if t in by_type and by_type[t]["status"] != "True"),
        None,
    )
    if blocking is None:
        missing = next((t for t in steps if t not in by_type), None)
        if missing is not None:
            blocking = {"reason": "Pending", "message": f"{missing} not evaluated yet"}
    if blocked and not rolled_out and (blocking is None or blocking is by_type.get(names.AVAILABLE)):
        # Unavailable (or merely rolling) because the Deployment cannot make its pods: say why.
        blocking = {"reason": ROLLOUT_BLOCKED, "message": f"the rollout cannot progress: {blocked}"}
    if blocking is None and not rolled_out:
        blocking = {"reason": "RollingOut", "message": by_type[names.AVAILABLE]["message"]}
    if blocking is None:
        msg = f"serving {app.image}: " + by_type[names.AVAILABLE]["message"]
        return [
            c.true(names.READY, "Ready", msg),
            c.false(names.RECONCILING, "Ready", "nothing to do"),
            c.false(names.STALLED, "Ready", "nothing to do"),
        ]
    reason, message = blocking["reason"], blocking["message"]
    if stalled:
        return [
            c.false(names.READY, reason, message),
            c.false(names.RECONCILING, "Stalled", "waiting for a change to the spec"),
            c.true(names.STALLED, reason, message),
        ]
    return [
        c.false(names.READY, reason, message),
        c.true(names.RECONCILING, reason, message + (" (retrying)" if retrying else "")),
        c.false(names.STALLED, "Progressing", "making progress"),
    ]


# The conditions whose turning True is worth a Normal Event (install: DatabaseCreated, Migrated, Ready).
_GOOD_NEWS = (names.MIGRATED, names.READY)
# Step conditions in flow order, then the summary: Events read like the story of the reconcile.
_EVENT_ORDER = (names.DATABASE_READY, names.MIGRATED, names.AVAILABLE, names.READY)


def _transition_events(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]) -> list[Event]:
    """One Event per condition whose status or reason changed (so a steady state posts nothing).

    Warnings are for trouble: a database that cannot be reached, a failed migration, lost availability.
    A step that is merely not done yet (first rollout, migration running) is progress, not news.
    EnvironmentSafe posts its own, richer Event; Reconciling/Stalled/Ready=False echo the step that blocks.
    """
    before = {x["type"]: (x.get("status"), x.get("reason")) for x in old}
    by_type = {x["type"]: x for x in new}
    out: list[Event] = []
    for t in _EVENT_ORDER:
        cond = by_type.get(t)
        if cond is None:
            continue
        now = (cond["status"], cond["reason"])
        was = before.get(t)
        if was == now:
            continue
        if cond["status"] == "True":
            # Success is told twice at most: the migration that ran, and Ready (which names the image and
            # the replicas). DatabaseReady has its own DatabaseCreated Event; Available is in Ready.
            if t in _GOOD_NEWS:
                out.append(Event("Normal", cond["reason"], f"{t}: {cond['message']}"))
            continue
        warn = (
            (t == names.DATABASE_READY)
            or (t == names.MIGRATED and cond["reason"] in ("MigrationFailed", MIGRATION_BLOCKED))
            or (t != names.READY and cond["reason"] == "InvalidSpec")
            # Ready speaks for itself only where no step condition does: a rollout that cannot progress.
            or (t == names.READY and cond["reason"] == ROLLOUT_BLOCKED)
            or (t == names.AVAILABLE and was is not None and was[0] == "True")
        )
        if warn:
            out.append(Event("Warning", cond["reason"], f"{t}: {cond['message']}"))
    return out
