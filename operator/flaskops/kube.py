"""Thin, JSON-in/JSON-out access to the Kubernetes API (the one place that talks to it)."""

from __future__ import annotations

import base64
import builtins
import json
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from . import names

log = logging.getLogger(__name__)

USER_AGENT = "flaskops-operator"
FIELD_MANAGER = "flaskops"

__all__ = ["USER_AGENT", "ApiException", "Kube", "is_conflict", "is_not_found"]

# (group-version path prefix, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Secret": ("api/v1", "secrets", True),
    "Service": ("api/v1", "services", True),
    "Event": ("api/v1", "events", True),
    "Namespace": ("api/v1", "namespaces", False),
    "Job": ("apis/batch/v1", "jobs", True),
    "Deployment": ("apis/apps/v1", "deployments", True),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets", True),
    names.FLASKAPP_KIND: (f"apis/{names.API_VERSION}", names.FLASKAPP_PLURAL, True),
    names.POSTGRESSERVER_KIND: (f"apis/{names.API_VERSION}", names.POSTGRESSERVER_PLURAL, False),
}


# Written escaped, as JSON allows: what YAML forbids raw in a stream above U+001F (JSON escapes everything
# below), i.e. DEL, the C1 controls and U+FFFE/U+FFFF, and what the API server's YAML 1.1 parser reads as a
# line break inside a string (NEL, U+2028, U+2029).
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def apply_payload(body: Mapping[str, Any]) -> bytes:
    """A server-side apply body: JSON (which is YAML 1.2), with characters beyond U+FFFF written as UTF-8.

    The client's own json.dumps escapes them as UTF-16 surrogate pairs, which the API server's YAML parser
    refuses ("invalid Unicode character escape code"): one emoji in an env value or annotation would block
    every rollout of the app.
    """
    text = json.dumps(body, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


def merge_patch_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: changed values, and null for every key
    `new` lacks — a merge patch that only sends `new` would leave such keys (e.g. the previous
    migration's completedAt) in place forever. Lists are replaced whole, as RFC 7386 does."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch_diff(before, value)
            if sub:
                patch[key] = sub
        elif key not in old or before != value:
            patch[key] = value
    return patch


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 404


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 409


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def own_namespace(sa_file: str = SERVICE_ACCOUNT_NAMESPACE, kubeconfig: str | None = None) -> str | None:
    """The operator's own namespace: its ServiceAccount's in a pod, else the current context's of the
    kubeconfig (`kubeconfig`, default KUBECONFIG or ~/.kube/config); None when neither says."""
    try:
        with open(sa_file) as f:
            return f.read().strip() or None
    except OSError:
        pass
    try:
        _, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError):
        return None
    return ((current or {}).get("context") or {}).get("namespace") or None


def load_config() -> client.ApiClient:
    """An ApiClient from the in-cluster service account, else KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.ApiClient()
    api.user_agent = USER_AGENT
    return api


class Kube:
    """Generic REST verbs on the resources the operator manages; bodies are plain dicts."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or load_config()

    def _path(self, kind: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        prefix, plural, namespaced = RESOURCES[kind]
        parts = [prefix]
        if namespaced and namespace:
            parts += ["namespaces", quote(namespace)]
        parts.append(plural)
        if name:
            parts.append(quote(name))
        if sub:
            parts.append(sub)
        return "/" + "/".join(parts)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(*params, _request_timeout=30)
        data = resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException(http_resp=resp)
        return json.loads(data) if data else None

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", self._path(kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self, kind: str, namespace: str | None = None, selector: str | None = None, fields: str | None = None
    ) -> list[dict[str, Any]]:
        query = {k: v for k, v in {"labelSelector": selector, "fieldSelector": fields}.items() if v}
        return list(self.request("GET", self._path(kind, namespace), query=query).get("items") or [])

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        # The field manager names the writer in managedFields, so the operator can tell its own writes'
        # echoes from other people's changes (handlers._news).
        return self.request(
            "POST",
            self._path(body["kind"], meta.get("namespace")),
            body=dict(body),
            query={"fieldManager": FIELD_MANAGER},
        )

    def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply: the operator owns exactly the fields it sends."""
        meta = body["metadata"]
        return self.request(
            "PATCH",
            self._path(body["kind"], meta.get("namespace"), meta["name"]),
            body=apply_payload(body),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def merge_patch(
        self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any], sub: str | None = None
    ) -> dict[str, Any]:
        return self.request(
            "PATCH",
            self._path(kind, namespace, name, sub),
            body=dict(patch),
            query={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )

    def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        propagation: str = "Background",
        *,
        uid: str | None = None,
    ) -> bool:
        """Delete; False when it was already gone.

        `uid`: delete only the object with this uid (DeleteOptions.preconditions). When the name now holds
        another object (deleted and re-created by someone meanwhile) the API server refuses with 409
        Conflict, raised here as ApiException: the caller decided about an object that is no longer there.
        """
        options: dict[str, Any] = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": propagation,
        }
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", self._path(kind, namespace, name), body=options)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's decoded data, or None when it does not exist."""
        return decode_secret(self.get("Secret", namespace, name))

    # The reads cache.CachedClient answers from memory; here every one is a request.

    def live(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The whole object from the API server (as get)."""
        return self.get(kind, namespace, name)

    def jobs(self, namespace: str, app: str) -> builtins.list[dict[str, Any]]:
        """An app's Jobs (label-selected)."""
        return self.list("Job", namespace, selector=f"{names.LABEL_APP}={app}")

    def verified(self, current: Mapping[str, Any], desired_digest: str) -> bool:
        """Without a cache nothing is known to be verified: every child is compared field by field."""
        return False

    def verify(self, live: Mapping[str, Any], desired_digest: str) -> None:
        """Nothing to remember without a cache."""


def decode_secret(obj: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The decoded `data` of a Secret object, or None for no object."""
    if obj is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
