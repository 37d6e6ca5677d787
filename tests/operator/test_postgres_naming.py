"""`identity_for`, the one answer to "which database and role does this app use", on plain data — and
reconcile, admission and the operator's index giving that same answer for the same app."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flaskops import inventory, names, ownership, webhook
from flaskops.postgres import naming
from flaskops.postgres.url import Address, DatabaseIdentity
from flaskops.spec import FlaskAppSpec, parse_flaskapp, parse_postgresserver
from flaskops.steps import resolve
from flaskops.steps.result import Halt
from tests.operator.flaskapp_strategies import db_name, dns_label

SERVER = parse_postgresserver(
    {
        "metadata": {"name": "main"},
        "spec": {
            "host": "PG.internal",
            "port": 6432,
            "environments": ["production"],
            "adminSecretRef": {"namespace": "flaskops", "name": "pg-admin"},
        },
    }
)


def app(name: str = "guestbook", namespace: str = "shop", dbname: str | None = None) -> FlaskAppSpec:
    database: dict[str, Any] = {"server": "main"}
    if dbname is not None:
        database["name"] = dbname
    return parse_flaskapp(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": "uid-1"},
            "spec": {"environment": "production", "image": "i:1", "database": database},
        }
    )


def test_the_requested_name_is_database_and_role() -> None:
    assert naming.identity_for(app(dbname="orders"), SERVER) == DatabaseIdentity(
        "PG.internal", 6432, "orders", "orders"
    )


def test_without_a_name_the_default_names_are_used() -> None:
    assert naming.identity_for(app(), SERVER) == DatabaseIdentity(
        "PG.internal", 6432, "shop__guestbook", "shop__guestbook"
    )
    long_app = app(name="a" * 60)
    identity = naming.identity_for(long_app, SERVER)
    assert (identity.dbname, identity.user) == naming.default_names("shop", "a" * 60)
    assert len(identity.dbname.encode()) <= naming.MAX_IDENTIFIER_BYTES


def test_a_server_from_the_index_is_plain_host_and_port() -> None:
    # Admission and the index hold PostgresServers as plain entries, not parsed specs.
    entry = inventory.server_entry({"host": "PG.internal", "port": 6432})
    from_entry = naming.identity_for(app(), Address(entry["host"], entry["port"]))
    assert from_entry == naming.identity_for(app(), SERVER)


def test_admission_may_see_an_app_without_namespace_or_name() -> None:
    assert naming.identity_for(app(name="", namespace=""), SERVER).dbname == "default__unnamed"


@pytest.mark.parametrize("reserved", ["postgres", "template1", "rdsadmin", "pg_monitor", "PUBLIC"])
def test_a_reserved_name_raises_reserved_name(reserved: str) -> None:
    with pytest.raises(naming.ReservedName) as caught:
        naming.identity_for(app(dbname=reserved), SERVER)
    assert caught.value.refusal.reason == ownership.RESERVED_NAME
    assert reserved in caught.value.refusal.message
    assert "spec.database.name" in str(caught.value)
    assert naming.reserved(app(dbname=reserved)) == caught.value.refusal


def test_default_names_are_never_reserved() -> None:
    for namespace, name in (("pg", "x"), ("postgres", "postgres"), ("public", "none"), ("9", "pg")):
        assert naming.reserved(app(name=name, namespace=namespace)) is None


class OneServerKube:
    """The only read `Reconciler._resolve` makes for a server-backed app: the PostgresServer."""

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        assert kind == names.POSTGRESSERVER_KIND and name == "main"
        return {
            "metadata": {"name": "main"},
            "spec": {
                "host": SERVER.host,
                "port": SERVER.port,
                "environments": list(SERVER.environments),
                "adminSecretRef": {"namespace": "flaskops", "name": "pg-admin"},
            },
        }


def _resolve(a: FlaskAppSpec) -> DatabaseIdentity:
    return resolve.target(OneServerKube(), a, lambda namespace: None).identity


@given(name=dns_label, namespace=dns_label, dbname=st.none() | db_name)
def test_reconcile_admission_and_the_index_agree(name: str, namespace: str, dbname: str | None) -> None:
    a = app(name=name, namespace=namespace, dbname=dbname)
    expected = naming.identity_for(a, SERVER)
    assert _resolve(a) == expected
    servers = {"main": inventory.server_entry({"host": SERVER.host, "port": SERVER.port})}
    spec = {"environment": "production", "database": {"server": "main", "name": dbname}}
    entry = inventory.app_entry(namespace, name, spec, {})
    assert inventory.location(entry, servers) == (expected.host.lower(), expected.port, expected.dbname)
    # Admission judges the pairing on that identity: a twin on the same database is S5, whatever its name.
    twin = inventory.app_entry("elsewhere", "twin", {"environment": "testing"}, {})
    twin["recorded"] = {"host": expected.host, "port": expected.port, "name": expected.dbname}
    others = inventory.other_apps(namespace, name, [twin], servers)
    body = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"environment": "production", "image": "i:1", "database": spec["database"]},
    }
    servers_full = {"main": {**servers["main"], "environments": ("production",)}}
    assert "S5" in [v.rule for v in webhook.review(body, servers_full, others).violations]


def test_reconcile_halts_on_a_reserved_name() -> None:
    with pytest.raises(Halt) as caught:
        _resolve(app(dbname="template0"))
    (cond,) = caught.value.conds
    assert (cond.type, cond.status, cond.reason) == (names.DATABASE_READY, "False", ownership.RESERVED_NAME)
    assert caught.value.stalled


def test_admission_refuses_a_reserved_name_with_or_without_its_server() -> None:
    body = {
        "metadata": {"name": "gb", "namespace": "shop"},
        "spec": {
            "environment": "testing",
            "image": "i:1",
            "database": {"server": "main", "name": "postgres"},
        },
    }
    servers = {"main": inventory.server_entry({"host": "pg.internal", "environments": ["testing"]})}
    for known in (servers, {}):
        assert [v.rule for v in webhook.review(body, known, []).violations] == [ownership.RESERVED_NAME]
