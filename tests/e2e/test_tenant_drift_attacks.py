# ruff: noqa: F811  (the fixtures imported from test_tenancy are pytest parameters here)
"""Security review of drift repair, blocked children and migration Job deletion (attack-2).

A hostile tenant against the operator's newest paths: the label-selected Secret/Service watches
(`child_changed`), the `<app>-db` Secret the reconcile trusts, and `MigrationAbandoned`. Each test asserts
what MUST hold; the findings the review reported (decoy wake-ups, the forged 0.1 proof, grown specs,
Events of timer reconciles) are fixed, and these tests keep them so.

The tenant is the `make_tenant` ServiceAccount (FlaskApp rights only) plus, where the attack needs it,
the namespace rights the README's security model assumes a tenant has anyway (the chart's `-edit` rules
are aggregated into `edit`, which also writes Secrets and Jobs): `_grant` adds exactly those.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest
import requests
import yaml
from e2e_support import Apps, OperatorProcess, flaskapp, jobs
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from test_tenancy import (  # noqa: F401  (fixtures)
    Tenant,
    forget,
    logs_in,
    make_tenant,
    superuser,
)

# The module-scoped webhook (the chart's configuration) for the last test only: it stops the session's
# `operator` (whose metrics the first tests read) until the module ends, so it stays last in the file.
from test_webhook import legacy_namespace, webhook  # noqa: F401

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e


def _grant(kube: Kube, tenant: Tenant, resources: list[str], api_group: str = "") -> None:
    """Give the tenant what `edit` gives on `resources` in its own namespace (nothing cluster-wide)."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    name = f"edit-{'-'.join(resources)}"
    rbac.create_namespaced_role(
        tenant.namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name=name),
            rules=[
                client.V1PolicyRule(
                    api_groups=[api_group],
                    resources=resources,
                    verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        tenant.namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="tenant", namespace=tenant.namespace)],
        ),
    )

    def granted() -> bool:
        out = tenant.kubectl("auth", "can-i", "create", resources[0], "-n", tenant.namespace)
        if out.stdout.strip() != "yes":
            raise NotYet(out.stdout + out.stderr)
        return True

    wait_for(granted, timeout=30, what=f"the tenant may write {resources}")


def _reconciles(op: OperatorProcess) -> float:
    """flaskops_reconcile_total summed over its `result` label, as Prometheus would scrape it."""
    resp = requests.get(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5)
    resp.raise_for_status()
    return sum(
        s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
        if s.name == "flaskops_reconcile_total"
    )


def _settled(op: OperatorProcess, quiet_polls: int = 6, timeout: int = 60) -> float:
    """The reconcile count once it has not moved for `quiet_polls` polls in a row (0.5 s apart)."""
    seen: list[float] = []

    def quiet() -> float:
        seen.append(_reconciles(op))
        tail = seen[-quiet_polls:]
        if len(tail) < quiet_polls or len(set(tail)) != 1:
            raise NotYet(f"reconciles still moving: {tail}")
        return tail[-1] or -1.0  # truthy even for a count of 0

    return max(wait_for(quiet, timeout=timeout, what="the operator to go quiet", interval=0.5), 0.0)


def _uid(tenant: Tenant, app: str) -> str:
    out = tenant.kubectl("get", "flaskapp", app, "-n", tenant.namespace, "-o", "jsonpath={.metadata.uid}")
    assert out.returncode == 0 and out.stdout, out.stderr
    return str(out.stdout.strip())


# --- finding 1: every Secret a tenant labels like a child costs the operator a full reconcile --------------

DECOYS = 60


def test_secrets_merely_labelled_like_a_child_do_not_each_cost_a_reconcile(
    make_tenant: Callable[..., Tenant],
    make_server: Any,
    apps: Apps,
    operator: OperatorProcess,
) -> None:
    tenant = make_tenant()
    _grant(tenant.kube, tenant, ["secrets"])
    server = make_server(["development", "testing"])
    body = flaskapp("target", tenant.namespace, server=server, environment="testing")
    assert tenant.apply(body).returncode == 0
    apps.wait(tenant.namespace, "target", timeout=180)
    before = _settled(operator)

    # Secrets the operator never made, owned by nothing, named like nothing of ours: only the two labels.
    labels = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_APP: "target"}
    decoys = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"decoy-{i}", "namespace": tenant.namespace, "labels": labels},
                "stringData": {"note": "decoy"},
            }
            for i in range(DECOYS)
        ],
    }
    out = tenant.apply(decoys)
    assert out.returncode == 0, out.stderr
    after = _settled(operator)

    # Must hold: objects that are not the app's children are not news about the app. A few reconciles
    # for unrelated reasons (a recheck timer) are fine; one per decoy is an amplifier anyone can drive.
    assert after - before <= DECOYS // 6, f"{after - before:.0f} reconciles for {DECOYS} decoy Secrets"


# --- finding 2: a Secret the tenant writes stands in for the 0.1 upgrade proof -----------------------------


def test_a_forged_db_secret_does_not_adopt_a_database_the_admin_did_not_list(
    make_tenant: Callable[..., Tenant],
    make_server: Any,
    apps: Apps,
    kube: Kube,
    postgres: Any,
    operator: OperatorProcess,
) -> None:
    legacy = f"legacy_{secrets.token_hex(3)}"
    legacy_password = secrets.token_urlsafe(16)
    with superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(legacy), sql.Literal(legacy_password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(legacy), sql.Identifier(legacy))
        )
    try:
        tenant = make_tenant()
        _grant(kube, tenant, ["secrets"])
        server = make_server(["development", "testing"])
        # The tenant knows the legacy login (its old app used it) but the admin never listed the database
        # in adoptableDatabases, and the tenant does not even ask (no adoptExisting).
        body = flaskapp("heist", tenant.namespace, server=server, environment="testing", dbname=legacy)
        assert tenant.apply(body).returncode == 0
        apps.wait_reason(tenant.namespace, "heist", names.DATABASE_READY, "RoleOwnedElsewhere")

        # Forge "the app's own <app>-db Secret": the app's ownerReference and labels, the legacy password.
        uid = _uid(tenant, "heist")
        forged = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": names.db_secret_name("heist"),
                "namespace": tenant.namespace,
                "labels": {
                    names.LABEL_MANAGED_BY: names.MANAGED_BY,
                    names.LABEL_APP: "heist",
                    names.LABEL_COMPONENT: "db-credentials",
                },
                "ownerReferences": [
                    {
                        "apiVersion": names.API_VERSION,
                        "kind": names.FLASKAPP_KIND,
                        "name": "heist",
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "data": {"password": base64.b64encode(legacy_password.encode()).decode()},
        }
        out = tenant.kubectl("create", "-f", "-", input=yaml.safe_dump(forged))
        assert out.returncode == 0, out.stderr

        # A sync point that holds whatever the operator makes of the Secret: a spec change it must judge.
        body["spec"]["replicas"] = 2
        assert tenant.apply(body).returncode == 0
        generation = apps.get(tenant.namespace, "heist")["metadata"]["generation"]

        def judged_again() -> dict[str, Any]:
            cond = apps.condition(tenant.namespace, "heist", names.DATABASE_READY)
            if cond.get("observedGeneration") != generation:
                raise NotYet(f"{cond.get('reason')} at generation {cond.get('observedGeneration')}")
            return cond

        wait_for(judged_again, timeout=90, what="the reconcile after the forged Secret")
        with superuser(postgres) as conn:
            comment = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (legacy,)
            ).fetchone()
        # Must hold: without the admin's adoptableDatabases entry the legacy database stays unrecorded
        # and the app stays refused.
        assert (
            apps.condition(tenant.namespace, "heist", names.DATABASE_READY)["reason"] == "RoleOwnedElsewhere"
        )
        assert comment is not None and not (comment[0] or "").strip(), comment
        assert logs_in(postgres, legacy, legacy, legacy_password)
    finally:
        forget(postgres, legacy)


# --- defence: MigrationAbandoned deletes only the app's own Jobs ---------------------------------------------


def test_a_never_started_job_that_merely_carries_the_labels_is_never_deleted(
    make_tenant: Callable[..., Tenant],
    make_server: Any,
    apps: Apps,
    kube: Kube,
    operator: OperatorProcess,
) -> None:
    tenant = make_tenant()
    ns = tenant.namespace
    # No pod ever starts here: every migration Job (ours and the bystander's) stays "never ran".
    kube.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "pods", "namespace": ns},
                "spec": {"hard": {"pods": "0"}},
            }
        ),
    )
    # Someone else's Job in the namespace that carries the app's migration labels (but no ownerReference).
    bystander = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "moving-migrate-bystander",
            "namespace": ns,
            "labels": {
                names.LABEL_MANAGED_BY: names.MANAGED_BY,
                names.LABEL_APP: "moving",
                names.LABEL_COMPONENT: "migration",
            },
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "registry.example/other:1"}],
                }
            },
        },
    }
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(bystander))
    server = make_server(["development", "testing"])
    body = flaskapp("moving", ns, server=server, environment="testing")
    assert tenant.apply(body).returncode == 0

    def own_job() -> str:
        mine = [j.metadata.name for j in jobs(kube, ns, "moving") if j.metadata.owner_references]
        if len(mine) != 1:
            raise NotYet(f"owned Jobs {mine}")
        return str(mine[0])

    first = wait_for(own_job, timeout=90, what="the app's first migration Job")
    body["spec"]["image"] = "registry.example/guestbook:1.0.1"
    assert tenant.apply(body).returncode == 0

    def replaced() -> str:
        mine = own_job()
        if mine == first:
            raise NotYet(f"still {mine}")
        return mine

    wait_for(replaced, timeout=60, what="the app's never-started Job replaced")
    # Must hold: the operator deleted its own superseded Job, never the one it does not own.
    left = {j.metadata.name for j in jobs(kube, ns, "moving") if not j.metadata.deletion_timestamp}
    assert "moving-migrate-bystander" in left, left


# --- finding 4: resources' inner maps are unbounded; past the webhook's 1 MiB body limit no UPDATE passes --


# Keys in spec.resources.limits: one object of ~0.7 MiB (the keys are in managedFields too), so an UPDATE
# from a small spec fits an admission review (old + new) but any later UPDATE of the big object does not.
GROWN_KEYS = 14_000


@pytest.mark.usefixtures("webhook")
def test_a_spec_grown_through_resources_cannot_hang_its_deletion(
    make_tenant: Callable[..., Tenant],
    make_server: Any,
    apps: Apps,
    kube: Kube,
) -> None:
    tenant = make_tenant()
    server = make_server(["development", "testing"])
    body = flaskapp("grown", tenant.namespace, server=server, environment="testing")
    body["spec"]["database"]["deletionPolicy"] = "Delete"  # kopf holds a finalizer on the app
    assert tenant.apply(body).returncode == 0
    apps.wait(tenant.namespace, "grown", timeout=180)

    live = apps.get(tenant.namespace, "grown")
    assert names.FINALIZER in live["metadata"].get("finalizers", []), live["metadata"]
    live["metadata"].pop("managedFields", None)
    # kubectl replace refreshes apply's last-applied annotation when it exists: drop it.
    live["metadata"].get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    live.pop("status", None)
    live["spec"]["resources"]["limits"] = {f"example.com/r{i}": "1" for i in range(GROWN_KEYS)}
    # replace (its finalizer kept): kubectl apply's last-applied annotation would pass the 256 KiB limit.
    grown = tenant.kubectl("replace", "-f", "-", input=json.dumps(live))
    if grown.returncode == 0:
        out = tenant.kubectl("delete", "flaskapp", "grown", "-n", tenant.namespace, "--wait=false")
        assert out.returncode == 0, out.stderr

        def gone() -> bool:
            got = tenant.kubectl("get", "flaskapp", "grown", "-n", tenant.namespace, "-o", "name")
            if got.returncode == 0:
                raise NotYet("still there (Terminating)")
            return True

        try:
            # Must hold: a tenant's spec never keeps the app (and so its namespace) from being deleted.
            wait_for(gone, timeout=30, what="the grown FlaskApp deleted")
        finally:
            # The way out (an UPDATE whose review fits again): shrink the spec, so the finalizer can go.
            kube.kubectl(
                "patch",
                "flaskapp",
                "grown",
                "-n",
                tenant.namespace,
                "--type=json",
                "-p",
                json.dumps([{"op": "remove", "path": "/spec/resources/limits"}]),
                check=False,
            )
    else:
        # Refused as too large: what must hold holds (the tenant cannot build such an object).
        assert "resources" in grown.stderr, grown.stderr
