"""The typed spec view, and its defaults against the CRD schema (one source of truth, checked for drift)."""

from pathlib import Path

import yaml

from flaskops import names, spec

ROOT = Path(__file__).resolve().parents[2]


def crd(plural):
    doc = yaml.safe_load((ROOT / "crds" / f"{plural}.{names.GROUP}.yaml").read_text())
    version = next(v for v in doc["spec"]["versions"] if v["name"] == names.VERSION)
    return doc, version["schema"]["openAPIV3Schema"]


def test_crd_names_match_the_contract():
    for plural, kind, scope in (
        (names.FLASKAPP_PLURAL, names.FLASKAPP_KIND, "Namespaced"),
        (names.POSTGRESSERVER_PLURAL, names.POSTGRESSERVER_KIND, "Cluster"),
    ):
        doc, _ = crd(plural)
        assert doc["spec"]["group"] == names.GROUP
        assert doc["spec"]["names"]["kind"] == kind
        assert doc["spec"]["scope"] == scope


def test_defaults_match_the_crd_schema():
    _, schema = crd(names.FLASKAPP_PLURAL)
    s = schema["properties"]["spec"]["properties"]
    assert s["replicas"]["default"] == spec.DEFAULT_REPLICAS
    assert s["wsgi"]["default"] == spec.DEFAULT_WSGI
    assert s["port"]["default"] == spec.DEFAULT_PORT
    assert {k: v["default"] for k, v in s["gunicorn"]["properties"].items()} == spec.DEFAULT_GUNICORN
    mig = s["migrations"]["properties"]
    assert tuple(mig["command"]["default"]) == spec.DEFAULT_MIGRATION_COMMAND
    assert mig["activeDeadlineSeconds"]["default"] == spec.DEFAULT_ACTIVE_DEADLINE_SECONDS
    assert mig["backoffLimit"]["default"] == spec.DEFAULT_BACKOFF_LIMIT
    assert s["probes"]["properties"]["readinessPath"]["default"] == spec.DEFAULT_READINESS_PATH
    assert s["probes"]["properties"]["livenessPath"]["default"] == spec.DEFAULT_LIVENESS_PATH
    db = s["database"]["properties"]
    assert db["deletionPolicy"]["default"] == spec.DEFAULT_DELETION_POLICY
    assert db["existingSecret"]["properties"]["key"]["default"] == spec.DEFAULT_EXISTING_SECRET_KEY
    key_ref = s["secretKey"]["properties"]["secretRef"]["properties"]["key"]
    assert key_ref["default"] == spec.DEFAULT_SECRET_KEY_KEY
    assert s["environment"]["enum"] == list(names.ENVIRONMENTS)
    _, server = crd(names.POSTGRESSERVER_PLURAL)
    ps = server["properties"]["spec"]["properties"]
    assert ps["port"]["default"] == spec.DEFAULT_PG_PORT
    assert ps["sslMode"]["default"] == spec.DEFAULT_SSLMODE


def test_every_status_field_the_operator_writes_is_declared():
    # Undeclared status fields are pruned by the API server and cause patch loops.
    _, schema = crd(names.FLASKAPP_PLURAL)
    declared = set(schema["properties"]["status"]["properties"])
    written = {
        "observedGeneration",
        "desiredImage",
        "migratedImage",
        "servingImage",
        "migration",
        "database",
        "replicas",
        "readyReplicas",
        "conditions",
    }
    assert written <= declared
    mig = set(schema["properties"]["status"]["properties"]["migration"]["properties"])
    assert {"jobName", "image", "hash", "startedAt", "completedAt", "outcome"} <= mig


def test_parse_the_example_flaskapp():
    body = yaml.safe_load((ROOT / "examples" / "flaskapp.yaml").read_text())
    body["metadata"]["namespace"] = "shop"
    app = spec.parse_flaskapp(body)
    assert app.environment == "production"
    assert app.database.server == "main"
    assert app.migrations.command == ("flask", "db", "upgrade")
    assert app.gunicorn.graceful_timeout == 25
    assert app.readiness_path == "/readyz"


def test_parse_applies_defaults_to_a_minimal_object():
    app = spec.parse_flaskapp(
        {
            "metadata": {"name": "a", "namespace": "n", "generation": 3},
            "spec": {"environment": "testing", "image": "i:1", "database": {"server": "s"}},
        }
    )
    assert app.replicas == spec.DEFAULT_REPLICAS
    assert app.wsgi == spec.DEFAULT_WSGI
    assert app.generation == 3
    assert app.database.deletion_policy == "Retain"
    assert app.secret_key_ref is None
