"""kopf wiring the operator relies on, checked without a cluster."""

import kopf

from flaskops import controller, handlers


def test_a_failed_reconcile_is_retried_within_seconds_not_kopfs_minute():
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings)
    assert controller.RETRY_SECONDS <= 10
    assert settings.execution.default_backoff == handlers.RETRY_SECONDS == controller.RETRY_SECONDS


def test_kopfs_per_object_workers_do_not_idle_for_seconds_holding_their_last_event():
    """A kopf worker keeps its object's last raw watch event while it waits for the next: at 1000 apps
    ~400 whole bodies stay in memory for kopf's default 5 s after a burst."""
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings)
    assert settings.queueing.idle_timeout <= 1.0 < kopf.OperatorSettings().queueing.idle_timeout


def test_kopf_has_no_change_handlers_so_it_writes_nothing_of_its_own():
    """kopf's on.create/update/resume/delete handlers make it write its last-handled-configuration and
    progress annotations and a finalizer on every object: 2+ writes per app and per change, and a finalizer
    a follower replica would fight over. Everything goes through on.event and the work queue instead."""
    registry = kopf.get_default_registry()
    assert list(registry._changing._handlers) == []
    assert list(registry._spawning._handlers) == []  # daemons and timers would put finalizers too
    watched = {h.id.split("/")[0] for h in registry._watching._handlers}
    assert {"flaskapp_changed", "child_changed", "server_changed", "namespace_changed"} <= watched


def test_every_event_handler_is_async_so_no_watch_event_takes_a_thread():
    import inspect

    registry = kopf.get_default_registry()
    for h in registry._watching._handlers:
        assert inspect.iscoroutinefunction(h.fn), h.id


def test_a_follower_queues_nothing_and_reconciles_nothing(monkeypatch):
    """Every replica keeps the cache warm (the webhook reads it, a new leader starts from it), but only
    the leader queues and runs reconciles: a follower never writes."""
    queue = controller.runtime().queue
    before = queue.pending()["queued"]
    monkeypatch.setattr(controller, "LEADING", lambda: False)
    controller.enqueue("ns", "web")
    assert queue.pending()["queued"] == before
    assert controller.process(("ns", "web")) is None
    monkeypatch.setattr(controller, "LEADING", lambda: True)
    controller.enqueue("ns", "web")
    assert queue.pending()["queued"] == before + 1
