"""Security review of issue 9: the pure ownership decision against records flaskops did not write.

`xfail(strict=True)` marks what fails on the reviewed code (finding numbers of the review report).
"""

from __future__ import annotations

import pytest

from flaskops import ownership
from flaskops.ownership import Claim, DatabaseFacts, Owner, Plan, RoleFacts

ME = Owner("shop", "guestbook", "uid-me", "testing")


def decide(claim: Claim, role: RoleFacts | None, db: DatabaseFacts | None) -> object:
    return ownership.decide(claim, role, db, admin_user="dbadmin", maintenance_db="postgres")


@pytest.mark.xfail(strict=True, reason="finding 11: an owner line without uid/environment is taken as ours")
def test_a_hand_written_owner_line_is_not_an_ownership_record() -> None:
    """Someone who may COMMENT ON ROLE (any CREATEROLE holder; on PostgreSQL <16 without ADMIN OPTION) and
    a database's owner (COMMENT ON DATABASE needs only ownership) can write `flaskops:owner=<ns>/<name>`.
    flaskops never writes that line alone; `decide` still re-attaches (and resets the role's password)
    with no adoption consent from either side."""
    forged = "legacy reporting role\nflaskops:owner=shop/guestbook"
    role = RoleFacts("reporting", comment=forged)
    db = DatabaseFacts("reporting", "reporting", comment=forged)
    plan = decide(Claim(ME, "reporting", "reporting"), role, db)
    assert not isinstance(plan, Plan), plan


def test_a_forged_uid_of_another_app_is_still_other() -> None:
    """Held up: a record naming another UID is `other`, never adoptable."""
    other = ownership.record_comment(Owner("billing", "api", "uid-other", "testing"))
    role = RoleFacts("x", comment=other)
    assert isinstance(decide(Claim(ME, "x", "x", adopt=True, adoptable=True), role, None), ownership.Refusal)


@pytest.mark.parametrize("name", ["Postgres", "TEMPLATE1", "PG_MONITOR", "Pg_read_all_data"])
def test_case_variants_of_reserved_names_are_reserved(name: str) -> None:
    """Held up: reserved names compare case-insensitively (the CRD pattern also forbids upper case)."""
    assert ownership.reserved_names(name, name) is not None
