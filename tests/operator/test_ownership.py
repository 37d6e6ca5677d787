"""The ownership decision with plain data: reserved, privileged, other-owner, retained, adopted, aliased."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from flaskops import ownership, tenancy
from flaskops.ownership import Claim, DatabaseFacts, Owner, Plan, Refusal, RoleFacts

ROOT = Path(__file__).resolve().parents[2]
ME = Owner("shop", "guestbook", "uid-me", "production")
ADMIN = "dbadmin"


def decide(claim: Claim, role: RoleFacts | None, db: DatabaseFacts | None) -> Plan | Refusal:
    return ownership.decide(claim, role, db, admin_user=ADMIN, maintenance_db="postgres")


def record(owner: Owner) -> str:
    return ownership.record_comment(owner)


def test_a_new_name_is_created() -> None:
    assert decide(Claim(ME, "shop_gb", "shop_gb"), None, None) == Plan("create", "create")


def test_its_own_role_and_database_are_taken_up() -> None:
    role = RoleFacts("shop_gb", comment=record(ME))
    db = DatabaseFacts("shop_gb", "shop_gb", comment=record(ME))
    assert decide(Claim(ME, "shop_gb", "shop_gb"), role, db) == Plan("own", "own")


@pytest.mark.parametrize(
    "name", ["postgres", "template0", "template1", "pg_signal_backend", "public", "rdsadmin"]
)
def test_reserved_names_are_refused_by_name(name: str) -> None:
    verdict = decide(Claim(ME, name, name), None, None)
    assert isinstance(verdict, Refusal) and verdict.reason == ownership.RESERVED_NAME


def test_the_admin_role_is_reserved_with_the_same_words_as_any_reserved_role() -> None:
    admin = decide(Claim(ME, "appdb", ADMIN), RoleFacts(ADMIN, superuser=True), None)
    by_name = decide(Claim(ME, "appdb", "rds_superuser"), None, None)
    assert isinstance(admin, Refusal) and isinstance(by_name, Refusal)
    assert admin.reason == by_name.reason == ownership.RESERVED_NAME
    # A tenant cannot tell the admin role from any other reserved name.
    assert admin.message.replace(ADMIN, "NAME") == by_name.message.replace("rds_superuser", "NAME")
    maintenance = decide(Claim(ME, "postgres", "app"), None, None)
    assert isinstance(maintenance, Refusal) and maintenance.reason == ownership.RESERVED_NAME


@pytest.mark.parametrize("attribute", ["superuser", "createrole", "createdb", "replication", "bypassrls"])
def test_privileged_roles_are_reserved_even_with_both_consents(attribute: str) -> None:
    role = RoleFacts("app", **{attribute: True}, comment=record(ME))
    verdict = decide(Claim(ME, "app", "app", adopt=True, adoptable=True), role, None)
    assert isinstance(verdict, Refusal) and verdict.reason == ownership.RESERVED_NAME


def test_a_template_database_is_reserved() -> None:
    verdict = decide(Claim(ME, "tmpl", "tmpl"), None, DatabaseFacts("tmpl", "tmpl", is_template=True))
    assert isinstance(verdict, Refusal) and verdict.reason == ownership.RESERVED_NAME


def test_another_apps_objects_are_never_adoptable() -> None:
    other = Owner("team-b", "shop", "uid-b", "production")
    role = RoleFacts("shared", comment=record(other))
    db = DatabaseFacts("shared", "shared", comment=record(other))
    verdict = decide(Claim(ME, "shared", "shared", adopt=True, adoptable=True), role, db)
    assert isinstance(verdict, Refusal) and verdict.reason == ownership.ROLE_OWNED_ELSEWHERE
    assert "team-b" not in verdict.message and "uid-b" not in verdict.message


def test_a_database_owned_by_another_role_is_refused_before_anything_else() -> None:
    verdict = decide(Claim(ME, "shop_gb", "shop_gb"), None, DatabaseFacts("shop_gb", "someone"))
    assert isinstance(verdict, Refusal) and verdict.reason == ownership.DATABASE_OWNED_ELSEWHERE
    assert "someone" not in verdict.message


def test_retain_reattaches_the_same_namespace_and_name_only() -> None:
    deleted = Owner("shop", "guestbook", "uid-deleted", "production")
    role = RoleFacts("gb", comment=record(deleted))
    db = DatabaseFacts("gb", "gb", comment=record(deleted))
    assert decide(Claim(ME, "gb", "gb"), role, db) == Plan("reattach", "reattach")
    stranger = Owner("other-ns", "guestbook", "uid-x", "production")
    verdict = decide(Claim(stranger, "gb", "gb", adopt=True, adoptable=True), role, db)
    assert isinstance(verdict, Refusal)


def test_legacy_objects_need_both_consents_and_a_plain_role() -> None:
    role, db = RoleFacts("legacy", comment="made by hand"), DatabaseFacts("legacy", "legacy")
    for adopt, adoptable in ((False, False), (True, False), (False, True)):
        verdict = decide(Claim(ME, "legacy", "legacy", adopt=adopt, adoptable=adoptable), role, db)
        assert isinstance(verdict, Refusal) and verdict.reason == ownership.ROLE_OWNED_ELSEWHERE
    assert decide(Claim(ME, "legacy", "legacy", adopt=True, adoptable=True), role, db) == Plan(
        "adopt", "adopt"
    )
    member = RoleFacts("legacy", member_of=("reporting",))
    verdict = decide(Claim(ME, "legacy", "legacy", adopt=True, adoptable=True), member, db)
    assert isinstance(verdict, Refusal) and "member of other roles" in verdict.message


def test_a_legacy_environment_stamp_without_an_owner_is_not_ownership() -> None:
    # What flaskops 0.1 wrote: only the environment. A name match plus that stamp is not enough.
    db = DatabaseFacts("gb", "gb", comment="flaskops:environment=production")
    verdict = decide(Claim(ME, "gb", "gb"), RoleFacts("gb"), db)
    assert isinstance(verdict, Refusal)


def test_the_record_keeps_a_persons_lines_and_round_trips() -> None:
    text = ownership.record_comment(ME, "the shop's data\nflaskops:uid=forged")
    assert text.splitlines()[0] == "the shop's data"
    assert ownership.parse_record(text) == ownership.Record(
        "production", ownership.owner_digest("shop", "guestbook"), ownership.digest("uid-me")
    )
    # Nothing of the owner is readable in the clear.
    assert "shop" not in text.replace("the shop's data", "") and "uid-me" not in text


def test_a_legacy_role_is_taken_up_only_with_proof_of_its_password() -> None:
    # flaskops 0.1: no role comment, the database stamped with the environment only.
    role, db = RoleFacts("gb"), DatabaseFacts("gb", "gb", comment="flaskops:environment=production")
    assert isinstance(decide(Claim(ME, "gb", "gb"), role, db), Refusal)
    assert decide(Claim(ME, "gb", "gb", proven=True), role, db) == Plan("reattach", "reattach")
    # Proof opens only what carries no other owner's record.
    other = DatabaseFacts("gb", "gb", comment=record(Owner("x", "y", "uid-x", "production")))
    assert isinstance(decide(Claim(ME, "gb", "gb", proven=True), role, other), Refusal)


def test_may_drop_only_what_carries_this_uid() -> None:
    mine_role, mine_db = RoleFacts("gb", comment=record(ME)), DatabaseFacts("gb", "gb", comment=record(ME))
    kw = {"admin_user": ADMIN, "maintenance_db": "postgres"}
    assert ownership.may_drop(ME, "gb", "gb", mine_role, mine_db, **kw) == (True, True)
    assert ownership.may_drop(ME, "gb", "gb", None, None, **kw) == (False, False)
    retained_for = Owner("shop", "guestbook", "uid-new", "production")
    assert isinstance(ownership.may_drop(retained_for, "gb", "gb", mine_role, mine_db, **kw), Refusal)
    assert isinstance(ownership.may_drop(ME, "postgres", "postgres", None, None, **kw), Refusal)
    assert isinstance(
        ownership.may_drop(ME, "gb", ADMIN, RoleFacts(ADMIN, superuser=True), None, **kw), Refusal
    )


# --- properties ------------------------------------------------------------------------------------------

names = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
owners = st.builds(
    Owner,
    namespace=st.sampled_from(["shop", "team-b", "other"]),
    name=st.sampled_from(["guestbook", "shop", "web"]),
    uid=st.sampled_from(["uid-1", "uid-2", "uid-3"]),
    environment=st.sampled_from(["development", "testing", "production"]),
)
records = st.one_of(st.none(), st.just("made by hand"), owners.map(ownership.record_comment))
roles = st.one_of(
    st.none(),
    st.builds(
        RoleFacts,
        name=st.just("x"),
        superuser=st.booleans(),
        createrole=st.booleans(),
        createdb=st.booleans(),
        replication=st.booleans(),
        bypassrls=st.booleans(),
        member_of=st.sampled_from([(), ("reporting",)]),
        comment=records,
    ),
)


@given(
    owner=owners,
    name=st.one_of(names, st.sampled_from(sorted(ownership.RESERVED_DATABASES | ownership.RESERVED_ROLES))),
    role=roles,
    db_owner=st.sampled_from([None, "same", "other"]),
    db_comment=records,
    adopt=st.booleans(),
    adoptable=st.booleans(),
)
def test_the_decision_allows_exactly_what_the_rules_say(
    owner: Owner,
    name: str,
    role: RoleFacts | None,
    db_owner: str | None,
    db_comment: str | None,
    adopt: bool,
    adoptable: bool,
) -> None:
    role = None if role is None else RoleFacts(**{**role.__dict__, "name": name})
    db = (
        None if db_owner is None else DatabaseFacts(name, name if db_owner == "same" else "other", db_comment)
    )
    verdict = decide(Claim(owner, name, name, adopt, adoptable), role, db)

    def relation(comment: str | None) -> str:
        rec = ownership.parse_record(comment)
        if not rec.complete:
            return "adopt" if adopt and adoptable else "refuse"
        if rec.owner != ownership.owner_digest(owner.namespace, owner.name):
            return "other"
        return "own" if rec.uid == ownership.digest(owner.uid) else "reattach"

    reserved = (
        name in ownership.RESERVED_DATABASES
        or name in ownership.RESERVED_ROLES
        or name.startswith("pg_")
        or name in (ADMIN, "postgres")
        or (role is not None and role.privileged)
    )
    expected_ok = not reserved and db_owner != "other"
    if expected_ok and role is not None:
        r = relation(role.comment)
        expected_ok = r != "other" and r != "refuse" and not (r == "adopt" and role.member_of)
    if expected_ok and db is not None:
        expected_ok = relation(db.comment) not in ("other", "refuse")
    assert isinstance(verdict, Plan) == expected_ok, (verdict, role, db)
    if isinstance(verdict, Refusal):
        assert verdict.reason in ownership.REFUSAL_REASONS
        # A tenant never reads another owner's namespace or UID.
        assert "team-b" not in verdict.message or owner.namespace == "team-b"
        assert "uid-" not in verdict.message


# --- allowedNamespaces -----------------------------------------------------------------------------------


def test_allowed_namespaces_default_admits_everyone() -> None:
    assert tenancy.admits(None, None) and tenancy.admits({"from": "All"}, {"a": "b"})


def test_allowed_namespaces_selector() -> None:
    allowed = {
        "from": "Selector",
        "selector": {
            "matchLabels": {"team": "shop"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["prod", "stage"]},
                {"key": "quarantine", "operator": "DoesNotExist"},
            ],
        },
    }
    assert tenancy.admits(allowed, {"team": "shop", "tier": "prod"})
    assert not tenancy.admits(allowed, {"team": "shop", "tier": "dev"})
    assert not tenancy.admits(allowed, {"team": "shop", "tier": "prod", "quarantine": "yes"})
    assert not tenancy.admits(allowed, {"team": "blog", "tier": "prod"})
    assert not tenancy.admits(allowed, None)  # a namespace not seen yet is not admitted
    assert tenancy.selector_matches(
        {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {}
    )
    assert tenancy.selector_matches({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""})


# --- one source of truth ---------------------------------------------------------------------------------


def test_the_crd_refuses_exactly_the_names_reserved_by_name() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "flaskapps.flaskops.dev.yaml").read_text())
    field = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "database"
    ]["properties"]["name"]
    (rule,) = [v["rule"] for v in field["x-kubernetes-validations"] if "startsWith" in v["rule"]]
    listed = set(rule.split("[", 1)[1].split("]", 1)[0].replace("'", "").replace(" ", "").split(","))
    assert listed == ownership.RESERVED_DATABASES | ownership.RESERVED_ROLES
    assert f"startsWith('{ownership.RESERVED_ROLE_PREFIX}')" in rule


def test_the_readme_lists_every_reserved_name_and_reason() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ownership.all_reserved():
        assert f"`{name}`" in readme, name
    for reason in (*ownership.REFUSAL_REASONS, tenancy.NAMESPACE_NOT_ALLOWED, "NotOwned", "DatabaseAdopted"):
        assert f"`{reason}`" in readme, reason


def test_the_environment_line_is_the_s6_stamp() -> None:
    from flaskops.postgres import naming

    assert naming.parse_stamp(ownership.record_comment(ME)) == "production"
