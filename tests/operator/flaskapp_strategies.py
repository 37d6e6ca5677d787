"""Hypothesis strategies for FlaskApp specs: schema-valid ones, and invalid ones that know which field is wrong.

Shared by the pure property tests (tests/operator/test_properties.py) and the end-to-end fault suite
(tests/e2e/test_faults.py), which sends them through the real API server.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from flaskops import names
from flaskops.spec import DEFAULT_GUNICORN

# Words a database name is built from: the pairing rules' tokens, and words that only contain them.
DB_WORDS = (
    "guestbook",
    "shop",
    "orders",
    "test",
    "testing",
    "contest",
    "latest",
    "prod",
    "production",
    "product",
    "live",
    "delivery",
    "dev",
    "devices",
    "staging",
    "ci",
    "local",
    "sandbox",
    "tmp",
    "scratch",
)

# Pass-through content the CRD schema accepts but the API server refuses in a child (Job or Deployment).
BAD_CPU = "lots"
BAD_LABEL_KEY = "bad key!"
RESERVED_ENV = ("APP_ENV", "DATABASE_URL", "SECRET_KEY", "SECRET_KEY_FALLBACKS")

dns_label = st.from_regex(r"\A[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,8}){0,2}\Z")
db_name = st.lists(st.sampled_from(DB_WORDS), min_size=1, max_size=3).map("_".join)
image = st.builds(
    "{}/{}:{}".format,
    st.sampled_from(["registry.example", "ghcr.io/acme"]),
    dns_label,
    st.from_regex(r"\A[0-9]{1,2}\.[0-9]{1,2}(-rc[0-9])?\Z"),
)
label_key = st.sampled_from(["team", "tier", "example.com/owner", "sidecar.istio.io/inject"])
label_value = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\Z")
env_var = st.fixed_dictionaries(
    {"name": st.from_regex(r"\A[A-Z][A-Z0-9_]{0,12}\Z").filter(lambda n: n not in RESERVED_ENV)},
    optional={"value": st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=20)},
)


@st.composite
def gunicorn(draw: st.DrawFn) -> dict[str, int]:
    timeout = draw(st.integers(5, 120))
    out: dict[str, int] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "workers": st.integers(1, 8),
                "threads": st.integers(1, 8),
                "timeout": st.just(timeout),
                "gracefulTimeout": st.integers(1, timeout),
                "maxRequests": st.integers(0, 5000),
            },
        )
    )
    # The API server defaults the other one (timeout 30, gracefulTimeout 25) before the CEL rule
    # gracefulTimeout <= timeout runs: a lone timeout below 25 is refused, so keep the pair consistent.
    effective = {**DEFAULT_GUNICORN, **out}
    if effective["gracefulTimeout"] > effective["timeout"]:
        out["gracefulTimeout"] = effective["timeout"]
    return out


@st.composite
def valid_spec(
    draw: st.DrawFn,
    *,
    servers: Sequence[str],
    existing_secrets: Sequence[str] = (),
    extra: Mapping[str, st.SearchStrategy[Any]] | None = None,
) -> dict[str, Any]:
    """A spec the CRD schema accepts (its CEL rules included); `servers` are PostgresServer names."""
    environment = draw(st.sampled_from(names.ENVIRONMENTS))
    database: dict[str, Any]
    if existing_secrets and draw(st.booleans()):
        database = {"existingSecret": {"name": draw(st.sampled_from(existing_secrets))}}
    else:
        database = {"server": draw(st.sampled_from(servers))}
        if draw(st.booleans()):
            database["name"] = draw(db_name)
        if environment != "production":
            database["deletionPolicy"] = draw(st.sampled_from(["Retain", "Delete"]))
    optional: dict[str, st.SearchStrategy[Any]] = {
        "replicas": st.integers(0, 3),
        "gunicorn": gunicorn(),
        "port": st.integers(1024, 65535),
        "env": st.lists(env_var, max_size=3, unique_by=lambda e: e["name"]),
        "podLabels": st.dictionaries(label_key | st.just(BAD_LABEL_KEY), label_value, max_size=2),
        "resources": st.sampled_from(
            [{}, {"requests": {"cpu": "50m", "memory": "64Mi"}}, {"limits": {"cpu": BAD_CPU}}]
        ),
        "podAnnotations": st.dictionaries(label_key, st.text(max_size=10), max_size=2),
        "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
        "migrations": st.fixed_dictionaries(
            {}, optional={"enabled": st.booleans(), "activeDeadlineSeconds": st.integers(10, 3600)}
        ),
        "secretKey": st.fixed_dictionaries({}, optional={"rotation": st.from_regex(r"\A[a-z0-9-]{1,12}\Z")}),
        "probes": st.fixed_dictionaries(
            {}, optional={"readinessPath": st.sampled_from(["/readyz", "/health/ready"])}
        ),
        **(extra or {}),
    }
    spec = {"environment": environment, "image": draw(image), "database": database}
    spec.update(draw(st.fixed_dictionaries({}, optional=optional)))
    return spec


def _set(path: Sequence[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(body: dict[str, Any]) -> None:
        node = body
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return apply


def _both_sources(body: dict[str, Any]) -> None:
    body["spec"]["database"] = {"server": "main", "existingSecret": {"name": "legacy-db"}}


def _no_source(body: dict[str, Any]) -> None:
    body["spec"]["database"] = {"name": "orphan"}


def _delete_in_production(body: dict[str, Any]) -> None:
    body["spec"]["environment"] = "production"
    body["spec"]["database"] = {"server": "main", "deletionPolicy": "Delete"}


def _graceful_above_timeout(body: dict[str, Any]) -> None:
    body["spec"]["gunicorn"] = {"timeout": 10, "gracefulTimeout": 20}


def _name_with_existing_secret(body: dict[str, Any]) -> None:
    body["spec"]["database"] = {"existingSecret": {"name": "legacy-db"}, "name": "shop"}


def _rotation_with_secret_ref(body: dict[str, Any]) -> None:
    body["spec"]["secretKey"] = {"secretRef": {"name": "mine"}, "rotation": "r2"}


def _drop_environment(body: dict[str, Any]) -> None:
    body["spec"].pop("environment", None)


@dataclass(frozen=True)
class Mutation:
    """One way to break the schema, and the field path the API server's refusal must name."""

    field: str
    apply: Callable[[dict[str, Any]], None]
    label: str


MUTATIONS = (
    Mutation("spec.environment", _set(["spec", "environment"], "staging"), "unknown environment"),
    Mutation("spec.environment", _set(["spec", "environment"], "Production"), "environment case"),
    Mutation("spec.environment", _drop_environment, "environment missing"),
    Mutation("spec.replicas", _set(["spec", "replicas"], -1), "negative replicas"),
    Mutation("spec.replicas", _set(["spec", "replicas"], 5000), "too many replicas"),
    Mutation("spec.database", _both_sources, "server and existingSecret"),
    Mutation("spec.database", _no_source, "neither server nor existingSecret"),
    Mutation("spec.database.deletionPolicy", _delete_in_production, "Delete in production"),
    Mutation(
        "spec.database.deletionPolicy", _set(["spec", "database", "deletionPolicy"], "Forever"), "policy"
    ),
    Mutation("spec.database.name", _set(["spec", "database", "name"], "Shop-DB"), "database name pattern"),
    Mutation("spec.database.name", _set(["spec", "database", "name"], "d" * 64), "database name length"),
    Mutation("spec.database.name", _name_with_existing_secret, "name with existingSecret"),
    Mutation("spec.image", _set(["spec", "image"], "registry.example/app:1 latest"), "image with a space"),
    Mutation("spec.image", _set(["spec", "image"], ""), "empty image"),
    Mutation("spec.port", _set(["spec", "port"], 80), "privileged port"),
    Mutation("spec.gunicorn.workers", _set(["spec", "gunicorn", "workers"], 0), "no workers"),
    Mutation("spec.gunicorn.gracefulTimeout", _graceful_above_timeout, "graceful above timeout"),
    Mutation("spec.wsgi", _set(["spec", "wsgi"], "not a target"), "wsgi target"),
    Mutation("spec.env[0]", _set(["spec", "env"], [{"name": "DATABASE_URL", "value": "x"}]), "reserved env"),
    Mutation("spec.probes.readinessPath", _set(["spec", "probes", "readinessPath"], "readyz"), "probe path"),
    Mutation(
        "spec.migrations.activeDeadlineSeconds",
        _set(["spec", "migrations", "activeDeadlineSeconds"], 1),
        "deadline too short",
    ),
    Mutation("spec.secretKey.rotation", _rotation_with_secret_ref, "rotation with secretRef"),
    Mutation("spec.colour", _set(["spec", "colour"], "blue"), "unknown field"),
    Mutation("metadata.name", _set(["metadata", "name"], "Guest_Book"), "name not a DNS label"),
    Mutation("metadata.name", _set(["metadata", "name"], "9lives"), "name starts with a digit"),
    Mutation("metadata.name", _set(["metadata", "name"], "a" * 41), "name too long"),
)


@dataclass(frozen=True)
class Case:
    """A FlaskApp body, and the field paths a schema refusal must name (empty: the schema accepts it)."""

    body: dict[str, Any]
    mutations: tuple[Mutation, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.mutations

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(m.field for m in self.mutations)


def body(name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.FLASKAPP_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": copy.deepcopy(dict(spec)),
    }


@st.composite
def case(
    draw: st.DrawFn,
    *,
    name: str,
    namespace: str,
    servers: Sequence[str],
    existing_secrets: Sequence[str] = (),
    extra: Mapping[str, st.SearchStrategy[Any]] | None = None,
) -> Case:
    """A valid spec, broken by up to two mutations about half of the time."""
    b = body(
        name, namespace, draw(valid_spec(servers=servers, existing_secrets=existing_secrets, extra=extra))
    )
    mutations: list[Mutation] = draw(
        st.one_of(st.just([]), st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=2, unique=True))
    )
    for m in mutations:
        m.apply(b)
    return Case(b, tuple(mutations))


def refused_by_children(spec: Mapping[str, Any]) -> set[str]:
    """Which children the API server will refuse for this schema-valid spec: "Job" and/or "Deployment"."""
    bad_resources = (spec.get("resources") or {}).get("limits", {}).get("cpu") == BAD_CPU
    bad_labels = BAD_LABEL_KEY in (spec.get("podLabels") or {})
    out = set()
    if bad_resources:
        out.update({"Job", "Deployment"})
    if bad_labels:
        out.add("Deployment")
    return out
