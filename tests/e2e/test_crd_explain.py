"""What `kubectl explain` reads — the API server's published OpenAPI v3 for flaskops.dev — describes every
field of both kinds, so the CRD files' descriptions survive publication."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube

pytestmark = pytest.mark.e2e


def published_fields(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}"
        yield here, sub
        yield from published_fields(sub, here)
        if isinstance(sub.get("items"), Mapping):
            yield from published_fields(sub["items"], f"{here}[]")


@pytest.mark.parametrize("kind", [names.FLASKAPP_KIND, names.POSTGRESSERVER_KIND])
def test_published_schema_describes_every_field(kube: Kube, crds: None, kind: str) -> None:
    raw = kube.kubectl("get", "--raw", f"/openapi/v3/apis/{names.GROUP}/{names.VERSION}").stdout
    schemas = json.loads(raw)["components"]["schemas"]
    # Published as <reversed group>.<version>.<Kind>, e.g. dev.flaskops.v1alpha1.FlaskApp.
    group = ".".join(reversed(names.GROUP.split(".")))
    schema = schemas[f"{group}.{names.VERSION}.{kind}"]
    walked = list(published_fields(schema, kind))
    assert any(p.startswith(f"{kind}.status.") for p, _ in walked), sorted(p for p, _ in walked)
    # metadata is replaced by a reference to ObjectMeta, which Kubernetes describes itself.
    missing = [p for p, sub in walked if not sub.get("description") and "$ref" not in json.dumps(sub)]
    assert not missing, missing


def test_kubectl_explain_answers_a_nested_field(kube: Kube, crds: None) -> None:
    out = kube.kubectl("explain", f"{names.FLASKAPP_PLURAL}.spec.gunicorn.gracefulTimeout").stdout
    assert "<no description>" not in out
    assert "--graceful-timeout" in out and "Default 25" in out, out
