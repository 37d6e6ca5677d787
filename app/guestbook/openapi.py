"""The OpenAPI 3.1 document of /api, assembled from the pydantic models in schemas.py.

Served at ``GET /api/openapi.json``; a copy is checked in as app/openapi.json (a test fails when the
two differ). Regenerate the copy with ``make openapi``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from . import schemas

REF = "#/components/schemas/{model}"
JSON = "application/json"


def _json(model: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": {"$ref": REF.format(model=model)}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _parameter(name: str, where: str, schema: dict[str, Any]) -> dict[str, Any]:
    schema = dict(schema)
    description = schema.pop("description", "")
    schema.pop("title", None)
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


@cache
def document() -> dict[str, Any]:
    """The document as a dict (built once per process; the models do not change at run time)."""
    _, defs = models_json_schema(
        [
            (schemas.NewEntry, "validation"),
            (schemas.Entry, "serialization"),
            (schemas.EntryList, "serialization"),
            (schemas.Error, "serialization"),
        ],
        ref_template=REF,
    )
    components = defs["$defs"]
    limit = schemas.ListQuery.model_json_schema()["properties"]["limit"]
    entry_id = schemas.Entry.model_json_schema()["properties"]["id"]
    invalid = _json("Error", "The request broke a rule; `fields` says which and why.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Guestbook API",
            "version": "1",
            "description": "The flaskops reference app. Errors are JSON `{error, message}`.",
        },
        "paths": {
            "/api/entries": {
                "get": {
                    "operationId": "listEntries",
                    "summary": "The newest entries, newest first.",
                    "parameters": [_parameter("limit", "query", limit)],
                    "responses": {"200": _json("EntryList", "The entries."), "422": invalid},
                },
                "post": {
                    "operationId": "createEntry",
                    "summary": "Sign the guestbook.",
                    "requestBody": {
                        "required": True,
                        "content": {JSON: {"schema": {"$ref": REF.format(model="NewEntry")}}},
                    },
                    "responses": {
                        "201": _json(
                            "Entry",
                            "Created.",
                            {"Location": {"description": "The entry's URL.", "schema": {"type": "string"}}},
                        ),
                        "413": _json("Error", "The body is larger than the app accepts."),
                        "422": invalid,
                    },
                },
            },
            "/api/entries/{entry_id}": {
                "get": {
                    "operationId": "getEntry",
                    "summary": "One entry.",
                    "parameters": [_parameter("entry_id", "path", entry_id)],
                    "responses": {
                        "200": _json("Entry", "The entry."),
                        "404": _json("Error", "There is no such entry."),
                    },
                },
            },
        },
        "components": {"schemas": components},
    }


def dumps() -> str:
    """The document as the checked-in file holds it (sorted keys, two-space indent, final newline)."""
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=True) + "\n"
