"""kopf settings the operator relies on, checked without a cluster."""

import kopf

from flaskops import handlers


def test_a_failed_reconcile_is_retried_within_seconds_not_kopfs_minute():
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings)
    assert settings.execution.default_backoff == handlers.RETRY_SECONDS <= 10


# --- leader election: a follower's kopf runs no handler and owns no finalizer -----------------------------


class _Follower:
    leading = False


def _kwargs(**extra):
    """What kopf passes a filter, enough for ours."""
    return {
        "spec": {"database": {"server": "main", "deletionPolicy": "Delete"}, "environment": "development"},
        "annotations": {"flaskops.dev/retry-migration": "1"},
        "status": {},
        "type": "MODIFIED",
        "labels": {"flaskops.dev/app": "web"},
        "body": {
            "metadata": {
                "managedFields": [{"manager": "kubectl"}],
                "labels": {"flaskops.dev/app": "web"},
                "ownerReferences": [{"kind": "FlaskApp", "name": "web", "controller": True}],
            }
        },
        **extra,
    }


def _our_handlers():
    registry = kopf.get_default_registry()
    # Index handlers feed the webhook and must run everywhere; everything that can write is below
    # (spawning: daemons and timers, e.g. a PostgresServer status check).
    return [*registry._changing._handlers, *registry._watching._handlers, *registry._spawning._handlers]


def test_every_handler_that_can_write_is_filtered_out_in_a_follower(monkeypatch):
    """A handler without the leader filter would run in every replica (two Jobs, two passwords) and, for
    FlaskApps, make kopf mark a change handled that the leader never handled. Drift guard for new ones."""
    found = _our_handlers()
    assert len(found) >= 8  # resume/create/update/delete, retry, two children, namespaces, servers
    monkeypatch.setattr(handlers, "LEADERSHIP", _Follower())
    # Memory only (they arm the PostgresServer check timers; check_server itself writes only in the leader).
    memory_only = {"server_seen", "app_budget_seen"}
    unfiltered = [
        h.id
        for h in found
        if h.id.split("/")[0] not in memory_only and (h.when is None or h.when(**_kwargs()))
    ]
    assert unfiltered == [], f"handlers a follower would run: {unfiltered}"
    # The same filters let everything through in the leader (or without leader election).
    monkeypatch.setattr(handlers, "LEADERSHIP", None)
    assert [h.id for h in found if h.when is not None and not h.when(**_kwargs())] == []


def test_a_follower_knows_a_finalizer_no_object_carries(monkeypatch):
    """kopf removes the finalizer it is configured with when no handler of its matches: a follower's is
    another name, so it never removes (or adds) the leader's."""
    monkeypatch.setattr(
        handlers, "CONFIG", handlers.settings_mod.from_env({"FLASKOPS_LEADER_ELECTION": "true"})
    )
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings)
    assert settings.persistence.finalizer == handlers.FOLLOWER_FINALIZER != handlers.names.FINALIZER
    monkeypatch.setattr(handlers, "CONFIG", handlers.settings_mod.from_env({}))
    handlers.configure(settings=settings)
    assert settings.persistence.finalizer == handlers.names.FINALIZER
