"""The admission review on plain data: refusals name the rule, advice comes as warnings."""

from flaskops import inventory
from flaskops.webhook import review

SERVERS = {
    "main": inventory.server_entry({"host": "pg.internal", "environments": ["production"]}),
    "scratch": inventory.server_entry(
        {"host": "pg-dev.internal", "environments": ["development", "testing"]}
    ),
}


def body(env="production", server="main", name="guestbook", **spec):
    return {
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "environment": env,
            "image": "i:1",
            "database": {"server": server, **spec.pop("db", {})},
            **spec,
        },
    }


def test_safe_production_app_is_allowed_with_advice():
    r = review(body(replicas=1), SERVERS, [])
    assert r.allowed
    assert any("replicas" in w for w in r.warnings)
    assert any("resources" in w for w in r.warnings)


def test_test_database_in_production_is_refused():
    r = review(body(db={"name": "guestbook_test"}), SERVERS, [])
    assert not r.allowed
    assert [v.rule for v in r.violations] == ["S1"]


def test_environment_not_admitted_by_server():
    r = review(body(env="development"), SERVERS, [])
    assert [v.rule for v in r.violations] == ["S4"]


def test_dev_host_in_production():
    r = review(body(server="scratch"), SERVERS, [])
    assert {v.rule for v in r.violations} == {"S2", "S4"}


def test_shared_database_across_environments():
    dev = inventory.app_entry(
        "shop", "old", {"environment": "testing", "database": {"server": "x", "name": "gb"}}, {}
    )
    dev["recorded"] = {"host": "pg.internal", "port": 5432, "name": "gb"}
    others = inventory.other_apps("shop", "guestbook", [dev], {})
    r = review(body(db={"name": "gb"}), SERVERS, others)
    assert [v.rule for v in r.violations] == ["S5"]


def test_delete_policy_in_production_is_refused():
    r = review(body(db={"deletionPolicy": "Delete"}), SERVERS, [])
    assert not r.allowed


def test_unknown_server_is_a_warning_not_a_refusal():
    r = review(body(server="nope"), SERVERS, [])
    assert r.allowed and any("nope" in w for w in r.warnings)


def test_a_provisioned_app_gets_no_existing_secret_advice():
    # The README's own example (database.server, no name) once drew the existingSecret warning.
    for spec in ({}, {"db": {"name": "shop_main"}}):
        r = review(body(resources={"requests": {"cpu": "1"}}, **spec), SERVERS, [])
        assert r.allowed and not any("existingSecret" in w for w in r.warnings), r.warnings


def test_a_reserved_database_name_is_refused():
    r = review(body(db={"name": "template1"}), SERVERS, [])
    assert [v.rule for v in r.violations] == ["ReservedName"]


def test_a_statement_timeout_not_below_the_worker_timeout_is_refused():
    short = {"workers": 2, "threads": 1, "timeout": 5, "gracefulTimeout": 5}
    app = body(gunicorn=short)
    app["spec"]["env"] = [
        {"name": "DB_STATEMENT_TIMEOUT_MS", "value": "15000"}
    ]  # body's env= is the environment
    r = review(app, SERVERS, [])
    assert [v.rule for v in r.violations] == ["TimeoutsContradict"]
    assert "spec.gunicorn.timeout=5" in r.violations[0].message
    assert "DB_STATEMENT_TIMEOUT_MS=15000" in r.violations[0].message
    # Without the variable the operator derives one below the timeout: nothing to refuse.
    assert review(body(gunicorn=short), SERVERS, []).violations == []


# --- an anonymous caller (no client certificate of the API server): only the request and the server's own
# configuration may shape the answer, so a forged review learns nothing of other namespaces.


def test_an_anonymous_review_answers_the_same_whether_another_app_uses_the_database():
    dev = inventory.app_entry(
        "other-team", "old", {"environment": "testing", "database": {"server": "x", "name": "gb"}}, {}
    )
    dev["recorded"] = {"host": "pg.internal", "port": 5432, "name": "gb"}
    others = inventory.other_apps("shop", "guestbook", [dev], {})
    used = review(body(db={"name": "gb"}), SERVERS, others, authenticated=False)
    free = review(body(db={"name": "gb"}), SERVERS, [], authenticated=False)
    assert used.allowed and (used.violations, used.warnings) == (free.violations, free.warnings)
    # The API server's own review (authenticated) still refuses it at admission.
    assert [v.rule for v in review(body(db={"name": "gb"}), SERVERS, others).violations] == ["S5"]


def test_an_anonymous_review_does_not_judge_a_namespace_by_its_labels():
    gated = {
        "gold": inventory.server_entry(
            {
                "host": "pg.internal",
                "environments": ["production"],
                "allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"tier": "gold"}}},
            }
        )
    }
    answers = [
        review(body(server="gold", replicas=2, resources={"limits": {"cpu": "1"}}), gated, [], **kw)
        for kw in (
            {"namespace_labels": {"tier": "gold"}, "authenticated": False},
            {"namespace_labels": {"tier": "bronze"}, "authenticated": False},
            {"namespace_labels": None, "authenticated": False},
        )
    ]
    assert all(a.allowed for a in answers) and len({repr(a.warnings) for a in answers}) == 1
    refused = review(body(server="gold"), gated, [], namespace_labels={"tier": "bronze"})
    assert not refused.allowed  # authenticated: refused at admission, as before


def test_an_anonymous_review_still_refuses_what_the_request_alone_shows():
    r = review(body(db={"name": "guestbook_test"}), SERVERS, [], authenticated=False)
    assert [v.rule for v in r.violations] == ["S1"]
    r = review(body(env="development"), SERVERS, [], authenticated=False)
    assert [v.rule for v in r.violations] == ["S4"]
