"""The pairing rules S1-S6 on plain data: every rule fires on its case and stays quiet on near misses."""

import pytest

from flaskops.postgres.url import DatabaseIdentity
from flaskops.safety import OtherApp, check_pairing, location, summary, tokens


def ident(dbname="guestbook", host="pg.internal", user="guestbook", port=5432):
    return DatabaseIdentity(host, port, dbname, user)


def rules(violations):
    return [v.rule for v in violations]


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("contest", ["contest"]),
        ("guestbook_test", ["guestbook", "test"]),
        ("test1", ["test", "1"]),
        ("Prod-DB.internal", ["prod", "db", "internal"]),
        ("", []),
    ],
)
def test_tokens_split_on_non_alphanumerics_and_digits(identifier, expected):
    assert tokens(identifier) == expected


@pytest.mark.parametrize(
    ("env", "identity", "rule"),
    [
        ("production", ident(dbname="guestbook_test"), "S1"),
        ("development", ident(host="test-db.internal"), "S1"),
        ("production", ident(user="app_tests"), "S1"),
        ("production", ident(dbname="guestbook_staging"), "S2"),
        ("production", ident(host="sandbox.pg"), "S2"),
        ("production", ident(dbname="ci_guestbook"), "S2"),
        ("development", ident(dbname="guestbook_prod"), "S3"),
        ("testing", ident(host="live-pg.internal"), "S3"),
    ],
)
def test_token_rules_fire(env, identity, rule):
    found = check_pairing(env, identity)
    assert rule in rules(found)
    # The message names the offending value, so a user can find it.
    message = summary(found)
    assert rule in message
    assert any(value in message for value in (identity.dbname, identity.host, identity.user))


@pytest.mark.parametrize(
    ("env", "identity"),
    [
        ("production", ident(dbname="contest")),  # contest is not test
        ("production", ident(dbname="latest_entries")),
        ("testing", ident(dbname="guestbook_test")),  # only testing may use a test database
        ("production", ident(dbname="guestbook_prod")),
        ("development", ident(dbname="devices")),  # devices is not dev
        ("development", ident(dbname="guestbook_dev")),
        ("testing", ident(dbname="products")),  # products is not prod
    ],
)
def test_near_misses_are_safe(env, identity):
    assert check_pairing(env, identity) == []


def test_s4_environment_not_admitted_by_server():
    found = check_pairing("development", ident(), server_name="main", server_environments=["production"])
    assert rules(found) == ["S4"]
    assert "main" in found[0].message and "development" in found[0].message


def test_s4_silent_without_a_server():
    assert check_pairing("development", ident(), server_environments=None) == []


def test_s5_same_database_other_environment():
    mine = ident()
    other = OtherApp("shop", "old", "development", location(mine))
    same_env = OtherApp("shop", "twin", "production", location(mine))
    elsewhere = OtherApp("shop", "far", "development", ("other-host", 5432, "guestbook"))
    found = check_pairing("production", mine, others=[same_env, elsewhere, other])
    assert rules(found) == ["S5"]
    # A tenant reads this message: it names nothing of the other app (namespace, name, environment).
    assert "another FlaskApp" in found[0].message
    assert "shop" not in found[0].message and "old" not in found[0].message
    assert "development" not in found[0].message


def test_s5_host_compare_ignores_case():
    other = OtherApp("a", "b", "testing", ("pg.internal", 5432, "guestbook"))
    assert rules(check_pairing("production", ident(host="PG.Internal"), others=[other])) == ["S5"]


def test_s6_stamp_disagrees():
    assert rules(check_pairing("production", ident(), stamp="testing")) == ["S6"]
    assert check_pairing("production", ident(), stamp="production") == []
    assert check_pairing("production", ident(), stamp=None) == []


def test_rules_subset_and_order():
    identity = ident(dbname="test_prod_db")
    assert rules(check_pairing("development", identity, stamp="production")) == ["S1", "S3", "S6"]
    assert rules(check_pairing("development", identity, rules=["S3"])) == ["S3"]


def test_s5_the_first_user_keeps_the_database():
    mine = ident()
    older = OtherApp("shop", "old", "development", location(mine), created="2026-01-01T00:00:00Z")
    newer = OtherApp("shop", "new", "development", location(mine), created="2026-06-01T00:00:00Z")
    me = ("2026-03-01T00:00:00Z", "shop", "me")
    assert rules(check_pairing("production", mine, others=[older], me=me)) == ["S5"]
    assert check_pairing("production", mine, others=[newer], me=me) == []
    # At admission the app does not exist yet: everyone already there counts.
    assert rules(check_pairing("production", mine, others=[newer])) == ["S5"]


def test_s5_sees_one_server_behind_two_host_names():
    mine = ident(host="pg-alias.internal")
    other = OtherApp(
        "a", "b", "development", ("pg.internal", 5432, "guestbook"), server_id="7713567397421805555"
    )
    assert check_pairing("production", mine, others=[other]) == []  # host names alone: unknown
    found = check_pairing("production", mine, others=[other], server_id="7713567397421805555")
    assert rules(found) == ["S5"]
    # Another database on the same server is another database.
    assert (
        check_pairing("production", ident(dbname="shop"), others=[other], server_id="7713567397421805555")
        == []
    )
    assert check_pairing("production", mine, others=[other], server_id="1") == []
