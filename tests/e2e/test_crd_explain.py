"""What `kubectl explain` reads — the API server's published OpenAPI v3 for flaskops.dev — describes every
field of both kinds, so the CRD files' descriptions survive publication."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import wait_for

pytestmark = pytest.mark.e2e


def published_fields(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}"
        yield here, sub
        yield from published_fields(sub, here)
        if isinstance(sub.get("items"), Mapping):
            yield from published_fields(sub["items"], f"{here}[]")


def published_schema(kube: Kube, kind: str) -> dict[str, Any]:
    """The kind's schema as the API server publishes it, once published: an Established CRD's OpenAPI
    document appears a moment later (the API server's OpenAPI controller works asynchronously)."""
    # Published as <reversed group>.<version>.<Kind>, e.g. dev.flaskops.v1alpha1.FlaskApp.
    key = f"{'.'.join(reversed(names.GROUP.split('.')))}.{names.VERSION}.{kind}"

    def fetch() -> dict[str, Any]:
        raw = kube.kubectl("get", "--raw", f"/openapi/v3/apis/{names.GROUP}/{names.VERSION}").stdout
        return dict(json.loads(raw)["components"]["schemas"][key])

    return wait_for(fetch, timeout=60, what=f"the API server to publish the OpenAPI schema of {kind}")


@pytest.mark.parametrize("kind", [names.FLASKAPP_KIND, names.POSTGRESSERVER_KIND])
def test_published_schema_describes_every_field(kube: Kube, crds: None, kind: str) -> None:
    schema = published_schema(kube, kind)
    walked = list(published_fields(schema, kind))
    assert any(p.startswith(f"{kind}.status.") for p, _ in walked), sorted(p for p, _ in walked)
    # metadata is replaced by a reference to ObjectMeta, which Kubernetes describes itself.
    missing = [p for p, sub in walked if not sub.get("description") and "$ref" not in json.dumps(sub)]
    assert not missing, missing


def test_kubectl_explain_answers_a_nested_field(kube: Kube, crds: None) -> None:
    published_schema(kube, names.FLASKAPP_KIND)
    out = kube.kubectl("explain", f"{names.FLASKAPP_PLURAL}.spec.gunicorn.gracefulTimeout").stdout
    assert "<no description>" not in out
    assert "--graceful-timeout" in out and "Default 25" in out, out
