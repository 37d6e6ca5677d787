"""`kubectl explain` answers for every field: each property of both CRDs, spec and status, has a
description, and a description that states a default states the schema's own default."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from flaskops import names

ROOT = Path(__file__).resolve().parents[2]
PLURALS = (names.FLASKAPP_PLURAL, names.POSTGRESSERVER_PLURAL)


def schema_of(plural: str) -> Mapping[str, Any]:
    doc = yaml.safe_load((ROOT / "crds" / f"{plural}.{names.GROUP}.yaml").read_text())
    version = next(v for v in doc["spec"]["versions"] if v["name"] == names.VERSION)
    return version["schema"]["openAPIV3Schema"]


def fields(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every property below node as (dotted path, schema), descending into array items (`[]`), the way
    `kubectl explain` lists them. Free-form maps (additionalProperties) have no named fields."""
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}"
        yield here, sub
        yield from fields(sub, here)
        if isinstance(sub.get("items"), Mapping):
            yield from fields(sub["items"], f"{here}[]")


def render_default(value: Any) -> str:
    """A default as a description writes it: 2, wsgi:app, true, [flask, db, upgrade]."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(render_default(v) for v in value) + "]"
    return str(value)


@pytest.mark.parametrize("plural", PLURALS)
def test_every_field_has_a_description(plural: str) -> None:
    walked = list(fields(schema_of(plural), plural))
    missing = [
        path
        for path, sub in walked
        # The API server forbids anything but name/generateName under the root metadata; kubectl explain
        # shows ObjectMeta's own description there.
        if path != f"{plural}.metadata" and not str(sub.get("description") or "").strip()
    ]
    # The walk must reach spec and status (an empty walk would pass vacuously).
    assert any(".spec." in p for p, _ in walked) and any(".status." in p for p, _ in walked)
    assert not missing, f"fields without a description (kubectl explain says <no description>): {missing}"


@pytest.mark.parametrize("plural", PLURALS)
def test_a_described_default_is_the_schema_default(plural: str) -> None:
    """One source of truth: the schema's `default` is what the API server applies, so every field with a
    scalar or list default names exactly that value in its description ("Default 2"); an object's default
    is stated by its fields."""
    wrong = []
    for path, sub in fields(schema_of(plural), plural):
        if "default" not in sub or isinstance(sub["default"], dict):  # objects: their fields say it
            continue
        expected = f"Default {render_default(sub['default'])}"
        if expected not in sub.get("description", ""):
            wrong.append(f"{path}: description lacks {expected!r}")
    assert not wrong, wrong


def test_the_walk_finds_an_undescribed_field() -> None:
    """The walker sees nested and array-item fields, so the tests above can fail."""
    schema = {
        "properties": {
            "spec": {
                "description": "d",
                "properties": {"list": {"description": "d", "items": {"properties": {"x": {}}}}},
            }
        }
    }
    found = {p: s for p, s in fields(schema, "T")}
    assert set(found) == {"T.spec", "T.spec.list", "T.spec.list[].x"}
    assert "description" not in found["T.spec.list[].x"]
