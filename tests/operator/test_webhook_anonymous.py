"""The admission handler as an anonymous caller reaches it (no FLASKOPS_WEBHOOK_CLIENT_CA): any pod that
reaches the port, a tenant's own app image included, can forge a review about any namespace. Its answer
— allowed or refused, messages, warnings, codes, errors, and the work done to build it — may depend on
the request and its PostgresServer only, never on another namespace's apps or labels."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import kopf
import pytest

from flaskops import handlers, inventory

SERVERS = {
    "pg": [
        inventory.server_entry(
            {"host": "pg.db.svc", "port": 5432, "environments": ["production", "staging"]},
        )
    ]
}


class Watched(dict):
    """A kopf index stand-in that records every read (a kopf.Index is a Mapping of stores)."""

    def __init__(self, data: Mapping[Any, Any]) -> None:
        super().__init__(data)
        self.reads: list[Any] = []

    def get(self, key: Any, default: Any = None) -> Any:
        self.reads.append(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.reads.append(key)
        return super().__getitem__(key)


def _app(namespace: str, name: str, db: str, env: str = "production", server: str = "pg") -> dict[str, Any]:
    return {
        "apiVersion": "flaskops.dev/v1alpha1",
        "kind": "FlaskApp",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "image": "ghcr.io/x/app:1",
            "environment": env,
            "replicas": 2,
            "resources": {"requests": {"cpu": "100m"}},
            "database": {"server": server, "name": db},
        },
    }


def _review(
    body: Mapping[str, Any], apps: Watched, labels: Watched, op: str = "CREATE"
) -> tuple[str, list[str]]:
    warnings: list[str] = []
    try:
        asyncio.run(
            handlers.validate_flaskapp(
                body=body,
                namespace=body["metadata"]["namespace"],
                name=body["metadata"]["name"],
                warnings=warnings,
                flaskapp_db=apps,
                postgresserver_spec=SERVERS,
                namespace_labels=labels,
                operation=op,
                old=None,
            )
        )
    except kopf.AdmissionError as exc:
        return f"{exc.code}: {exc}", warnings
    return "allowed", warnings


@pytest.fixture
def anonymous(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "CONFIG", dataclasses.replace(handlers.CONFIG, webhook_client_ca=""))


def _cluster(staging_uses_gb: bool) -> tuple[Watched, Watched]:
    entries = []
    if staging_uses_gb:
        spec = _app("victim", "shop", "gb", "staging")["spec"]
        entries.append(inventory.app_entry("victim", "shop", spec, {}, "2026-01-01T00:00:00Z"))
    return Watched({None: entries}), Watched({"mallory": [{"team": "x"}], "victim": [{"team": "y"}]})


@pytest.mark.parametrize(
    "body",
    [
        _app("mallory", "probe", "gb"),
        _app("mallory", "probe", "gb", "staging"),
        # Malformed reviews (the 400 path) answer the same too.
        {**_app("mallory", "probe", "gb"), "spec": {"database": {"server": "pg"}, "replicas": "many"}},
    ],
)
def test_an_anonymous_review_reads_no_other_app_or_namespace(
    anonymous: None, body: Mapping[str, Any]
) -> None:
    used_apps, used_labels = _cluster(staging_uses_gb=True)
    free_apps, free_labels = _cluster(staging_uses_gb=False)
    assert _review(body, used_apps, used_labels) == _review(body, free_apps, free_labels)
    # Not even read: neither the answer nor the time to build it (O(apps)) says what exists elsewhere.
    assert used_apps.reads == used_labels.reads == []


def test_the_api_servers_review_reads_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The same probe with the client CA configured (the TLS handshake proved the API server): rule S5
    refuses at admission, so the test above would see a difference if the handler read the indexes."""
    ca = tmp_path / "ca.crt"
    ca.write_text("unused here")
    monkeypatch.setattr(handlers, "CONFIG", dataclasses.replace(handlers.CONFIG, webhook_client_ca=str(ca)))
    apps, labels = _cluster(staging_uses_gb=True)
    answer, _ = _review(_app("mallory", "probe", "gb"), apps, labels)
    assert answer.startswith("403"), answer
    assert apps.reads


def _gated(host: str, environments: list[str]) -> dict[str, Any]:
    """A PostgresServer only namespaces labelled tenant=acme may use (acme's own server)."""
    return inventory.server_entry(
        {
            "host": host,
            "environments": environments,
            "allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"tenant": "acme"}}},
        }
    )


@pytest.mark.parametrize("authenticated", [False, True])
def test_a_server_that_does_not_admit_the_namespace_tells_nothing_of_its_configuration(
    authenticated: bool,
) -> None:
    """Finding 3 (fixed): a review naming acme's server told any namespace its host and environments
    (S1-S3 "host 'pg.acme-prod.svc' has the token 'prod'", S4 "admits environments [...]"), though
    reconcile refuses such an app with the server's name alone (tenancy.refusal_message)."""
    from flaskops.webhook import review

    probe = _app("mallory", "probe", "gb", "development", server="acme-db")
    answers = {
        repr((r.violations, r.warnings))
        for r in (
            review(
                probe,
                {"acme-db": server},
                [],
                namespace_labels={"tenant": "mallory"},
                authenticated=authenticated,
            )
            for server in (
                _gated("pg.acme-prod.svc", ["production"]),
                _gated("pg.acme.svc", ["development", "production"]),
                _gated("pg.acme-test.svc", ["testing"]),
            )
        )
    }
    assert len(answers) == 1, answers
    [answer] = answers
    assert "does not exist" not in answer  # the server was found (its existence is no secret)
    assert "acme-prod" not in answer and "environments" not in answer
