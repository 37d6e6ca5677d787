"""Step 4, migrate: exactly one migration Job per image and database (`<app>-migrate-<hash>`), one at a
time per app, and Migrated=True only once it succeeded on the database the pods use. A failed one halts
the flow: nothing rolls out, the old ReplicaSet keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .. import blockers, manifests, migrations, names
from .. import conditions as c
from ..kube import ApiException
from ..spec import FlaskAppSpec
from .children import Client, delete_decided, invalid, owned_or_none, rejected, require_owned, warnings
from .resolve import Target
from .result import RECHECK_SECONDS, Event, Halt, StepResult

log = logging.getLogger("flaskops.reconcile")

# Annotation on a FlaskApp: any new value re-runs a failed migration with an unchanged spec.
RETRY_MIGRATION = f"{names.ANNOTATION_PREFIX}/retry-migration"
# A migration Job without a ready pod this long is looked into (its pod's Warning Events are read).
JOB_PATIENCE_SECONDS = 5.0
# The reason on Migrated while the migration Job cannot run (the cause is in the message).
MIGRATION_BLOCKED = "MigrationBlocked"
# The Event when a superseded migration Job that never started is deleted.
MIGRATION_ABANDONED = "MigrationAbandoned"


def migrate(
    kube: Client, app: FlaskAppSpec, target: Target, previous: Mapping[str, Any], *, retry: str, now: str
) -> StepResult:
    """The Migrated condition, status.migratedImage / status.migration, and the Job that gets there.

    `previous`: the status before this reconcile (what was migrated, on which database, what serves);
    `retry`: the FlaskApp's RETRY_MIGRATION annotation ("" when unset); `now`: RFC 3339 (a Job's age).
    Migrated=False/Migrating while a Job runs or waits its turn (recheck_after set while its pod does not
    start), MigrationBlocked when Kubernetes said why it cannot run; a halt (stalled) with
    MigrationFailed, or InvalidSpec when the API server refuses the Job, or NotOwned.
    """
    events: list[Event] = []
    fields: dict[str, Any] = {}
    try:
        cond, recheck = _migrate(kube, app, target, previous, retry, now, events, fields)
    except Halt as halt:
        return halt.result(events=events, status=fields)
    return StepResult(conditions=(cond,), status=fields, events=tuple(events), recheck_after=recheck)


def migrated_before(previous: Mapping[str, Any], image: str, target: Target) -> bool:
    """Whether `image` was migrated on the database `target` names, by the status before this reconcile.

    A migration is for this image on this database: the record is status.migration (image, database,
    outcome). Status written before migrations tracked their database (flaskops 0.1) has no database
    there; its status.database is the one its migration ran on, so the same identity counts.
    """
    if previous.get("migratedImage") != image:
        return False
    record = previous.get("migration") or {}
    if record.get("outcome") not in (None, "Succeeded") or record.get("image", image) != image:
        return False
    if record.get("database"):
        return bool(record["database"] == target.database_key)
    db = previous.get("database") or {}
    i = target.identity
    return (str(db.get("host", "")).lower(), db.get("port"), db.get("name"), db.get("user")) == (
        i.host.lower(),
        i.port,
        i.dbname,
        i.user,
    )


def _age_seconds(since: str, now: str) -> float:
    return c.age_seconds(since, now) if since else JOB_PATIENCE_SECONDS


def _migrate(
    kube: Client,
    app: FlaskAppSpec,
    target: Target,
    previous: Mapping[str, Any],
    retry: str,
    now: str,
    events: list[Event],
    fields: dict[str, Any],
) -> tuple[c.Condition, float | None]:
    database = target.database_key
    if not app.migrations.enabled:
        fields["migratedImage"] = app.image
        fields["migration"] = {**(previous.get("migration") or {}), "database": database}
        return c.true(names.MIGRATED, "MigrationsDisabled", "spec.migrations.enabled is false"), None
    if migrated_before(previous, app.image, target):
        if retry:
            # Nothing to retry: the token is taken as seen, so the retry handler stops waking for it.
            fields["migration"] = {**(previous.get("migration") or {}), "retry": retry}
        # The same words as when its Job finished, so a later reconcile does not rewrite the message.
        job_name = (previous.get("migration") or {}).get("jobName")
        done = (
            f"Job '{job_name}' migrated the database to {app.image}"
            if job_name
            else f"migrated to {app.image}"
        )
        return c.true(names.MIGRATED, "Migrated", done), None
    serving = previous.get("servingImage") or "nothing"
    # Anything else — a new image, or the same image on another database — migrates before any rollout.
    job_body = manifests.migration_job(app, retry=retry, database=database)
    job_name = job_body["metadata"]["name"]
    # Only Jobs this app owns count: one that merely carries our labels is never waited on or deleted.
    jobs = [
        j
        for j in kube.jobs(app.namespace, app.name)
        if owned_or_none(app, j) is not None
        and (j["metadata"].get("labels") or {}).get(names.LABEL_COMPONENT) == "migration"
    ]
    mine = next((j for j in jobs if j["metadata"]["name"] == job_name), None)
    if mine is None:
        busy = migrations.running_other_than(jobs, job_name)
        if busy is not None and busy.never_ran:
            # The spec moved on from a Job whose container never started (a quota, an image that does
            # not pull): nothing of it ran, so it goes rather than hold the new migration until its
            # deadline. A migration that runs is never killed: the new one waits for it.
            if delete_decided(kube, "Job", app.namespace, busy.name, busy.uid) is not None:
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
            ), None
        try:
            mine = kube.create(job_body)
        except ApiException as exc:
            if invalid(exc):
                raise rejected(exc, names.MIGRATED, f"Job '{job_name}'") from None
            if exc.status != 409:
                raise
            mine = kube.live("Job", app.namespace, job_name) or job_body
            require_owned(app, mine, names.MIGRATED, "Job", job_name)
        log.info("migration started", extra={"namespace": app.namespace, "job": job_name, "image": app.image})
    job = migrations.view(mine)
    fields["migration"] = {
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
        age = _age_seconds(job.created_at, now)
        recheck: float | None = None
        if job.ready == 0 and age < JOB_PATIENCE_SECONDS:
            # A Job's first seconds: its pod is being created and scheduled. Look again once they pass
            # (a pod that starts wakes the reconcile sooner) rather than read the namespace's Events now.
            recheck = JOB_PATIENCE_SECONDS - age + 1
        elif job.ready == 0:
            # Not running yet, or never will as it is: come back, and name the cause if Kubernetes did.
            recheck = RECHECK_SECONDS
            blocker = blockers.for_job(warnings(kube, app.namespace), job.name, since=job.created_at)
            if blocker is not None:
                return c.false(
                    names.MIGRATED,
                    MIGRATION_BLOCKED,
                    f"Job '{job.name}' cannot run: {blocker.describe()}; still serving {serving}",
                ), recheck
        return c.false(
            names.MIGRATED, "Migrating", f"Job '{job.name}' is migrating the database to {app.image}"
        ), recheck
    if job.outcome == migrations.FAILED:
        raise Halt(
            c.false(
                names.MIGRATED,
                "MigrationFailed",
                f"Job '{job.name}' failed ({job.message}); still serving {serving}. Fix the image or "
                f"spec.migrations, or set the annotation {RETRY_MIGRATION} to retry",
            ),
            stalled=True,
        )
    fields["migratedImage"] = app.image
    uids = {j["metadata"]["name"]: j["metadata"].get("uid") for j in jobs}
    for stale in migrations.superseded(jobs, keep=job_name):
        delete_decided(kube, "Job", app.namespace, stale, uids.get(stale))
    return c.true(names.MIGRATED, "Migrated", f"Job '{job.name}' migrated the database to {app.image}"), None
