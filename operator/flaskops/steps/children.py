"""The app's children as every step writes them: only the ones this FlaskApp owns, only when they differ,
a drift put back and told, a refusal by the API server turned into the spec's fault, a delete of exactly
the object decided about.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from .. import conditions as c
from .. import drift, manifests, names
from ..cache import CachedClient
from ..kube import ApiException, Kube
from ..spec import FlaskAppSpec
from .result import Event, Halt

log = logging.getLogger("flaskops.reconcile")

# Annotation on each child: the digest of what the operator last sent, so an unchanged child is not rewritten.
APPLIED_HASH = f"{names.ANNOTATION_PREFIX}/applied-hash"
# The reason on a step's condition when a child's name is taken by an object this FlaskApp does not own.
NOT_OWNED = "NotOwned"
# The reason of the Warning Event posted when a child someone deleted or edited is put back.
DRIFT_REPAIRED = "DriftRepaired"
# HTTP statuses of a child the API server refuses as invalid (422 Invalid; 400 when it cannot decode it).
INVALID = (400, 422)

Client = Kube | CachedClient


def repaired(kind: str, name: str, what: str) -> Event:
    return Event("Warning", DRIFT_REPAIRED, f"{kind} '{name}' {what}")


def applied_hash(obj: Mapping[str, Any] | None) -> str | None:
    """The digest of the desired state the operator last applied to a child (its annotation)."""
    return (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(APPLIED_HASH)


def owned_or_none(app: FlaskAppSpec, obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The object when this FlaskApp owns it (an ownerReference with its UID), else None."""
    if obj is None:
        return None
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return obj if any(ref.get("uid") == app.uid for ref in refs) else None


def require_owned(app: FlaskAppSpec, obj: Mapping[str, Any] | None, type_: str, kind: str, name: str) -> None:
    """Halt when a child's name is taken by an object this FlaskApp does not own: never overwrite, adopt
    or delete it (Knative's NotOwned)."""
    if obj is not None and owned_or_none(app, obj) is None:
        raise Halt(
            c.false(
                type_,
                NOT_OWNED,
                f"{kind} '{name}' exists and is not owned by this FlaskApp; flaskops never overwrites, adopts "
                f"or deletes it — delete or rename that {kind}, or rename the FlaskApp",
            ),
            stalled=True,
        )


def invalid(exc: ApiException) -> bool:
    """Whether the API server refused a child as invalid (the same request can never succeed)."""
    if exc.status in INVALID:
        return True
    # A server-side apply whose content cannot even be converted to the typed object (e.g. a resource quantity
    # "lots") comes back as a 500 carrying the conversion error, every time.
    return exc.status == 500 and "unable to convert unstructured object" in str(exc.body or "")


def rejected(exc: ApiException, type_: str, what: str) -> Halt:
    """The API server refused a child built from the spec: the schema passes `resources`, `env` and labels
    through as they are, and the same spec can never succeed, so stall with the server's reason."""
    try:
        detail = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        detail = str(exc.reason)
    return Halt(
        c.false(type_, "InvalidSpec", f"the API server refused {what}: {detail}; fix the FlaskApp's spec"),
        stalled=True,
    )


def delete_decided(kube: Client, kind: str, namespace: str, name: str, uid: str | None) -> bool | None:
    """Delete the object the operator decided about, and only it: the delete names its uid, so an object
    someone re-created under the name meanwhile is never deleted. True: deleted; False: already gone;
    None: the name holds another object now (409 Conflict) — not ours any more, left alone."""
    try:
        return kube.delete(kind, namespace, name, uid=uid or None)
    except ApiException as exc:
        if exc.status != 409:
            raise
        log.info(
            "not deleted: re-created meanwhile", extra={"kind": kind, "namespace": namespace, "child": name}
        )
        return None


def warnings(kube: Client, namespace: str) -> list[dict[str, Any]]:
    """The Warning Events in the app's namespace (what the controllers and the kubelet said)."""
    return kube.list("Event", namespace, fields="type=Warning")


def ensure_secret(
    kube: Client,
    app: FlaskAppSpec,
    name: str,
    component: str,
    data: Mapping[str, str],
    live: Mapping[str, Any] | None,
    annotations: Mapping[str, str] | None = None,
) -> bool:
    """Write the Secret when it differs from `live` (data, labels, owner, annotations); False when a
    concurrent writer created it first. Halts when the name is someone else's."""
    body = manifests.secret(app, name, component, data, annotations)
    if live is not None and not drift.differences(body, live):
        return True
    if live is None:
        try:
            kube.create(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Taken: by a concurrent reconcile of this app, or by an object the label-selected watch
            # does not see (someone else's, never to be overwritten).
            require_owned(app, kube.live("Secret", app.namespace, name), names.DATABASE_READY, "Secret", name)
            return False
        return True
    kube.apply(body)
    return True


def apply_if_changed(
    kube: Client,
    app: FlaskAppSpec,
    desired: dict[str, Any],
    current: Mapping[str, Any] | None,
    events: list[Event],
    *,
    existed: bool,
) -> dict[str, Any] | None:
    """Server-side apply `desired` unless the child already carries it; the object the API server
    returned when it applied, else None. A drift it puts back is appended to `events` (the calling
    step's own list).

    `current` is what the operator knows of the child (a cache view, or a whole object). A child whose
    content is verified to carry `desired` — applied or compared by this process since its content last
    changed — is not read again. Anything else (a first sight after a start, someone's edit, an object
    the cache does not know) is read whole from the API server and compared field by field.
    `existed`: whether the child should be there already (the app served before), so that its absence
    is someone's deletion, reported as a repair, not a first creation.
    """
    digest = manifests.digest(desired)
    kind, name = desired["kind"], desired["metadata"]["name"]
    namespace = desired["metadata"]["namespace"]
    if current is not None and applied_hash(current) == digest and kube.verified(current, digest):
        return None
    live = kube.live(kind, namespace, name)
    # The label-selected watch does not see an object someone else made under this name.
    require_owned(app, live, names.AVAILABLE, kind, name)
    have = applied_hash(live)
    changed = drift.differences(desired, live) if live is not None else []
    if live is not None and have == digest and not changed:
        kube.verify(live, digest)
        return None
    if live is not None and have == digest:
        # Same spec as last applied, yet the object differs: someone edited a field flaskops sets.
        events.append(
            repaired(kind, name, f"was changed outside flaskops ({', '.join(changed[:3])}); put back")
        )
    elif live is None and existed:
        events.append(repaired(kind, name, "was deleted; recreated"))
    if live is not None and changed:
        # An apply alone cannot undo every edit: an item someone re-keyed in a list merged by key (a
        # Service port changed from 80 to 8081) is theirs, and ours would be added beside it. A merge
        # patch replaces such lists whole; the apply below then owns the fields again.
        kube.merge_patch(kind, namespace, name, {"spec": desired["spec"]})
    desired["metadata"].setdefault("annotations", {})[APPLIED_HASH] = digest
    applied = kube.apply(desired)
    kube.verify(applied, digest)
    log.info("applied", extra={"kind": kind, "namespace": namespace, "child": name, "was": have})
    return applied
