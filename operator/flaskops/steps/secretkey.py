"""Step 3b, secret key: the `<app>-secret-key` Secret (SECRET_KEY, and SECRET_KEY_FALLBACKS after a
rotation), generated once and rotated only by a new spec.secretKey.rotation; or the digest of the user's
own key (spec.secretKey.secretRef).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import conditions as c
from .. import manifests, names
from ..kube import decode_secret
from ..spec import FlaskAppSpec
from .children import Client, ensure_secret, repaired, require_owned
from .result import RETRY_DATABASE_SECONDS, Event, Halt, StepResult

# Annotation on the secret-key Secret: which spec.secretKey.rotation produced the current key.
ROTATION = f"{names.ANNOTATION_PREFIX}/rotation"
# How many old signing keys stay valid after rotations.
MAX_FALLBACKS = 2


@dataclass(frozen=True)
class SecretKey(StepResult):
    """The step's result; `data`: what the Deployment's checksum covers (the Secret's data, or the digest
    of the user's key)."""

    data: Mapping[str, str] = field(default_factory=dict)


def ensure(kube: Client, app: FlaskAppSpec, previous: Mapping[str, Any]) -> SecretKey:
    """The app's signing key in place. `previous`: the status before this reconcile (an app that served
    has lost its Secret when it is missing: a DriftRepaired Warning). Halts with DatabaseReady=False:
    SecretKeyNotFound (retried), NotOwned (stalled). Events: SecretKeyRotated, DriftRepaired."""
    events: list[Event] = []
    try:
        return SecretKey(data=_ensure(kube, app, previous, events), events=tuple(events))
    except Halt as halt:
        return halt.result(SecretKey, events=events)


def _ensure(
    kube: Client, app: FlaskAppSpec, previous: Mapping[str, Any], events: list[Event]
) -> Mapping[str, str]:
    if app.secret_key_ref is not None:
        data = kube.read_secret_data(app.namespace, app.secret_key_ref.name)
        if data is None or app.secret_key_ref.key not in data:
            raise Halt(
                c.false(
                    names.DATABASE_READY,
                    "SecretKeyNotFound",
                    f"key '{app.secret_key_ref.key}' in Secret '{app.secret_key_ref.name}' does not exist "
                    "(spec.secretKey.secretRef)",
                ),
                retry_after=RETRY_DATABASE_SECONDS,
            )
        return {"SECRET_KEY": manifests.digest(data[app.secret_key_ref.key])}
    name = names.secret_key_secret_name(app.name)
    obj = kube.get("Secret", app.namespace, name)
    require_owned(app, obj, names.DATABASE_READY, "Secret", name)
    existing = decode_secret(obj)
    rotation = app.secret_key_rotation or ""
    seen_rotation = ((obj or {}).get("metadata") or {}).get("annotations", {}).get(ROTATION, "")
    # Removing spec.secretKey.rotation is not a rotation: only a new, non-empty value rotates the key.
    if existing and names.SECRET_KEY in existing and (seen_rotation == rotation or not rotation):
        ensure_secret(kube, app, name, "secret-key", existing, obj, annotations={ROTATION: seen_rotation})
        return existing
    if obj is None and previous.get("servingImage"):
        # It existed (the app served with it): someone deleted it. The old key is gone with it.
        events.append(
            repaired(
                "Secret",
                name,
                "was deleted; recreated with a new SECRET_KEY (sessions signed with the old one end)",
            )
        )
    data = {names.SECRET_KEY: secrets.token_urlsafe(48), names.SECRET_KEY_FALLBACKS: ""}
    if existing and names.SECRET_KEY in existing:
        old = [existing[names.SECRET_KEY]] + [
            k for k in existing.get(names.SECRET_KEY_FALLBACKS, "").split(",") if k
        ]
        data[names.SECRET_KEY_FALLBACKS] = ",".join(old[:MAX_FALLBACKS])
        events.append(
            Event("Normal", "SecretKeyRotated", f"rotated SECRET_KEY in Secret '{name}' ({rotation})")
        )
    ensure_secret(kube, app, name, "secret-key", data, obj, annotations={ROTATION: rotation})
    return data
