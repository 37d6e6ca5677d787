"""metav1.Condition bookkeeping on plain data."""

from flaskops import conditions as c
from flaskops import names


def test_transition_time_moves_only_when_status_changes():
    first = c.merge([], [c.false(names.MIGRATED, "Migrating", "running")], 1, "2026-01-01T00:00:00Z")
    same = c.merge(first, [c.false(names.MIGRATED, "MigrationFailed", "boom")], 2, "2026-01-01T00:05:00Z")
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["reason"] == "MigrationFailed"
    assert same[0]["observedGeneration"] == 2
    flipped = c.merge(same, [c.true(names.MIGRATED, "Migrated", "ok")], 2, "2026-01-01T00:09:00Z")
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:09:00Z"


def test_order_follows_the_contract_and_keeps_unknown_types():
    conds = c.merge(
        [{"type": "Custom", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "t"}],
        [c.true(names.AVAILABLE, "A", ""), c.true(names.READY, "R", "")],
        1,
        "t",
    )
    assert [x["type"] for x in conds] == [names.READY, names.AVAILABLE, "Custom"]
    assert c.is_true(conds, names.READY)
    assert not c.is_true(conds, names.MIGRATED)
