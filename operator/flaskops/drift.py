"""Has someone changed a child since the operator applied it? Pure comparison of what the operator sends
with what the API server holds.

A child is "drifted" when a field the operator sets has another value (or is gone). Fields the operator
does not set (defaults the API server fills in, another controller's annotations, status) are not drift:
server-side apply leaves them alone too. Two equivalences the API server introduces are not drift either:
a resource quantity written another way ("0.5" is stored as "500m"), and an empty value the server omits
(Go's `omitempty`: "", 0, false, {} and [] are not stored).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.utils import parse_quantity


def differences(desired: Any, live: Any, path: str = "") -> list[str]:
    """The paths (e.g. ``spec.template.spec.containers[0].image``) where `live` lacks what `desired` sets.

    `desired` is what the operator would send (a dict of JSON values); `live` what a GET returned (or None
    for an object that is gone: then the answer is ``[""]`` unless `desired` is empty). Lists are compared
    item by item and must have the same length: every list the operator sends (containers, env, ports,
    volumes) it sends whole.
    """
    if _empty(desired) and _empty(live):
        return []
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return [path]
        out: list[str] = []
        for key, want in desired.items():
            out.extend(differences(want, live.get(key), f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [path]
        out = []
        for i, (want, have) in enumerate(zip(desired, live, strict=True)):
            out.extend(differences(want, have, f"{path}[{i}]"))
        return out
    if desired == live or _same_quantity(path, desired, live):
        return []
    return [path]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == 0 or value is False or value == {} or value == []


def _same_quantity(path: str, desired: Any, live: Any) -> bool:
    """Whether two resource quantities under a `resources` field are equal ("0.5" and "500m")."""
    if ".resources." not in f".{path}" or not isinstance(desired, str | int) or not isinstance(live, str):
        return False
    try:
        return bool(parse_quantity(desired) == parse_quantity(live))
    except ValueError:
        return False
