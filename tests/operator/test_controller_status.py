"""Which status changes the controller writes at once, and which wait (plain data, no cluster)."""

from flaskops import conditions as c
from flaskops import controller, names


def status(ready_reason: str, message: str, replicas: int = 1, started: str = "t1"):
    conds = c.merge([], [c.false(names.READY, ready_reason, message)], 1, "2026-01-01T00:00:00Z")
    return {"conditions": conds, "replicas": replicas, "migration": {"jobName": "j", "startedAt": started}}


def test_progress_details_are_not_essential():
    before = status("RollingOut", "rolling out: 0/2 updated", replicas=0, started="")
    after = status("RollingOut", "rolling out: 1/2 updated", replicas=1, started="t2")
    assert controller._essential(before) == controller._essential(after)


def test_a_new_reason_or_migration_record_is_essential():
    before = status("Migrating", "Job j is migrating")
    assert controller._essential(before) != controller._essential(status("RollingOut", "Job j is migrating"))
    moved = status("Migrating", "Job j is migrating")
    moved["migration"]["outcome"] = "Succeeded"
    assert controller._essential(before) != controller._essential(moved)


def test_the_finalizer_is_wanted_only_for_a_dropped_database():
    assert controller._drops_database({"database": {"server": "pg", "deletionPolicy": "Delete"}})
    assert not controller._drops_database({"database": {"server": "pg"}})
    assert not controller._drops_database(
        {"environment": "production", "database": {"server": "pg", "deletionPolicy": "Delete"}}
    )
    assert not controller._drops_database({"database": {"existingSecret": {"name": "s"}}})
