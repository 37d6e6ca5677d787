"""Spec size (issue 11): the CRD bounds every list, map and string a user can grow, so no copy of the spec
(kubectl's last-applied annotation, kopf's last-handled-configuration, an admission review carrying the
object twice) outgrows the API server's limits — a FlaskApp at every bound applies, reconciles and
deletes like a small one, and one past a bound is refused naming the field."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
import yaml
from e2e_support import Apps, flaskapp

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e

ROOT_CRD = "crds/flaskapps.flaskops.dev.yaml"


def _largest(name: str, ns: str, server: str) -> dict[str, Any]:
    """A FlaskApp with every bounded field at its bound (about 140 KB of spec)."""

    def mapping(prefix: str) -> dict[str, str]:
        # Valid annotation keys near the 253-character bound: a DNS subdomain prefix, a name of <= 63.
        domain = ".".join(["d" * 60] * 3) + ".com"
        return {f"{domain}/{prefix}-{i:02d}-" + "k" * 50: "v" * 1024 for i in range(16)}

    body = flaskapp(
        name,
        ns,
        server=server,
        environment="testing",
        dbname=f"big_{secrets.token_hex(3)}",
        env=[{"name": f"BIG_{i:02d}_" + "X" * 240, "value": "y" * 1024} for i in range(64)],
        podAnnotations=mapping("pod"),
        migrations={
            "podAnnotations": mapping("job"),
            "command": ["flask", "db", "upgrade", *["z" * 1024] * 13],
        },
    )
    body["spec"]["database"]["deletionPolicy"] = "Delete"  # kopf's finalizer must come off at the end
    return body


@pytest.mark.usefixtures("operator")
def test_an_app_at_every_bound_applies_reconciles_and_deletes(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    body = _largest("huge", ns, make_server(["development", "testing"]))
    size = len(json.dumps(body["spec"]))
    assert 120_000 < size < 200_000, size
    # Client-side apply: kubectl keeps a copy of the whole object in an annotation of its own.
    apps.apply(body)
    apps.wait_reason(ns, "huge", names.DATABASE_READY, "Provisioned", timeout=120)

    # The operator keeps no copy of the spec on the object (kopf's last-handled-configuration would be a
    # second one, beside kubectl's, against the 256 KiB limit on all annotations).
    annotations = apps.get(ns, "huge")["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith(f"{names.GROUP}/")], list(annotations)

    # A change reaches the reconcile: the Migrated condition is judged for the new generation.
    body["spec"]["env"][0]["value"] = "w" * 1024
    apps.apply(body)
    generation = apps.get(ns, "huge")["metadata"]["generation"]

    def observed() -> bool:
        if apps.get(ns, "huge")["status"].get("observedGeneration") != generation:
            raise NotYet(f"generation {generation} not observed yet")
        return True

    wait_for(observed, timeout=60, what="the new generation reconciled")

    kube.kubectl("delete", "flaskapp", "huge", "-n", ns, "--wait=false")

    def gone() -> bool:
        out = kube.kubectl("get", "flaskapp", "huge", "-n", ns, "--ignore-not-found", "-o", "name")
        if out.stdout.strip():
            raise NotYet("still there (Terminating?)")
        return True

    wait_for(gone, timeout=90, what="the largest app to be deleted (finalizer removed)")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.update(env=[{"name": f"V{i}", "value": "x"} for i in range(65)]), "spec.env"),
        (lambda s: s.update(env=[{"name": "V", "value": "x" * 1025}]), "spec.env[0]"),
        (lambda s: s.update(podAnnotations={f"a{i}": "x" for i in range(17)}), "spec.podAnnotations"),
        (lambda s: s.update(podLabels={"k" * 254: "x"}), "spec.podLabels"),
        (lambda s: s.update(migrations={"command": ["x"] * 17}), "spec.migrations.command"),
        (lambda s: s.update(imagePullSecrets=[{"name": f"s{i}"} for i in range(9)]), "spec.imagePullSecrets"),
    ],
    ids=["env-items", "env-value", "annotations", "label-key", "command", "pull-secrets"],
)
def test_a_spec_past_a_bound_is_refused_naming_the_field(
    kube: Kube, ns: str, mutate: Any, field: str, crds: None
) -> None:
    body = flaskapp("toolarge", ns, server="main", environment="testing")
    mutate(body["spec"])
    out = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert out.returncode != 0
    assert field in out.stderr, out.stderr
