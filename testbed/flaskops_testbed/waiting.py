"""Waiting for Kubernetes state without fixed sleeps: watches where possible, short polls otherwise.

Every wait has a deadline and, when it expires, an error naming what was awaited and the last state
seen, so a failing test says "Job x never Complete; last: Failed=True (BackoffLimitExceeded)" rather
than "timeout".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")

# A watch is re-opened at most this often (seconds); the server closes idle watches on its own too.
_WATCH_CHUNK = 30


def api_client(kubeconfig: Path | str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient for one kubeconfig, without touching the kubernetes package's global default."""
    return config.new_client_from_config(
        config_file=str(kubeconfig) if kubeconfig is not None else None, context=context
    )


class NotYet(Exception):
    """Raised by a `wait_for` predicate to say "not yet" and describe the state it saw."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    *,
    what: str,
    interval: float = 0.2,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    A predicate may raise `NotYet("what I saw")` to describe the state; any other exception also
    counts as "not yet" (the object may not exist yet). The last one is reported when the deadline
    passes. Prefer `watch_until` for one API object.
    """
    deadline = time.monotonic() + timeout
    last: object = "<never evaluated>"
    while True:
        try:
            value = predicate()
        except NotYet as exc:
            last = str(exc)
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last state: {last}")
        time.sleep(interval)


def _get(obj: Any, *keys: str) -> Any:
    """Read a nested field from an API model object or a plain dict (custom objects are dicts)."""
    for key in keys:
        if obj is None:
            return None
        if isinstance(obj, Mapping):
            obj = obj.get(key)
        else:
            # Model attributes are snake_case; the JSON keys callers pass are camelCase.
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
            obj = getattr(obj, snake, None)
    return obj


def conditions(obj: Any) -> dict[str, Any]:
    """The object's status conditions keyed by type (works for models and dicts)."""
    return {_get(c, "type"): c for c in (_get(obj, "status", "conditions") or [])}


def condition_status(obj: Any, type_: str) -> str | None:
    """ "True", "False", "Unknown", or None when the condition is absent."""
    found = conditions(obj).get(type_)
    return None if found is None else _get(found, "status")


def has_condition(type_: str, status: str = "True") -> Callable[[Any], bool]:
    """A predicate for `watch_until`: the object has condition `type_` with `status`."""
    return lambda obj: condition_status(obj, type_) == status


def describe_conditions(obj: Any) -> str:
    """A short one-line summary of an object for timeout messages."""
    kind = _get(obj, "kind") or type(obj).__name__.removeprefix("V1")
    name = _get(obj, "metadata", "name")
    parts = []
    for type_, cond in conditions(obj).items():
        reason = _get(cond, "reason")
        message = _get(cond, "message")
        detail = ", ".join(str(x) for x in (reason, message) if x)
        parts.append(f"{type_}={_get(cond, 'status')}" + (f" ({detail})" if detail else ""))
    return f"{kind} {name}: " + ("; ".join(parts) if parts else "no conditions yet")


def watch_until(
    list_func: Callable[..., Any],
    predicate: Callable[[Any], bool],
    *,
    timeout: float,
    what: str,
    describe: Callable[[Any], str] = describe_conditions,
    **list_kwargs: Any,
) -> Any:
    """List then watch with `list_func` until an object satisfies `predicate`; return that object.

    `list_func` is any list call of the kubernetes client, e.g. `BatchV1Api(api).list_namespaced_job`
    with `namespace=..., field_selector="metadata.name=NAME"`, or
    `CustomObjectsApi(api).list_namespaced_custom_object` with group/version/namespace/plural.
    """
    deadline = time.monotonic() + timeout
    last = "<nothing seen>"
    while True:
        # (Re)list: it answers at once when the state is already reached, and after a watch expired
        # or the resourceVersion got too old (410 Gone) it restarts from a consistent snapshot.
        listing = list_func(**list_kwargs)
        for obj in _get(listing, "items") or []:
            last = describe(obj)
            if predicate(obj):
                return obj
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last state: {last}")
        resource_version = _get(listing, "metadata", "resourceVersion")
        stream = watch.Watch()
        try:
            for event in stream.stream(
                list_func,
                resource_version=resource_version,
                timeout_seconds=max(1, min(_WATCH_CHUNK, int(remaining + 0.999))),
                _request_timeout=min(_WATCH_CHUNK, remaining) + 5,
                **list_kwargs,
            ):
                obj = event["object"]
                if event["type"] == "DELETED":
                    last = f"{describe(obj)} (deleted)"
                elif event["type"] in ("ADDED", "MODIFIED"):
                    last = describe(obj)
                    if predicate(obj):
                        return obj
                if time.monotonic() >= deadline:
                    break
        except ApiException as exc:
            if exc.status != 410:
                raise
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError):
            pass  # the connection dropped or idled out: relist and watch again
        finally:
            stream.stop()
