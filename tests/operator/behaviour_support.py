"""The pieces behaviour tests share: a FlaskApp body, the reconcile as the handlers drive it, and a loop that
plays the Job and Deployment controllers until an app settles. Everything goes through FakeKube's `Kube`
verbs and `Reconciler.reconcile`, nothing through kopf."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Mapping
from typing import Any

from flaskops import names
from flaskops.kube import merge_patch_diff
from flaskops.reconcile import Reconciler, Result
from tests.operator.fake_kube import FakeKube

NS = "shop"
APP = "web"
# What a person's kubectl writes as (managedFields): distinct from the operator's "flaskops".
USER = "kubectl-edit"
LEGACY_SECRET = "legacy-db"
LEGACY_URL = "postgresql://shop:pw@db.internal:5432/shop"
_EVENT_IDS = itertools.count(1)


def url_secret(kube: FakeKube, name: str = LEGACY_SECRET, url: str = LEGACY_URL, namespace: str = NS) -> None:
    """A user's Secret holding a database URL under `URL` (spec.database.existingSecret)."""
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"URL": base64.b64encode(url.encode()).decode()},
        },
        manager=USER,
    )


ADMIN_NS = "flaskops-system"


def postgres_server(kube: FakeKube, postgres: Any, name: str = "pg", *, password: str | None = None) -> None:
    """A PostgresServer (environments: testing) on the session's real PostgreSQL and its admin Secret in
    ADMIN_NS, created as a cluster admin would (`postgres`: flaskops_testbed.postgres.PostgresTarget)."""
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pg-admin", "namespace": ADMIN_NS},
            "stringData": {"username": postgres.superuser, "password": password or postgres.password},
        },
        manager=USER,
    )
    kube.create(
        {
            "apiVersion": names.API_VERSION,
            "kind": names.POSTGRESSERVER_KIND,
            "metadata": {"name": name},
            "spec": {
                "host": postgres.host,
                "port": postgres.port,
                "sslMode": "disable",
                "adminSecretRef": {"namespace": ADMIN_NS, "name": "pg-admin"},
                "environments": ["testing"],
            },
        },
        manager=USER,
    )


def flaskapp(
    name: str = APP,
    *,
    image: str = "app:1",
    replicas: int = 2,
    secret: str = LEGACY_SECRET,
    environment: str = "testing",
    **spec: Any,
) -> dict[str, Any]:
    """A FlaskApp on an existing-Secret database (no PostgreSQL needed); `spec` adds or overrides fields."""
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.FLASKAPP_KIND,
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "environment": environment,
            "image": image,
            "replicas": replicas,
            "database": {"existingSecret": {"name": secret, "key": "URL"}},
            **spec,
        },
    }


def new_app(kube: FakeKube, **kwargs: Any) -> dict[str, Any]:
    """The URL Secret and the FlaskApp, created as a user would."""
    if kube.get("Secret", NS, kwargs.get("secret", LEGACY_SECRET)) is None:
        url_secret(kube, kwargs.get("secret", LEGACY_SECRET))
    return kube.create(flaskapp(**kwargs), manager=USER)


def edit_spec(kube: FakeKube, patch: Mapping[str, Any], name: str = APP) -> dict[str, Any]:
    """`kubectl patch flaskapp --type=merge -p '{"spec": ...}'`."""
    return kube.merge_patch(names.FLASKAPP_KIND, NS, name, {"spec": dict(patch)}, manager=USER)


def annotate(kube: FakeKube, key: str, value: str, name: str = APP) -> dict[str, Any]:
    patch = {"metadata": {"annotations": {key: value}}}
    return kube.merge_patch(names.FLASKAPP_KIND, NS, name, patch, manager=USER)


def reconcile(kube: FakeKube, name: str = APP, **reconciler: Any) -> Result:
    """One reconcile as the handlers run it: read the FlaskApp, reconcile, write the status that changed (a
    merge patch on the status subresource) and post the Events about the FlaskApp (as kopf.event does)."""
    body = kube.get(names.FLASKAPP_KIND, NS, name)
    assert body is not None, f"FlaskApp {NS}/{name} does not exist"
    result = Reconciler(kube, now=kube.now, **reconciler).reconcile(body)
    old = body.get("status") or {}
    if result.status != old:
        patch = {"status": merge_patch_diff(old, result.status)}
        kube.merge_patch(names.FLASKAPP_KIND, NS, name, patch, sub="status")
    for ev in result.events:
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{name}.{next(_EVENT_IDS):016x}", "namespace": NS},
                "involvedObject": {
                    "apiVersion": names.API_VERSION,
                    "kind": names.FLASKAPP_KIND,
                    "name": name,
                    "namespace": NS,
                    "uid": body["metadata"]["uid"],
                },
                "type": ev.type,
                "reason": ev.reason,
                "message": ev.message,
                "source": {"component": "kopf"},
                "firstTimestamp": kube.now(),
                "lastTimestamp": kube.now(),
                "count": 1,
            },
            manager="kopf",
        )
    return result


def running_jobs(kube: FakeKube, name: str = APP) -> list[dict[str, Any]]:
    """The app's migration Jobs that have not finished."""
    sel = f"{names.LABEL_APP}={name},{names.LABEL_COMPONENT}=migration"
    return [
        j
        for j in kube.list("Job", NS, selector=sel)
        if not any(
            c["type"] in ("Complete", "Failed") for c in (j.get("status") or {}).get("conditions") or []
        )
    ]


def settle(kube: FakeKube, name: str = APP, *, rounds: int = 6, **reconciler: Any) -> Result:
    """Reconcile, finish every running migration successfully and roll the Deployment out, until the app is
    Ready; fails after `rounds` reconciles."""
    for _ in range(rounds):
        result = reconcile(kube, name, **reconciler)
        if result.ready:
            return result
        for job in running_jobs(kube, name):
            kube.finish_job(NS, job["metadata"]["name"])
        if kube.get("Deployment", NS, name) is not None:
            kube.roll_out(NS, name)
        kube.advance(1)
    raise AssertionError(f"not Ready after {rounds} reconciles: {conditions(result)}")


def conditions(result: Result) -> dict[str, tuple[str, str]]:
    """{type: (status, reason)} of a reconcile's conditions."""
    return {c["type"]: (c["status"], c["reason"]) for c in result.status["conditions"]}


def message(result: Result, type_: str) -> str:
    """The message of one of a reconcile's conditions."""
    return str(next(c["message"] for c in result.status["conditions"] if c["type"] == type_))


def status(kube: FakeKube, name: str = APP) -> dict[str, Any]:
    body = kube.get(names.FLASKAPP_KIND, NS, name)
    assert body is not None
    return dict(body.get("status") or {})


def events(kube: FakeKube, reason: str | None = None, name: str = APP) -> list[dict[str, Any]]:
    """Events posted about the FlaskApp (by the reconcile), optionally of one reason."""
    fields = f"involvedObject.kind={names.FLASKAPP_KIND},involvedObject.name={name}"
    if reason:
        fields += f",reason={reason}"
    return kube.list("Event", NS, fields=fields)


def image_of(dep: Mapping[str, Any]) -> str:
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])
