"""Properties over generated FlaskApp specs: the pure planning code never raises on schema-valid input, and
every refusal names its rule and the offending value."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flaskops import inventory, manifests, names, safety, spec, webhook
from flaskops.postgres import naming
from flaskops.postgres import url as dburl
from tests.operator.flaskapp_strategies import DB_WORDS, body, dns_label, valid_spec

SERVERS = {
    "prod": inventory.server_entry({"host": "pg.internal", "environments": ["production"]}),
    "nonprod": inventory.server_entry(
        {"host": "pg-nonprod.internal", "environments": ["development", "testing"]}
    ),
    "dev-box": inventory.server_entry(
        {"host": "dev-box.internal", "port": 6432, "environments": ["development"]}
    ),
}
RULE = re.compile(r"^(S[1-6]|deletionPolicy|TimeoutsContradict)$")

specs = valid_spec(servers=sorted(SERVERS), existing_secrets=["legacy-db"])
identifier = st.lists(st.sampled_from(DB_WORDS), min_size=1, max_size=3).map("_".join) | st.text(
    "abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=30
)
identities = st.builds(
    dburl.DatabaseIdentity,
    host=identifier,
    port=st.integers(1, 65535),
    dbname=identifier,
    user=identifier,
)


def other_app(namespace: str, name: str, s: dict[str, Any]) -> dict[str, Any]:
    return inventory.app_entry(namespace, name, s, {}, "2026-01-01T00:00:00Z")


# Generating whole specs is slower than Hypothesis expects on a loaded 2-core CI machine; the code under test
# is pure and fast, so neither the deadline nor the generation-speed health check says anything about it.
SLOW_DATA = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW_DATA
@given(name=dns_label, namespace=dns_label, s=specs, neighbours=st.lists(specs, max_size=3))
def test_planning_never_raises_and_refusals_name_a_rule(
    name: str, namespace: str, s: dict[str, Any], neighbours: list[dict[str, Any]]
) -> None:
    b = body(name, namespace, s)
    b["metadata"].update(uid="0000-1111", generation=1)
    app = spec.parse_flaskapp(b)
    entries = [other_app(namespace, f"other-{i}", n) for i, n in enumerate(neighbours)]
    others = inventory.other_apps(namespace, name, entries, SERVERS)

    result = webhook.review(b, SERVERS, others)
    assert result.allowed == (not result.violations)
    for v in result.violations:
        assert RULE.match(v.rule), v
        assert v.message.strip()
        assert str(v).startswith(f"{v.rule}: ")
    message = safety.summary(result.violations)
    assert all(v.rule in message for v in result.violations)
    if s["environment"] == "production":
        # Advice for production is a warning, never a refusal.
        assert all(v.rule != "deletionPolicy" for v in result.violations)

    # Every child the reconcile would write can be built from it.
    for retry in ("", "1"):
        job = manifests.migration_job(app, retry=retry)
        assert job["metadata"]["name"].startswith(f"{name}-migrate-")
        assert len(job["metadata"]["name"]) <= 63
    dep = manifests.deployment(app, app.image, manifests.secrets_checksum({"a": "b"}))
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == s["image"]
    env_names = [e["name"] for e in container["env"]]
    assert env_names[:3] == ["APP_ENV", "DATABASE_URL", "SECRET_KEY"]
    assert len(env_names) == len(set(env_names)), "an operator variable is set twice"
    assert manifests.service(app)["spec"]["ports"][0]["targetPort"] in (app.port, "http")
    manifests.gunicorn_command(app)
    for component, secret_name in (
        ("db", names.db_secret_name(name)),
        ("key", names.secret_key_secret_name(name)),
    ):
        manifests.secret(app, secret_name, component, {"K": "v"})
    if app.database.server and not app.database.name:
        dbname, role = naming.default_names(namespace, name)
        assert dbname == role and len(dbname.encode()) <= naming.MAX_IDENTIFIER_BYTES


@given(environment=st.sampled_from(names.ENVIRONMENTS), identity=identities)
def test_token_rules_fire_exactly_when_a_token_is_present(
    environment: str, identity: dburl.DatabaseIdentity
) -> None:
    found = {v.rule: v for v in safety.check_pairing(environment, identity, rules=("S1", "S2", "S3"))}
    words = {t for part in (identity.host, identity.dbname, identity.user) for t in safety.tokens(part)}
    assert ("S1" in found) == (environment != "testing" and bool(words & safety.TEST_TOKENS))
    assert ("S2" in found) == (environment == "production" and bool(words & safety.NON_PRODUCTION_TOKENS))
    assert ("S3" in found) == (environment != "production" and bool(words & safety.PRODUCTION_TOKENS))
    for v in found.values():
        # The message names the offending value and the token in it, so a person can fix it.
        assert "has the token '" in v.message


@given(word=st.sampled_from(["contest", "latest", "product", "delivery", "devices", "protest"]))
def test_words_containing_a_token_are_not_that_token(word: str) -> None:
    identity = dburl.DatabaseIdentity("pg.internal", 5432, f"{word}_db", f"{word}_db")
    for environment in names.ENVIRONMENTS:
        assert safety.check_pairing(environment, identity, rules=("S1", "S2", "S3")) == []


@SLOW_DATA
@given(s=specs, server_envs=st.sets(st.sampled_from(names.ENVIRONMENTS), min_size=1))
def test_server_environments_rule(s: dict[str, Any], server_envs: set[str]) -> None:
    identity = dburl.DatabaseIdentity("pg.internal", 5432, "shop", "shop")
    found = safety.check_pairing(
        s["environment"], identity, server_name="main", server_environments=server_envs
    )
    assert ("S4" in {v.rule for v in found}) == (s["environment"] not in server_envs)


# A literal value, a reference (never both: Kubernetes refuses such an EnvVar), or neither (empty).
statement_timeout = st.one_of(
    st.just({"name": manifests.STATEMENT_TIMEOUT_VAR}),
    st.fixed_dictionaries(
        {
            "name": st.just(manifests.STATEMENT_TIMEOUT_VAR),
            "value": st.integers(0, 200_000).map(str) | st.sampled_from(["", "soon", " 900"]),
        }
    ),
    st.just(
        {
            "name": manifests.STATEMENT_TIMEOUT_VAR,
            "valueFrom": {"configMapKeyRef": {"name": "timeouts", "key": "statement"}},
        }
    ),
)
timeout_specs = valid_spec(
    servers=sorted(SERVERS),
    extra={
        "env": st.lists(statement_timeout, max_size=1),
        "gunicorn": st.fixed_dictionaries({"timeout": st.integers(1, 20) | st.integers(1, 3600)}).map(
            lambda g: {**g, "gracefulTimeout": min(g["timeout"], 25)}
        ),
    },
)


@given(s=timeout_specs)
def test_an_admitted_app_never_gets_a_statement_timeout_gunicorn_outlasts(s: dict[str, Any]) -> None:
    """For any spec the webhook admits, the statement timeout the web pods run with (the operator's, or
    a literal of the user's, else the app's 15 s default) is below the worker timeout, unless the user
    chose none (0) or a value the operator cannot see (valueFrom)."""
    b = body("app", "ns", s)
    b["metadata"].update(uid="0000-1111", generation=1)
    app = spec.parse_flaskapp(b)
    refused = any(v.rule == "TimeoutsContradict" for v in webhook.review(b, SERVERS, []).violations)
    assert refused == (manifests.statement_timeout_conflict(app) is not None)
    if refused:
        return
    (container,) = manifests.deployment(app, app.image, "sum")["spec"]["template"]["spec"]["containers"]
    given = [e for e in container["env"] if e["name"] == manifests.STATEMENT_TIMEOUT_VAR]
    assert len(given) <= 1, "the variable is set twice"
    if given and "valueFrom" in given[0]:
        return  # the user's to judge
    raw = str(given[0].get("value", "")).strip() if given else ""
    if raw and not raw.isdigit():
        return  # the app itself refuses a non-number at start
    effective = int(raw) if raw else manifests.APP_STATEMENT_TIMEOUT_MS
    assert effective == 0 or effective < app.gunicorn.timeout * 1000, (effective, app.gunicorn.timeout)
