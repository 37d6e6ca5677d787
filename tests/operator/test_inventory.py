"""Which database each FlaskApp uses, from index entries (plain dicts)."""

from flaskops import inventory

SERVERS = {
    "main": inventory.server_entry({"host": "PG.internal", "port": 5432, "environments": ["production"]})
}


def entry(name, dbname, server="main", env="production", recorded=None):
    e = inventory.app_entry(
        "shop", name, {"environment": env, "database": {"server": server, "name": dbname}}, {}
    )
    e["recorded"] = recorded
    return e


def test_location_from_the_server_or_the_recorded_status():
    assert inventory.location(entry("a", "gb"), SERVERS) == ("pg.internal", 5432, "gb")
    byo = entry("b", None, server=None, recorded={"host": "other", "port": 6432, "name": "legacy"})
    assert inventory.location(byo, SERVERS) == ("other", 6432, "legacy")
    assert inventory.location(entry("c", "gb", server="unknown"), SERVERS) is None


def test_other_apps_skips_itself_and_filters_by_location():
    entries = [entry("me", "gb"), entry("twin", "gb"), entry("far", "other")]
    assert {o.name for o in inventory.other_apps("shop", "me", entries, SERVERS)} == {"twin", "far"}
    near = inventory.other_apps("shop", "me", entries, SERVERS, near=("pg.internal", 5432, "gb"))
    assert [(o.name, o.provisioned) for o in near] == [("twin", True)]
