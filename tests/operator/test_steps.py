"""The shape of what each reconcile step returns (steps/*.py), on plain data and FakeKube: the conditions,
status fields, Events, recheck and halt each one decides, and that none of them is shared or mutable.
The behaviour of the whole flow is in test_reconcile_*.py and test_controller_*.py."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest

from flaskops import conditions as c
from flaskops import manifests, names
from flaskops import rollout as deployments
from flaskops.postgres import url as dburl
from flaskops.spec import FlaskAppSpec, parse_flaskapp
from flaskops.steps import database, finalize, migrate, pairing, resolve, rollout, secretkey, status
from flaskops.steps.result import RECHECK_SECONDS, RETRY_DATABASE_SECONDS, Event, Halt, StepResult
from tests.operator.behaviour_support import ADMIN_NS, LEGACY_URL, NS, USER, flaskapp, new_app, url_secret
from tests.operator.fake_kube import FakeKube

NO_LABELS = lambda namespace: None  # noqa: E731 - a namespace_labels stand-in


def _no_gate(server: str) -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


def _conds(result: StepResult) -> dict[str, tuple[str, str]]:
    return {cond.type: (cond.status, cond.reason) for cond in result.conditions}


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube(namespaces=[NS, ADMIN_NS])


def _app(kube: FakeKube, **spec: Any) -> FlaskAppSpec:
    return parse_flaskapp(new_app(kube, **spec))


def _server_app(kube: FakeKube, name: str = "on-server", **db: Any) -> FlaskAppSpec:
    body = flaskapp(name)
    body["spec"]["database"] = {"server": "pg", **db}
    return parse_flaskapp(kube.create(body, manager=USER))


def _server(kube: FakeKube) -> None:
    kube.create(
        {
            "apiVersion": names.API_VERSION,
            "kind": names.POSTGRESSERVER_KIND,
            "metadata": {"name": "pg"},
            "spec": {
                "host": "db.internal",
                "port": 5432,
                "adminSecretRef": {"namespace": ADMIN_NS, "name": "pg-admin"},
                "environments": ["testing"],
            },
        },
        manager=USER,
    )


def _target(kube: FakeKube, app: FlaskAppSpec) -> resolve.Target:
    resolved = resolve.resolve(kube, app, NO_LABELS)
    assert resolved.target is not None
    return resolved.target


# --- result ------------------------------------------------------------------------------------------------


def test_a_step_result_is_frozen_and_a_halt_becomes_one_with_its_events_last() -> None:
    cond = c.false(names.MIGRATED, "MigrationFailed", "failed")
    before = Event("Normal", "Earlier", "first")
    halt = Halt(cond, stalled=True, events=[Event("Warning", "Halt", "second")])
    result = halt.result(events=[before], status={"migration": {"outcome": "Failed"}})
    assert (result.halt, result.stalled, result.retry_after, result.ok) == (True, True, None, False)
    assert result.conditions == (cond,)
    assert [e.reason for e in result.events] == ["Earlier", "Halt"]
    assert result.status == {"migration": {"outcome": "Failed"}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.halt = False  # type: ignore[misc]
    assert StepResult(conditions=(c.true(names.MIGRATED, "Migrated", "ok"),)).ok


# --- status (pure) -----------------------------------------------------------------------------------------


def test_assemble_merges_fields_in_flow_order_and_takes_retry_from_the_halt() -> None:
    app = parse_flaskapp(flaskapp() | {"metadata": {"name": "web", "namespace": NS, "generation": 3}})
    previous = {"servingImage": "app:0", "replicas": 2}
    results = [
        StepResult(conditions=(c.true(names.ENVIRONMENT_SAFE, "SafePairing", "safe"),), recheck_after=6.0),
        StepResult(status={"replicas": 1}, events=(Event("Normal", "A", "a"),)),
        StepResult(
            conditions=(c.false(names.DATABASE_READY, "SecretNotFound", "no secret"),),
            events=(Event("Warning", "B", "b"),),
            halt=True,
            retry_after=RETRY_DATABASE_SECONDS,
        ),
    ]
    result = status.assemble(
        app, previous, results, lambda: "2026-01-01T00:00:00Z", rolled_out=False, blocked=None
    )
    assert result.status["replicas"] == 1 and result.status["servingImage"] == "app:0"
    assert result.status["desiredImage"] == "app:1" and result.status["observedGeneration"] == 3
    conds = {x["type"]: (x["status"], x["reason"]) for x in result.status["conditions"]}
    assert conds[names.READY] == ("False", "SecretNotFound")
    assert conds[names.RECONCILING] == ("True", "SecretNotFound")  # retried, not stalled
    # The transition (DatabaseReady turned False) comes first, then each step's Events in order.
    assert [e.reason for e in result.events] == ["SecretNotFound", "A", "B"]
    assert (result.retry_after, result.recheck_after) == (RETRY_DATABASE_SECONDS, 6.0)
    assert previous == {"servingImage": "app:0", "replicas": 2}  # never written into


# --- resolve -----------------------------------------------------------------------------------------------


def test_resolve_returns_a_target_or_halts_without_one(kube: FakeKube) -> None:
    app = _app(kube)
    resolved = resolve.resolve(kube, app, NO_LABELS)
    assert not resolved.halt and resolved.conditions == () and resolved.events == ()
    assert resolved.target is not None and resolved.target.server is None
    assert resolved.target.url_digest == manifests.digest(LEGACY_URL)

    missing = _server_app(kube)
    halted = resolve.resolve(kube, missing, NO_LABELS)
    assert halted.halt and halted.target is None and not halted.stalled
    assert _conds(halted) == {names.DATABASE_READY: ("False", "ServerNotFound")}

    kube.delete("Secret", NS, "legacy-db")
    gone = resolve.resolve(kube, app, NO_LABELS)
    assert _conds(gone) == {names.DATABASE_READY: ("False", "SecretNotFound")}
    assert gone.retry_after == RETRY_DATABASE_SECONDS


# --- pairing -----------------------------------------------------------------------------------------------


def test_pairing_is_safe_or_a_stalled_halt_with_a_warning(kube: FakeKube) -> None:
    app = _app(kube)
    target = _target(kube, app)
    safe = pairing.judge(app, target, (), None)
    assert not safe.halt and _conds(safe) == {names.ENVIRONMENT_SAFE: ("True", "SafePairing")}

    prod = dataclasses.replace(target, identity=dburl.parse_database_url("postgresql://u:p@h:5432/shop_test"))
    unsafe = pairing.judge(dataclasses.replace(app, environment="production"), prod, (), None)
    assert unsafe.halt and unsafe.stalled
    assert _conds(unsafe) == {names.ENVIRONMENT_SAFE: ("False", pairing.UNSAFE)}
    assert [(e.type, e.reason) for e in unsafe.events] == [("Warning", pairing.UNSAFE)]


# --- database and secret key -------------------------------------------------------------------------------


def test_database_for_an_existing_secret_is_its_url_digest_and_ready_records_it(kube: FakeKube) -> None:
    app = _app(kube)
    target = _target(kube, app)
    provisioned = database.provision(kube, app, target, {}, others=(), gate=_no_gate, connect_timeout=1)
    assert not provisioned.halt and provisioned.conditions == () and provisioned.status == {}
    assert provisioned.secret_data == {"DATABASE_URL": target.url_digest}
    assert provisioned.record["secretName"] == "legacy-db" and provisioned.record["name"] == "shop"
    ready = database.ready(target, provisioned)
    assert _conds(ready) == {names.DATABASE_READY: ("True", "ExistingSecret")}
    assert ready.status == {"database": dict(provisioned.record)}


def test_database_on_a_server_without_its_admin_secret_halts_for_a_retry(kube: FakeKube) -> None:
    _server(kube)
    app = _server_app(kube)
    target = _target(kube, app)
    halted = database.provision(kube, app, target, {}, others=(), gate=_no_gate, connect_timeout=1)
    assert halted.halt and not halted.stalled and halted.retry_after == RETRY_DATABASE_SECONDS
    assert _conds(halted) == {names.DATABASE_READY: ("False", "AdminSecretNotFound")}
    assert halted.secret_data == {} and halted.record == {}
    assert kube.get("Secret", NS, names.db_secret_name(app.name)) is None  # nothing written


def test_secret_key_is_made_once_and_a_rotation_is_an_event(kube: FakeKube) -> None:
    app = _app(kube)
    first = secretkey.ensure(kube, app, {})
    assert not first.halt and first.events == () and first.conditions == ()
    assert set(first.data) == {names.SECRET_KEY, names.SECRET_KEY_FALLBACKS}
    assert secretkey.ensure(kube, app, {}).data == first.data  # never regenerated

    rotated = secretkey.ensure(kube, dataclasses.replace(app, secret_key_rotation="r1"), {})
    assert [e.reason for e in rotated.events] == ["SecretKeyRotated"]
    assert rotated.data[names.SECRET_KEY_FALLBACKS] == first.data[names.SECRET_KEY]

    url_secret(kube, "keys", "x")
    ref = secretkey.ensure(
        kube, _app(kube, name="other", secretKey={"secretRef": {"name": "keys", "key": "K"}}), {}
    )
    assert ref.halt and ref.retry_after == RETRY_DATABASE_SECONDS
    assert _conds(ref) == {names.DATABASE_READY: ("False", "SecretKeyNotFound")}


# --- migrate -----------------------------------------------------------------------------------------------


def test_migrate_starts_a_job_and_looks_again_while_its_pod_starts(kube: FakeKube) -> None:
    app = _app(kube)
    target = _target(kube, app)
    started = migrate.migrate(kube, app, target, {}, retry="", now=kube.now())
    assert _conds(started) == {names.MIGRATED: ("False", "Migrating")} and not started.halt
    assert "migratedImage" not in started.status
    record = started.status["migration"]
    assert record["image"] == "app:1" and record["database"] == target.database_key
    assert started.recheck_after == migrate.JOB_PATIENCE_SECONDS + 1  # a Job's first seconds

    kube.finish_job(NS, record["jobName"], succeeded=False)
    failed = migrate.migrate(kube, app, target, {}, retry="", now=kube.now())
    assert failed.halt and failed.stalled
    assert _conds(failed) == {names.MIGRATED: ("False", "MigrationFailed")}
    assert failed.status["migration"]["outcome"] == "Failed"  # recorded although the flow halts


def test_migrate_disabled_or_done_is_migrated_without_a_job(kube: FakeKube) -> None:
    app = _app(kube, migrations={"enabled": False})
    target = _target(kube, app)
    off = migrate.migrate(kube, app, target, {}, retry="", now=kube.now())
    assert _conds(off) == {names.MIGRATED: ("True", "MigrationsDisabled")}
    assert off.status["migratedImage"] == "app:1" and off.recheck_after is None
    assert kube.list("Job", NS) == []

    on = dataclasses.replace(app, migrations=dataclasses.replace(app.migrations, enabled=True))
    previous = {"migratedImage": "app:1", "migration": {"jobName": "j", "database": target.database_key}}
    done = migrate.migrate(kube, on, target, previous, retry="", now=kube.now())
    assert _conds(done) == {names.MIGRATED: ("True", "Migrated")} and done.status == {}


# --- rollout -----------------------------------------------------------------------------------------------


def test_availability_is_pure_and_names_only_a_migrated_image_as_serving(kube: FakeKube) -> None:
    app = _app(kube)
    none = rollout.availability(app, deployments.MISSING, "app:1")
    assert _conds(none) == {names.AVAILABLE: ("False", "NotDeployed")}
    assert none.status == {"replicas": 0, "readyReplicas": 0, "selector": none.status["selector"]}
    done = dataclasses.replace(
        deployments.MISSING, exists=True, image="app:1", rolled_out=True, available=True, replicas=2
    )
    assert rollout.availability(app, done, "app:1").status["servingImage"] == "app:1"
    assert "servingImage" not in rollout.availability(app, done, "app:0").status


def test_roll_out_writes_nothing_before_the_migration_and_rechecks_a_rollout_in_progress(
    kube: FakeKube,
) -> None:
    app = _app(kube)
    before = len(kube.calls)
    waiting = rollout.roll_out(kube, app, {}, [{}], migrated=False, migrated_image=None, now=kube.now())
    assert not any(verb in ("create", "apply", "patch", "delete") for verb, _, _ in kube.calls[before:])
    assert _conds(waiting) == {names.AVAILABLE: ("False", "NotDeployed")}
    assert (waiting.rolled_out, waiting.blocked, waiting.recheck_after) == (False, None, None)

    rolling = rollout.roll_out(kube, app, {}, [{}], migrated=True, migrated_image="app:1", now=kube.now())
    assert kube.get("Deployment", NS, app.name) is not None and kube.get("Service", NS, app.name) is not None
    assert not rolling.rolled_out and rolling.recheck_after == RECHECK_SECONDS
    kube.roll_out(NS, app.name)
    done = rollout.roll_out(kube, app, {}, [{}], migrated=True, migrated_image="app:1", now=kube.now())
    assert done.rolled_out and done.recheck_after is None and done.status["servingImage"] == "app:1"
    assert _conds(done) == {names.AVAILABLE: ("True", "MinimumReplicasAvailable")}


# --- finalize ----------------------------------------------------------------------------------------------


def test_finalize_releases_at_once_unless_a_database_is_to_drop(kube: FakeKube) -> None:
    kept = finalize.finalize(kube, _app(kube), NO_LABELS, skip_drop=False, deleting_for=0, connect_timeout=1)
    assert kept == finalize.Finalized(True)

    _server(kube)
    app = _server_app(kube, deletionPolicy="Delete")
    skipped = finalize.finalize(kube, app, NO_LABELS, skip_drop=True, deleting_for=0, connect_timeout=1)
    assert skipped.done and [e.reason for e in skipped.events] == [finalize.NOT_DROPPED]
    # The admin Secret is missing: nothing can be dropped, and nothing holds the app.
    orphan = finalize.finalize(kube, app, NO_LABELS, skip_drop=False, deleting_for=0, connect_timeout=1)
    assert orphan.done and [(e.type, e.reason) for e in orphan.events] == [("Warning", finalize.NOT_DROPPED)]
