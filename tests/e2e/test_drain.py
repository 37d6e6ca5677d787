"""The apps the operator deploys survive a drain (issue 14 item 4): a PodDisruptionBudget while replicas >= 2,
the default host/zone spread, the scheduling fields passed through, and no pod restarts from an upgrade."""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_support import Apps, OperatorProcess, deployment, flaskapp, jobs
from kubernetes import client

from flaskops import manifests, names
from flaskops.spec import parse_flaskapp
from flaskops.steps.children import APPLIED_HASH
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TOLERATION = {"key": "flaskops.dev/e2e", "operator": "Exists", "effect": "NoSchedule"}
NODE_AFFINITY = {
    "preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "e2e", "operator": "DoesNotExist"}]}}
    ]
}


def pdb(kube: Kube, namespace: str, name: str) -> Any:
    try:
        return client.PolicyV1Api(kube.api).read_namespaced_pod_disruption_budget(name, namespace)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_replicas_two_get_a_budget_that_goes_when_they_drop_to_one(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    server = make_server(["production"])
    body = flaskapp(
        "shop",
        ns,
        server=server,
        tolerations=[TOLERATION],
        affinity={"nodeAffinity": NODE_AFFINITY},
    )
    apps.apply(body)
    apps.wait(ns, "shop", timeout=180)
    uid = apps.get(ns, "shop")["metadata"]["uid"]

    budget = pdb(kube, ns, "shop")
    assert budget is not None
    assert [(r.kind, r.uid, r.controller) for r in budget.metadata.owner_references] == [
        ("FlaskApp", uid, True)
    ]
    assert budget.metadata.labels[names.LABEL_COMPONENT] == "web"
    assert budget.spec.max_unavailable == 1 and budget.spec.min_available is None
    assert budget.spec.selector.match_labels == {names.LABEL_APP: "shop", names.LABEL_COMPONENT: "web"}
    # The API server counts the Ready pods the budget guards: one may go.
    wait_for(
        lambda: (b := pdb(kube, ns, "shop")).status.disruptions_allowed == 1 or _not_yet(b.status),
        timeout=60,
        what="the PodDisruptionBudget to allow one disruption",
    )

    pod = deployment(kube, ns, "shop").spec.template.spec
    assert [t.topology_key for t in pod.topology_spread_constraints] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    assert [t.to_dict() for t in pod.tolerations] == [
        {**{k: None for k in ("key", "operator", "value", "effect", "toleration_seconds")}, **TOLERATION}
    ]
    assert pod.affinity.node_affinity is not None
    (job,) = jobs(kube, ns, "shop")
    job_pod = job.spec.template.spec
    assert job_pod.tolerations is not None and job_pod.topology_spread_constraints is None

    body["spec"]["replicas"] = 1
    apps.apply(body)
    wait_for(
        lambda: pdb(kube, ns, "shop") is None or _not_yet("still there"),
        timeout=60,
        what="the PodDisruptionBudget removed at one replica",
    )
    # Scaling changes no pod template: no new ReplicaSet, no restart.
    assert deployment(kube, ns, "shop").spec.template.spec.topology_spread_constraints is not None


def _not_yet(what: Any) -> bool:
    raise NotYet(str(what))


def test_a_budget_of_the_same_name_not_owned_is_never_touched(
    kube: Kube, apps: Apps, ns: str, make_server: Any
) -> None:
    policy = client.PolicyV1Api(kube.api)
    theirs = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="planted"),
        spec=client.V1PodDisruptionBudgetSpec(min_available=0, selector=client.V1LabelSelector()),
    )
    policy.create_namespaced_pod_disruption_budget(ns, theirs)
    apps.apply(flaskapp("planted", ns, server=make_server(["production"])))
    cond = apps.wait_reason(ns, "planted", names.AVAILABLE, "NotOwned", timeout=180)
    assert "PodDisruptionBudget 'planted'" in cond["message"]
    assert apps.condition(ns, "planted", "Stalled")["status"] == "True"
    kept = pdb(kube, ns, "planted")
    assert kept.spec.min_available == 0 and not kept.metadata.owner_references


def test_an_operator_upgrade_restarts_no_pods_of_an_app_deployed_without_spread(
    kube: Kube, apps: Apps, ns: str, make_server: Any, operator: OperatorProcess
) -> None:
    """The upgrade itself: while the operator is down, the app's Deployment is exactly what the operator
    before the default spread applied; the new operator starts, resumes every app, and keeps that pod
    template (only its own annotation is added). The next real change brings the spread along."""
    body = flaskapp("legacy", ns, server=make_server(["production"]))
    apps.apply(body)
    apps.wait(ns, "legacy", timeout=180)
    live = apps.get(ns, "legacy")
    checksum = deployment(kube, ns, "legacy").spec.template.metadata.annotations[
        names.ANNOTATION_SECRETS_CHECKSUM
    ]
    old = manifests.legacy_deployment(parse_flaskapp(live), live["spec"]["image"], checksum)
    old["metadata"]["annotations"] = {APPLIED_HASH: manifests.digest(old)}

    def observed() -> Any:
        dep = deployment(kube, ns, "legacy")
        if dep.status.observed_generation != dep.metadata.generation:
            raise NotYet("the Deployment controller has not seen the change yet")
        return dep

    operator.stop()
    try:
        # As the previous operator applied it: no spread, no base-template annotation (the same field
        # manager, so the fields it no longer sends are removed).
        client.AppsV1Api(kube.api).patch_namespaced_deployment(
            "legacy",
            ns,
            json.loads(json.dumps(old)),
            field_manager="flaskops",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        # The revision (a new ReplicaSet, i.e. restarted pods) is what the controller makes of a template.
        before = wait_for(observed, timeout=60, what="the Deployment observed")
    finally:
        operator.start()
    assert before.spec.template.spec.topology_spread_constraints is None
    assert names.ANNOTATION_BASE_TEMPLATE not in before.metadata.annotations

    def annotated() -> Any:
        dep = deployment(kube, ns, "legacy")
        if names.ANNOTATION_BASE_TEMPLATE not in (dep.metadata.annotations or {}):
            raise NotYet("not reconciled yet")
        return dep

    wait_for(annotated, timeout=60, what="the Deployment reconciled by the new operator")
    after = wait_for(observed, timeout=60, what="the Deployment observed")
    # Same pod template, same ReplicaSet revision: no pod restarted.
    assert after.spec.template == before.spec.template
    revision = "deployment.kubernetes.io/revision"
    assert after.metadata.annotations[revision] == before.metadata.annotations[revision]

    # A real change to the pods (new env) rolls them anyway, and the default spread comes with it.
    body["spec"]["env"] = [{"name": "FEATURE", "value": "on"}]
    apps.apply(body)
    wait_for(
        lambda: (
            deployment(kube, ns, "legacy").spec.template.spec.topology_spread_constraints
            or _not_yet("no spread yet")
        ),
        timeout=180,
        what="the spread added with the next rollout",
    )
