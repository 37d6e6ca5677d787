"""The CRD schema refuses bad FlaskApps and PostgresServers at `kubectl apply`, naming the field."""

from __future__ import annotations

import copy
import secrets
from typing import Any

import pytest
import yaml

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube

pytestmark = pytest.mark.e2e

VALID_APP: dict[str, Any] = {
    "apiVersion": names.API_VERSION,
    "kind": names.FLASKAPP_KIND,
    "metadata": {"name": "valid"},
    "spec": {"environment": "production", "image": "reg/app:1", "database": {"server": "main"}},
}
VALID_SERVER: dict[str, Any] = {
    "apiVersion": names.API_VERSION,
    "kind": names.POSTGRESSERVER_KIND,
    "metadata": {"name": "valid"},
    "spec": {
        "host": "pg.internal",
        "adminSecretRef": {"namespace": "flaskops-system", "name": "pg-admin"},
        "environments": ["production"],
    },
}


def with_spec(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return body


# (case id, body, text the API server's refusal must contain: the field, and the rule where it has one)
INVALID_APPS = [
    (
        "environment-enum",
        with_spec(VALID_APP, environment="staging"),
        ["spec.environment", "Unsupported value"],
    ),
    ("image-missing", with_spec(VALID_APP, image=None), ["spec.image", "Required value"]),
    ("image-whitespace", with_spec(VALID_APP, image="reg/app 1"), ["spec.image"]),
    ("replicas-negative", with_spec(VALID_APP, replicas=-1), ["spec.replicas"]),
    ("port-privileged", with_spec(VALID_APP, port=80), ["spec.port"]),
    ("wsgi-shape", with_spec(VALID_APP, wsgi="wsgi"), ["spec.wsgi"]),
    ("workers-zero", with_spec(VALID_APP, gunicorn={"workers": 0}), ["spec.gunicorn.workers"]),
    (
        "graceful-above-timeout",
        with_spec(VALID_APP, gunicorn={"timeout": 10, "gracefulTimeout": 20}),
        ["spec.gunicorn.gracefulTimeout", "must not exceed timeout"],
    ),
    ("database-neither", with_spec(VALID_APP, database={"name": "x"}), ["spec.database", "exactly one"]),
    (
        "database-both",
        with_spec(VALID_APP, database={"server": "main", "existingSecret": {"name": "s"}}),
        ["spec.database", "exactly one"],
    ),
    (
        "delete-in-production",
        with_spec(VALID_APP, database={"server": "main", "deletionPolicy": "Delete"}),
        ["spec.database.deletionPolicy", "not allowed for a production"],
    ),
    (
        "database-name-shape",
        with_spec(VALID_APP, database={"server": "main", "name": "Bad-Name"}),
        ["spec.database.name"],
    ),
    (
        "env-overrides-contract",
        with_spec(VALID_APP, env=[{"name": "DATABASE_URL", "value": "postgresql://x"}]),
        ["spec.env[0]", "set by the operator"],
    ),
    (
        "migration-deadline",
        with_spec(VALID_APP, migrations={"activeDeadlineSeconds": 1}),
        ["spec.migrations.activeDeadlineSeconds"],
    ),
    (
        "secret-key-both",
        with_spec(VALID_APP, secretKey={"secretRef": {"name": "k"}, "rotation": "1"}),
        ["spec.secretKey.rotation"],
    ),
    ("probe-path", with_spec(VALID_APP, probes={"readinessPath": "readyz"}), ["spec.probes.readinessPath"]),
]
INVALID_SERVERS = [
    (
        "production-and-testing",
        with_spec(VALID_SERVER, environments=["production", "testing"]),
        ["spec.environments", "admits nothing else"],
    ),
    ("no-environments", with_spec(VALID_SERVER, environments=[]), ["spec.environments"]),
    ("sslmode-enum", with_spec(VALID_SERVER, sslMode="sometimes"), ["spec.sslMode", "Unsupported value"]),
    (
        "admin-ref-missing",
        with_spec(VALID_SERVER, adminSecretRef=None),
        ["spec.adminSecretRef", "Required value"],
    ),
]


def apply(kube: Kube, body: dict[str, Any]) -> Any:
    return kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=False)


@pytest.mark.parametrize(("case", "body", "expected"), INVALID_APPS, ids=[c[0] for c in INVALID_APPS])
def test_invalid_flaskapp_is_refused_naming_the_field(
    kube: Kube, crds: None, ns: str, case: str, body: dict[str, Any], expected: list[str]
) -> None:
    body = copy.deepcopy(body)
    body["metadata"]["namespace"] = ns
    result = apply(kube, body)
    assert result.returncode != 0, f"{case} was accepted"
    for text in expected:
        assert text in result.stderr, result.stderr


@pytest.mark.parametrize(("case", "body", "expected"), INVALID_SERVERS, ids=[c[0] for c in INVALID_SERVERS])
def test_invalid_postgresserver_is_refused_naming_the_field(
    kube: Kube, crds: None, case: str, body: dict[str, Any], expected: list[str]
) -> None:
    body = copy.deepcopy(body)
    body["metadata"]["name"] = f"bad-{secrets.token_hex(3)}"
    result = apply(kube, body)
    assert result.returncode != 0, f"{case} was accepted"
    for text in expected:
        assert text in result.stderr, result.stderr


def test_valid_objects_are_accepted_and_defaulted(kube: Kube, crds: None, ns: str) -> None:
    """The control group: the valid bodies pass, and the API server fills the schema's defaults."""
    body = copy.deepcopy(VALID_APP)
    body["metadata"]["namespace"] = ns
    assert apply(kube, body).returncode == 0
    got = yaml.safe_load(kube.kubectl("get", "flaskapp", "valid", "-n", ns, "-o", "yaml").stdout)
    assert got["spec"]["replicas"] == 2
    assert got["spec"]["gunicorn"]["gracefulTimeout"] == 25
    assert got["spec"]["migrations"]["command"] == ["flask", "db", "upgrade"]
    assert got["spec"]["database"]["deletionPolicy"] == "Retain"
    kube.kubectl("delete", "flaskapp", "valid", "-n", ns, "--wait=false")
