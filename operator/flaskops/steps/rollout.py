"""Step 5, roll out: only after the migration succeeded, the Deployment (to the migrated image, with the
Secrets' checksum in its pod template), the Service and, from two replicas, a PodDisruptionBudget; the
Available condition from what the Deployment reports, and why a rollout that does not progress is stuck.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import blockers, manifests, names
from .. import conditions as c
from .. import rollout as deployments
from ..kube import ApiException
from ..spec import FlaskAppSpec
from .children import (
    APPLIED_HASH,
    Client,
    apply_if_changed,
    delete_decided,
    invalid,
    owned_or_none,
    rejected,
    require_owned,
    warnings,
)
from .result import RECHECK_SECONDS, Event, Halt, StepResult

log = logging.getLogger("flaskops.reconcile")

# A rollout that has not progressed this long is looked into (its pods' Warning Events are read; a pod's
# first seconds are noisy).
STUCK_SECONDS = 20.0


@dataclass(frozen=True)
class RolledOut(StepResult):
    """The step's result. `rolled_out`: the Deployment runs the desired image on all its replicas;
    `blocked`: why it cannot make its pods (a Kubernetes reason), None when it is not known to be stuck."""

    rolled_out: bool = False
    blocked: str | None = None


def roll_out(
    kube: Client,
    app: FlaskAppSpec,
    previous: Mapping[str, Any],
    secret_data: Sequence[Mapping[str, str]],
    *,
    migrated: bool,
    migrated_image: str | None,
    now: str,
) -> RolledOut:
    """Apply the Deployment, Service and PodDisruptionBudget (only when `migrated`); Available and the
    replica fields from the Deployment.

    `previous`: the status before this reconcile (whether the app served: a missing child is then a
    deletion to repair); `secret_data`: the data the pods read (their checksum rolls the pods on a
    change); `migrated_image`: status.migratedImage after the migrate step (only that image is ever named
    as serving); `now`: RFC 3339. Halts (stalled) with NotOwned or InvalidSpec on Available.
    """
    events: list[Event] = []
    try:
        return _roll_out(kube, app, previous, secret_data, migrated, migrated_image, now, events)
    except Halt as halt:
        return halt.result(RolledOut, events=events)


def observe(kube: Client, app: FlaskAppSpec, migrated_image: str | None) -> StepResult:
    """Available for whatever serves now (an owned Deployment, else none), touching nothing: what the
    flow reports when an earlier step halted."""
    current = owned_or_none(app, kube.get("Deployment", app.namespace, app.name))
    return availability(app, deployments.view(current), migrated_image)


def availability(app: FlaskAppSpec, dep: deployments.RolloutView, migrated_image: str | None) -> StepResult:
    """Available and status replicas/readyReplicas/selector (and servingImage once `migrated_image` is
    rolled out) from a Deployment's view. Pure."""
    fields: dict[str, Any] = {
        "replicas": dep.replicas,
        "readyReplicas": dep.ready_replicas,
        # The scale subresource's labelSelectorPath: what an HPA uses to find the pods' metrics.
        "selector": ",".join(f"{k}={v}" for k, v in sorted(manifests.web_selector(app).items())),
    }
    # Only an image that was migrated is ever named as serving: a Deployment someone pointed at another
    # image is put back, and until then it is not what this app serves.
    if dep.rolled_out and dep.image and dep.image == migrated_image:
        fields["servingImage"] = dep.image
    if not dep.exists:
        cond = c.false(names.AVAILABLE, "NotDeployed", "no Deployment yet: it is created after the migration")
    elif dep.available:
        cond = c.true(names.AVAILABLE, "MinimumReplicasAvailable", dep.message)
    else:
        cond = c.false(names.AVAILABLE, "MinimumReplicasUnavailable", dep.message)
    return StepResult(conditions=(cond,), status=fields)


def desired_deployment(app: FlaskAppSpec, checksum: str, current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Deployment to apply. A Deployment whose pods run without the default topology spread keeps them
    so until its pod template changes for another reason: an operator upgrade alone restarts no app."""
    desired = manifests.deployment(app, app.image, checksum)
    if current is None or app.topology_spread_constraints is not None:
        return desired
    pod = ((current.get("spec") or {}).get("template") or {}).get("spec") or {}
    if pod.get("topologySpreadConstraints"):
        return desired
    plain = manifests.deployment(app, app.image, checksum, default_spread=False)
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    base = annotations.get(names.ANNOTATION_BASE_TEMPLATE)
    if base is None:
        # Applied by an operator without the annotation: unchanged when its whole digest still matches.
        unchanged = annotations.get(APPLIED_HASH) == manifests.digest(
            manifests.legacy_deployment(app, app.image, checksum)
        )
    else:
        unchanged = base == plain["metadata"]["annotations"][names.ANNOTATION_BASE_TEMPLATE]
    return plain if unchanged else desired


def _roll_out(
    kube: Client,
    app: FlaskAppSpec,
    previous: Mapping[str, Any],
    secret_data: Sequence[Mapping[str, str]],
    migrated: bool,
    migrated_image: str | None,
    now: str,
    events: list[Event],
) -> RolledOut:
    current = kube.get("Deployment", app.namespace, app.name)
    require_owned(app, current, names.AVAILABLE, "Deployment", app.name)
    if not migrated:
        # No rollout before the migration succeeded: whatever serves now keeps serving untouched.
        seen = availability(app, deployments.view(current), migrated_image)
        return RolledOut(conditions=seen.conditions, status=seen.status, events=tuple(events))
    existed = bool(previous.get("servingImage"))
    checksum = manifests.secrets_checksum(*secret_data)
    desired = desired_deployment(app, checksum, current)
    try:
        applied = apply_if_changed(kube, app, desired, current, events, existed=existed)
    except ApiException as exc:
        if not invalid(exc):
            raise
        raise rejected(exc, names.AVAILABLE, f"Deployment '{app.name}'") from None
    if applied is not None:
        old_image = deployments.view(current).image
        if old_image and old_image != app.image:
            # An upgrade: the first rollout is told by Ready.
            events.append(
                Event("Normal", "RolloutStarted", f"rolling Deployment '{app.name}' to {app.image}")
            )
        current = applied
    svc_current = kube.get("Service", app.namespace, app.name)
    require_owned(app, svc_current, names.AVAILABLE, "Service", app.name)
    apply_if_changed(kube, app, manifests.service(app), svc_current, events, existed=existed)
    _disruption_budget(kube, app, events)
    view = deployments.view(current)
    rolled_out = view.rolled_out and view.image == app.image
    recheck: float | None = None
    blocked: str | None = None
    if not rolled_out and view.exists:
        recheck = RECHECK_SECONDS
        blocked = view.failure
        stuck = c.age_seconds(view.progressed_at, now) >= STUCK_SECONDS
        if blocked is None and stuck:
            blocked = _stuck_because(kube, app, view)
    seen = availability(app, view, migrated_image)
    return RolledOut(
        conditions=seen.conditions,
        status=seen.status,
        events=tuple(events),
        recheck_after=recheck,
        rolled_out=rolled_out,
        blocked=blocked,
    )


def _stuck_because(kube: Client, app: FlaskAppSpec, view: deployments.RolloutView) -> str | None:
    """What Kubernetes said about the pods of a rollout that stopped progressing, if anything."""
    since = view.progressed_at
    # The ReplicaSet being scaled up, as the controller's own Event names it; the Progressing
    # condition may still name the previous one (see blockers.newest_scaled_up).
    # One list per namespace (shared between its apps for a few seconds), not one per app.
    scaled = kube.list(
        "Event", app.namespace, fields="involvedObject.kind=Deployment,reason=ScalingReplicaSet"
    )
    replica_set = blockers.newest_scaled_up(scaled, app.name) or view.replica_set
    blocker = blockers.for_replica_set(warnings(kube, app.namespace), replica_set, since=since)
    blocked = blocker.describe() if blocker else None
    log.info(
        "rollout not progressing",
        extra={
            "namespace": app.namespace,
            "flaskapp": app.name,
            "replicaSet": replica_set,
            "since": since,
            "blocker": blocked,
        },
    )
    return blocked


def _disruption_budget(kube: Client, app: FlaskAppSpec, events: list[Event]) -> None:
    """A PodDisruptionBudget while replicas >= 2; removed (only if ours, only the one seen) below that."""
    current = kube.get("PodDisruptionBudget", app.namespace, app.name)
    if app.replicas >= manifests.PDB_MIN_REPLICAS:
        require_owned(app, current, names.AVAILABLE, "PodDisruptionBudget", app.name)
        # existed=False: apps deployed before budgets existed have none, so a missing one is no repair.
        apply_if_changed(kube, app, manifests.pod_disruption_budget(app), current, events, existed=False)
    elif current is not None and owned_or_none(app, current) is not None:
        # One replica: a budget of maxUnavailable 1 would only hide that a drain takes the app down.
        delete_decided(kube, "PodDisruptionBudget", app.namespace, app.name, current["metadata"].get("uid"))
