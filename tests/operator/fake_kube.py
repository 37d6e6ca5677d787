"""An in-memory Kubernetes API behind the `flaskops.kube.Kube` interface, for behaviour tests that run in
milliseconds (CloudNativePG's fake client is the model). tests/e2e/test_fake_kube_contract.py runs the same requests
against the real API server and this fake and compares the answers, so the two cannot drift apart silently.

What the fake does as the API server does:

- identity: ``uid`` (a UUID), ``creationTimestamp``, a cluster-wide ``resourceVersion`` that moves on every
  write that changes the object and never on one that changes nothing; ``generation`` (on kinds that have
  one) moves only when something outside ``metadata`` and ``status`` changed (on a Deployment, also when its
  annotations change: the registry does so), and once more when a deletion is held by finalizers;
- status subresource (Deployment, Job, Service, PodDisruptionBudget, FlaskApp, PostgresServer, Namespace):
  a write to the object ignores ``status``, a write to ``sub="status"`` changes only ``status``, and a
  create drops the ``status`` it is given;
- errors are ``ApiException`` exactly as ``Kube.request`` raises them: ``status`` the HTTP code,
  ``reason`` the HTTP reason phrase ("Not Found"), ``body`` the API server's ``Status`` JSON (its
  ``reason``: NotFound, AlreadyExists, Conflict, Invalid, BadRequest; its ``message`` worded as the server
  words it). 404 for a missing object or namespace, 409 for create-on-exists and a stale
  ``metadata.resourceVersion``, 422 for an invalid name, label or ownerReference, annotations over 256 KiB,
  a Deployment whose selector misses its template's labels, a changed Deployment selector or Job
  template, a Secret's changed ``type``; 400 for a Secret value that is not base64 and an unsupported field
  selector;
- defaults a reader may see: a Secret's ``type: Opaque`` and ``stringData`` folded into ``data``; a
  Deployment's ``replicas`` (1) and ``progressDeadlineSeconds`` (600); a Job's controller-uid selector and
  template labels, ``backoffLimit`` (6), ``completions`` and ``parallelism`` (1); a Service's ``clusterIP``;
- label selectors (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``) and the field selectors the
  API server supports for the kinds here (``metadata.name``/``namespace`` everywhere, Event ``type``,
  ``reason``, ``involvedObject.*``, ``source``, ``reportingComponent``, Secret ``type``, Job
  ``status.successful``, Namespace ``status.phase``); lists come sorted by namespace and name;
- merge patch as RFC 7386 (null deletes, maps merge, lists are replaced whole);
- deletion: gone at once, or with finalizers a ``deletionTimestamp`` and gone when the last one is removed;
  a ``preconditions.uid`` that names another object than the one under the name is a 409 Conflict;
- ``managedFields``: one entry per (manager, operation, subresource) naming the fields it owns.

Simplifications (documented here so no test leans on them by accident):

- server-side apply is "set the fields we send, remove the fields this manager sent last time and no longer
  sends (unless another manager owns them)", with ``force=true`` taking ownership from other managers.
  Lists the API merges by key are merged by the same keys (containers, env, volumes by name, volumeMounts
  by mountPath, ports by port and protocol, ownerReferences by uid), so another manager's item survives an
  apply as it does for real (a Service port someone re-keyed stays beside ours: two ports named "http" is
  a 422); ownership inside list items is not tracked (an item's stale fields go by what this manager
  applied last), and every other list is atomic;
- custom resources (FlaskApp, PostgresServer) are pruned of the fields their CRD in crds/ does not declare
  and defaulted by it, on every write (spec and status alike); their OpenAPI and CEL validation is not
  run (tests/e2e/test_crd_validation.py covers it);
- no field of a built-in kind is dropped for being empty (Go's ``omitempty``) and no quantity is normalised ("0.5" stays
  "0.5"): drift.differences treats those as equal anyway;
- no controllers run by themselves: a test makes the Job controller finish a Job, the Deployment controller
  roll out, a component post a Warning Event, and the garbage collector delete orphans, by calling
  `finish_job`, `start_job`, `roll_out`, `stall_rollout`, `warning_event` and `collect_garbage`;
- no admission (webhooks, quotas, Pod Security) and no RBAC; `reject` makes a kind's writes fail the way
  an API server refusal does.

Every request is recorded in `calls` as (verb, kind, manager), so a test can count what the operator read and
wrote.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import http
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path as FilePath
from typing import Any

import yaml

from flaskops import names
from flaskops.kube import FIELD_MANAGER, RESOURCES, ApiException, Kube, apply_payload, decode_secret

__all__ = ["START", "FakeKube", "Selector", "api_error", "merge_patch"]

START = datetime(2026, 1, 1, tzinfo=UTC)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Kinds whose writes to the object ignore `status` (it has its own subresource).
STATUS_SUBRESOURCE = frozenset(
    {
        "Deployment",
        "Job",
        "Service",
        "PodDisruptionBudget",
        "Namespace",
        names.FLASKAPP_KIND,
        names.POSTGRESSERVER_KIND,
    }
)
# Kinds that carry metadata.generation (Secrets, Services, Events and Namespaces do not).
GENERATION = frozenset(
    {"Deployment", "Job", "PodDisruptionBudget", names.FLASKAPP_KIND, names.POSTGRESSERVER_KIND}
)
# Metadata the server owns: a write cannot set it, and it is no field a manager owns.
SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
MAX_ANNOTATIONS_BYTES = 256 * 1024

# Field selectors the API server accepts, per kind, beyond metadata.name and metadata.namespace.


def _involved(field: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda o: (o.get("involvedObject") or {}).get(field)


_EVENT_FIELDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "type": lambda o: o.get("type"),
    "reason": lambda o: o.get("reason"),
    "source": lambda o: (o.get("source") or {}).get("component"),
    "reportingComponent": lambda o: o.get("reportingComponent"),
    **{
        f"involvedObject.{f}": _involved(f)
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    },
}
FIELDS: dict[str, dict[str, Callable[[Mapping[str, Any]], Any]]] = {
    "Event": _EVENT_FIELDS,
    "Secret": {"type": lambda o: o.get("type")},
    "Job": {"status.successful": lambda o: (o.get("status") or {}).get("succeeded", 0)},
    "Namespace": {"status.phase": lambda o: (o.get("status") or {}).get("phase")},
}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# Kubernetes' rand.SafeEncodeString alphabet: the suffixes of ReplicaSet and pod names.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


# --- errors ---------------------------------------------------------------------------------------------


def api_error(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> ApiException:
    """The ApiException `Kube.request` raises for this answer: HTTP code and phrase, the Status as body."""
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": dict(details or {}),
        "code": code,
    }
    exc = ApiException(status=code, reason=http.HTTPStatus(code).phrase, body=json.dumps(status))
    exc.headers = {"Content-Type": "application/json"}
    return exc


@dataclass(frozen=True)
class _Kind:
    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """How Status messages name the resource: `deployments.apps`, `secrets`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def qualified(self) -> str:
        """How Invalid messages name the kind: `Deployment.apps`, `Secret`."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def details(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "kind": self.plural}
        if self.group:
            out["group"] = self.group
        return out

    def not_found(self, name: str) -> ApiException:
        return api_error(404, "NotFound", f'{self.resource} "{name}" not found', self.details(name))

    def exists(self, name: str) -> ApiException:
        return api_error(409, "AlreadyExists", f'{self.resource} "{name}" already exists', self.details(name))

    def conflict(self, name: str) -> ApiException:
        return api_error(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {self.resource} "{name}": the object has been modified; please '
            "apply your changes to the latest version and try again",
            self.details(name),
        )

    def invalid(self, name: str, causes: list[str]) -> ApiException:
        return api_error(
            422, "Invalid", f'{self.qualified()} "{name}" is invalid: {", ".join(causes)}', self.details(name)
        )


def _kind(kind: str) -> _Kind:
    prefix, plural, namespaced = RESOURCES[kind]
    parts = prefix.split("/")  # api/v1 | apis/<group>/<version>
    group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
    return _Kind(kind, group, version, plural, namespaced)


# --- merge patch and field sets -------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: `patch` applied to `target` (neither is changed): null removes a key, objects merge,
    everything else (lists included) replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


FieldPath = tuple[str, ...]
# Spelled here: inside FakeKube, `list` is the verb.
_Objects = list[dict[str, Any]]
_Keys = list[tuple[str, str, str]]


def _leaves(obj: Any, prefix: FieldPath = ()) -> dict[FieldPath, Any]:
    """Every leaf of a JSON object by its path; lists and empty objects are leaves (lists are atomic)."""
    if isinstance(obj, Mapping) and obj:
        out: dict[FieldPath, Any] = {}
        for key, value in obj.items():
            out.update(_leaves(value, (*prefix, str(key))))
        return out
    return {prefix: obj}


def _owned_paths(obj: Mapping[str, Any], *, status: bool) -> dict[FieldPath, Any]:
    """The leaves a write of `obj` sets: the status's or everything else's, never server-owned metadata."""
    if status:
        return {("status", *p): v for p, v in _leaves(obj.get("status") or {}).items() if p}
    out: dict[FieldPath, Any] = {}
    for key, value in obj.items():
        if key in ("status", "apiVersion", "kind"):
            continue
        if key == "metadata":
            meta = {k: v for k, v in value.items() if k not in (*SERVER_METADATA, "name", "namespace")}
            out.update({("metadata", *p): v for p, v in _leaves(meta).items() if p})
        else:
            out.update(_leaves(value, (key,)))
    return out


def _remove(obj: dict[str, Any], path: FieldPath) -> None:
    """Remove the leaf at `path` and the objects it leaves empty."""
    parents = [obj]
    for key in path[:-1]:
        nxt = parents[-1].get(key)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1], None)


def _fields_v1(paths: Iterable[FieldPath]) -> dict[str, Any]:
    """managedFields' FieldsV1 for a set of paths: {"f:spec": {"f:replicas": {}}}."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


# --- selectors ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """A parsed label selector: requirements (key, operator, values), all of which must hold."""

    requirements: tuple[tuple[str, str, frozenset[str]], ...]

    _REQUIREMENT = re.compile(
        r"^\s*(?:!\s*(?P<nkey>[^\s!=,()]+)"
        r"|(?P<key>[^\s!=,()]+)(?:\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=,()]*)"
        r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^()]*)\))?)\s*$"
    )

    @classmethod
    def parse(cls, text: str | None) -> Selector:
        """Raises api_error 400 for what the API server cannot parse either."""
        reqs: list[tuple[str, str, frozenset[str]]] = []
        for part in _split_top_level(text or ""):
            m = cls._REQUIREMENT.match(part)
            if m is None or not part.strip():
                raise api_error(400, "BadRequest", f"unable to parse requirement: {part!r}")
            if m["nkey"]:
                reqs.append((m["nkey"], "!", frozenset()))
            elif m["op"]:
                reqs.append((m["key"], "!=" if m["op"] == "!=" else "=", frozenset({m["value"]})))
            elif m["setop"]:
                values = frozenset(v.strip() for v in m["values"].split(","))
                reqs.append((m["key"], m["setop"], values))
            else:
                reqs.append((m["key"], "exists", frozenset()))
        return cls(tuple(reqs))

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, op, values in self.requirements:
            has, value = key in labels, labels.get(key)
            ok = {
                "=": has and value in values,
                "in": has and value in values,
                "!=": not has or value not in values,
                "notin": not has or value not in values,
                "exists": has,
                "!": not has,
            }[op]
            if not ok:
                return False
        return True


def _split_top_level(text: str) -> list[str]:
    """Split on the commas that are not inside parentheses (`a in (1,2),b`)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if text:
        parts.append(text[start:])
    return parts


def _field_matcher(kind: str, text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    getters: dict[str, Callable[[Mapping[str, Any]], Any]] = {
        "metadata.name": lambda o: o["metadata"]["name"],
        "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
        **FIELDS.get(kind, {}),
    }
    tests = []
    for part in (text or "").split(","):
        if not part:
            continue
        m = re.match(r"^([^!=]+)(==|=|!=)(.*)$", part)
        if m is None:
            raise api_error(400, "BadRequest", f"invalid field selector: {part!r}")
        field, op, value = m.groups()
        if field not in getters:
            raise api_error(400, "BadRequest", f"field label not supported: {field}")
        tests.append((getters[field], op == "!=", value))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((_text(get(obj)) == value) != negate for get, negate, value in tests)

    return match


# --- the fake -------------------------------------------------------------------------------------------


class FakeKube(Kube):
    """`flaskops.kube.Kube` over a dict (see the module docstring for what it does like the API server).

    `namespaces`: Namespaces that exist from the start (creating in a missing one is a 404, as for real).
    Every write method takes an optional keyword `manager` (default "flaskops", the operator's field
    manager): a test playing a user or another controller writes under another name, as kubectl would.
    """

    def __init__(self, namespaces: Iterable[str] = ()) -> None:
        # No ApiClient: every verb is served here; a raw `request` is refused (see below).
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        # Per object: which (manager, operation, subresource) owns which paths, and when each last wrote.
        self._owners: dict[tuple[str, str, str], dict[tuple[str, str, str], set[FieldPath]]] = {}
        # Per object and manager: what its last apply sent (to merge keyed lists as the real one does).
        self._applied: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._times: dict[tuple[str, str, str], dict[tuple[str, str, str], str]] = {}
        self._versions = itertools.count(1001)
        self._uids = itertools.count(1)
        self._ips = itertools.count(10)
        self._rejections: list[tuple[str, Callable[[Mapping[str, Any]], bool], int, str]] = []
        self._watchers: list[Callable[[str, dict[str, Any]], None]] = []
        self.clock = START
        self.calls: list[tuple[str, str, str]] = []
        for ns in namespaces:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, manager="setup")

    # --- time and bookkeeping ---

    def now(self) -> str:
        """The fake's clock, RFC 3339 to the second (what Reconciler(now=...) takes)."""
        return self.clock.strftime(TIME_FORMAT)

    def advance(self, seconds: float) -> None:
        self.clock += timedelta(seconds=seconds)

    def count(self, verbs: Iterable[str] | None = None, manager: str | None = FIELD_MANAGER) -> int:
        """How many recorded requests have one of `verbs` (all when None) by `manager` (anyone when None)."""
        wanted = set(verbs) if verbs is not None else None
        return sum(
            1
            for verb, _, who in self.calls
            if (wanted is None or verb in wanted) and (manager is None or who == manager)
        )

    def watch(self, callback: Callable[[str, dict[str, Any]], None]) -> None:
        """Call `callback(type, object)` (ADDED, MODIFIED, DELETED) after every change, as a watch would."""
        self._watchers.append(callback)

    def reject(self, kind: str, when: Callable[[Mapping[str, Any]], bool], status: int, message: str) -> None:
        """Refuse every write (create, apply, patch) of `kind` for which `when(body)` holds with `status` (400, 422, 500)
        and `message` in the Status, as an API server refuses what its validation or conversion cannot take."""
        self._rejections.append((kind, when, status, message))

    def _key(self, kind: str, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (kind, (namespace or "") if _kind(kind).namespaced else "", name)

    def _notify(self, type_: str, obj: Mapping[str, Any]) -> None:
        for watcher in self._watchers:
            watcher(type_, copy.deepcopy(dict(obj)))

    # --- the Kube verbs ---

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("FakeKube serves Kube's verbs; a raw request has no fake (add a verb)")

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind, FIELD_MANAGER))
        obj = self._objects.get(self._key(kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self, kind: str, namespace: str | None = None, selector: str | None = None, fields: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append(("list", kind, FIELD_MANAGER))
        labels = Selector.parse(selector)
        match = _field_matcher(kind, fields)
        scoped = _kind(kind).namespaced and namespace
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self._objects.items())
            if k == kind
            and (not scoped or ns == namespace)
            and labels.matches(obj["metadata"].get("labels") or {})
            and match(obj)
        ]

    def create(self, body: Mapping[str, Any], *, manager: str = FIELD_MANAGER) -> dict[str, Any]:
        self.calls.append(("create", body["kind"], manager))
        return self._create(_json(body), manager, "Update")

    def apply(self, body: Mapping[str, Any], *, manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply with force: see the module docstring for how lists differ from the real one."""
        self.calls.append(("apply", body["kind"], manager))
        sent = json.loads(apply_payload(body))  # what the real client puts on the wire
        meta = sent.get("metadata") or {}
        info = _kind(sent["kind"])
        key = self._key(sent["kind"], meta.get("namespace"), meta.get("name", ""))
        live = self._objects.get(key)
        if live is None:
            made = self._create(copy.deepcopy(sent), manager, "Apply")
            self._applied[key] = {
                manager: {k: v for k, v in sent.items() if k not in ("status", "apiVersion", "kind")}
            }
            return made
        self._check_version(info, live, meta)
        owner = (manager, "Apply", "")
        status_only = False
        new = copy.deepcopy(live)
        wanted = _owned_paths(sent, status=status_only)
        before = self._owners.get(key, {}).get(owner, set())
        others = {p for o, paths in self._owners.get(key, {}).items() if o != owner for p in paths}
        for path in before - set(wanted) - others:
            _remove(new, path)
        body = {k: v for k, v in sent.items() if k not in ("status", "apiVersion", "kind")}
        body["metadata"] = {k: v for k, v in meta.items() if k not in SERVER_METADATA}
        new = _apply_merge(new, body, self._applied.get(key, {}).get(manager))
        out = self._update(key, info, live, new, owner, set(wanted), replace=True)
        self._applied.setdefault(key, {})[manager] = body
        return out

    def merge_patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        sub: str | None = None,
        *,
        manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        self.calls.append(("patch", kind, manager))
        info = _kind(kind)
        key = self._key(kind, namespace, name)
        live = self._objects.get(key)
        if live is None:
            raise info.not_found(name)
        patch = _json(patch)
        self._check_version(info, live, patch.get("metadata") or {})
        if sub == "status":
            new = copy.deepcopy(live)
            if "status" in patch:
                new["status"] = merge_patch(live.get("status"), patch["status"])
        else:
            new = merge_patch(live, {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")})
            # What the server owns cannot be patched; status has its own subresource on these kinds.
            for field in SERVER_METADATA:
                if field in live["metadata"]:
                    new["metadata"][field] = live["metadata"][field]
                else:
                    new["metadata"].pop(field, None)
            if kind in STATUS_SUBRESOURCE:
                new.pop("status", None)
                if "status" in live:
                    new["status"] = live["status"]
        owner = (manager, "Update", sub or "")
        return self._update(key, info, live, new, owner, None, replace=False)

    def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        propagation: str = "Background",
        *,
        uid: str | None = None,
        manager: str = "",
    ) -> bool:
        self.calls.append(("delete", kind, manager or FIELD_MANAGER))
        key = self._key(kind, namespace, name)
        live = self._objects.get(key)
        if live is None:
            return False
        if uid is not None and uid != live["metadata"]["uid"]:
            # The registry's BeforeDelete check, worded as it words it (it names the kind, not the resource).
            info = _kind(kind)
            what = f"{kind}.{info.group}" if info.group else kind
            raise api_error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {what} "{name}": the UID in the precondition ({uid}) does '
                f"not match the UID in record ({live['metadata']['uid']}). The object might have been deleted "
                "and then recreated",
                info.details(name),
            )
        if not live["metadata"].get("finalizers"):
            self._drop(key)
            return True
        if "deletionTimestamp" not in live["metadata"]:
            # Held by finalizers: marked, and (like the registry's BeforeDelete) one more generation.
            live["metadata"].update(deletionTimestamp=self.now(), deletionGracePeriodSeconds=0)
            if kind in GENERATION:
                live["metadata"]["generation"] += 1
            live["metadata"]["resourceVersion"] = str(next(self._versions))
            self._notify("MODIFIED", live)
        return True

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return decode_secret(self.get("Secret", namespace, name))

    # --- the write path ---

    def _create(self, body: dict[str, Any], manager: str, operation: str) -> dict[str, Any]:
        info = _kind(body["kind"])
        meta = body.setdefault("metadata", {})
        name = meta.get("name", "")
        namespace = meta.get("namespace") or ""
        if info.namespaced:
            if not namespace:
                raise api_error(400, "BadRequest", "the server could not find the requested resource")
            if ("Namespace", "", namespace) not in self._objects:
                raise _kind("Namespace").not_found(namespace)
        else:
            meta.pop("namespace", None)
        key = self._key(info.kind, namespace, name)
        if not name:
            raise info.invalid("", ["metadata.name: Required value: name or generateName is required"])
        self._validate(info, body, None)
        if key in self._objects:
            raise info.exists(name)
        for field in SERVER_METADATA:
            meta.pop(field, None)
        if info.kind in STATUS_SUBRESOURCE:
            body.pop("status", None)
        body["apiVersion"] = body.get("apiVersion") or info.api_version
        n = next(self._uids)
        meta.update(
            uid=f"00000000-0000-4000-8000-{n:012x}",
            resourceVersion=str(next(self._versions)),
            creationTimestamp=self.now(),
        )
        if info.kind in GENERATION:
            meta["generation"] = 1
        _custom(body)
        sent = set(_owned_paths(body, status=False))
        _default(info.kind, body, self._ips)
        # An apply owns what it sent; a create (an Update) what it made, the server's defaults included.
        owned = sent if operation == "Apply" else set(_owned_paths(body, status=False))
        self._owners[key] = {(manager, operation, ""): owned}
        self._times[key] = {(manager, operation, ""): self.now()}
        self._stamp(key, body)
        self._objects[key] = body
        self._notify("ADDED", body)
        return copy.deepcopy(body)

    def _update(
        self,
        key: tuple[str, str, str],
        info: _Kind,
        live: dict[str, Any],
        new: dict[str, Any],
        owner: tuple[str, str, str],
        applied: set[FieldPath] | None,
        *,
        replace: bool,
    ) -> dict[str, Any]:
        """Store `new` for `live` if it differs; `owner` takes the paths it set (`applied`, or what changed)."""
        if info.kind == "Secret":
            _fold_string_data(new)
        _custom(new)
        self._validate(info, new, live)
        status_write = owner[2] == "status"
        before = _owned_paths(live, status=status_write)
        after = _owned_paths(new, status=status_write)
        taken = (
            applied if applied is not None else {p for p, v in after.items() if before.get(p, _MISSING) != v}
        )
        owners = {o: set(paths) for o, paths in self._owners.get(key, {}).items()}
        for other, paths in owners.items():
            if other != owner:
                paths -= taken
        owners[owner] = (set() if replace else owners.get(owner, set())) | taken
        owners = {o: {p for p in paths if _has(new, p)} for o, paths in owners.items()}
        owners = {o: paths for o, paths in owners.items() if paths}
        if new == live and owners == self._owners.get(key, {}):
            return copy.deepcopy(live)  # a write that changes nothing is no write
        if info.kind in GENERATION and _generational(new) != _generational(live):
            new["metadata"]["generation"] = live["metadata"]["generation"] + 1
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        self._owners[key] = owners
        times = self._times.setdefault(key, {})
        times[owner] = self.now()
        self._stamp(key, new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._drop(key)
            return copy.deepcopy(new)
        self._objects[key] = new
        self._notify("MODIFIED", new)
        return copy.deepcopy(new)

    def _stamp(self, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        """Write managedFields from the owners, as the server shows them."""
        info = _kind(key[0])
        obj["metadata"]["managedFields"] = [
            {
                "manager": manager,
                "operation": operation,
                "apiVersion": obj.get("apiVersion") or info.api_version,
                "time": self._times[key].get((manager, operation, sub), self.now()),
                "fieldsType": "FieldsV1",
                "fieldsV1": _fields_v1(paths),
                **({"subresource": sub} if sub else {}),
            }
            for (manager, operation, sub), paths in self._owners.get(key, {}).items()
        ]

    def _drop(self, key: tuple[str, str, str]) -> None:
        obj = self._objects.pop(key)
        self._owners.pop(key, None)
        self._applied.pop(key, None)
        self._times.pop(key, None)
        self._notify("DELETED", obj)

    def _check_version(self, info: _Kind, live: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        want = meta.get("resourceVersion")
        if want and want != live["metadata"]["resourceVersion"]:
            raise info.conflict(live["metadata"]["name"])

    def _validate(self, info: _Kind, obj: Mapping[str, Any], live: Mapping[str, Any] | None) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        for kind, when, status, message in self._rejections:
            if kind == info.kind and when(obj):
                raise api_error(status, http.HTTPStatus(status).phrase.replace(" ", ""), message)
        if info.kind == "Secret":
            for value in (obj.get("data") or {}).values():
                try:
                    base64.b64decode(str(value), validate=True)
                except (binascii.Error, ValueError):
                    raise api_error(
                        400,
                        "BadRequest",
                        f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data: {value!r}',
                    ) from None
        causes = _invalid(info, obj, live)
        if causes:
            raise info.invalid(name, causes)

    # --- the controllers, called by a test ---

    def start_job(self, namespace: str, name: str, *, ready: bool = True) -> dict[str, Any]:
        """The Job controller made the pod: running and ready, or (`ready=False`) pending."""
        return self._set_status(
            "Job",
            namespace,
            name,
            {
                "startTime": self._status_of("Job", namespace, name).get("startTime") or self.now(),
                "active": 1,
                "ready": 1 if ready else 0,
                "terminating": 0,
                "uncountedTerminatedPods": {},
            },
        )

    def finish_job(self, namespace: str, name: str, *, succeeded: bool = True) -> dict[str, Any]:
        """The Job controller's status when the Job completes, or fails at its backoff limit (v1.36's
        conditions: SuccessCriteriaMet + Complete, FailureTarget + Failed)."""
        job = self._objects.get(self._key("Job", namespace, name))
        if job is None:
            raise _kind("Job").not_found(name)
        old = job.get("status") or {}
        if any(c.get("type") in ("Complete", "Failed") for c in old.get("conditions") or []):
            raise AssertionError(f"Job {namespace}/{name} has finished already; a finished Job never changes")
        now = self.now()
        if succeeded:
            why = {"reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}
            types, counts = ("SuccessCriteriaMet", "Complete"), {"succeeded": 1, "completionTime": now}
        else:
            why = {"reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
            limit = int(job["spec"].get("backoffLimit", 6))
            types, counts = ("FailureTarget", "Failed"), {"failed": limit + 1}
        conds = [
            {"type": t, "status": "True", "lastProbeTime": now, "lastTransitionTime": now, **why}
            for t in types
        ]
        status = {
            "startTime": old.get("startTime") or now,
            **counts,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": conds,
        }
        return self._set_status("Job", namespace, name, status)

    def replica_set_name(self, namespace: str, name: str) -> str:
        """The ReplicaSet the Deployment controller makes for the current template: `<name>-<hash>`."""
        dep = self._objects[self._key("Deployment", namespace, name)]
        return f"{name}-{_safe(json.dumps(dep['spec']['template'], sort_keys=True), 10)}"

    def pod_name(self, owner: str, salt: str = "") -> str:
        """A pod name the Job or ReplicaSet controller would give: `<owner>-<5 characters>`."""
        return f"{owner}-{_safe(owner + salt, 5)}"

    def roll_out(self, namespace: str, name: str, *, available: int | None = None) -> dict[str, Any]:
        """The Deployment controller saw the current generation; `available` of the new pods are (default:
        all, a finished rollout). Conditions as the controller writes them (Available, Progressing)."""
        dep = self._objects.get(self._key("Deployment", namespace, name))
        if dep is None:
            raise _kind("Deployment").not_found(name)
        want = int(dep["spec"].get("replicas", 1))
        ready = want if available is None else min(available, want)
        rs = self.replica_set_name(namespace, name)
        done = ready == want
        progressing = (
            ("NewReplicaSetAvailable", f'ReplicaSet "{rs}" has successfully progressed.')
            if done
            else ("ReplicaSetUpdated", f'ReplicaSet "{rs}" is progressing.')
        )
        conds = [
            ("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if done
            else (
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            ),
            ("Progressing", "True", *progressing),
        ]
        status = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": want,
            "updatedReplicas": want,
            "readyReplicas": ready,
            "availableReplicas": ready,
            **({"unavailableReplicas": want - ready} if want - ready else {}),
            "conditions": self._deployment_conditions(dep, conds),
        }
        return self._set_status("Deployment", namespace, name, {k: v for k, v in status.items() if v != 0})

    def stall_rollout(
        self, namespace: str, name: str, *, reason: str = "ProgressDeadlineExceeded", message: str = ""
    ) -> dict[str, Any]:
        """The rollout cannot progress: `ProgressDeadlineExceeded` (Progressing False), or `FailedCreate`
        (ReplicaFailure True, `message` the ReplicaSet's, e.g. a quota's refusal)."""
        dep = self._objects.get(self._key("Deployment", namespace, name))
        if dep is None:
            raise _kind("Deployment").not_found(name)
        rs = self.replica_set_name(namespace, name)
        status = copy.deepcopy(dep.get("status") or {})
        status["observedGeneration"] = dep["metadata"]["generation"]
        conds = [(c["type"], c["status"], c["reason"], c["message"]) for c in status.get("conditions") or []]
        conds = [c for c in conds if c[0] not in ("Progressing", "ReplicaFailure")]
        if reason == "ProgressDeadlineExceeded":
            conds.append(
                ("Progressing", "False", reason, message or f'ReplicaSet "{rs}" has timed out progressing.')
            )
        else:
            conds.append(("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs}" is progressing.'))
            conds.append(("ReplicaFailure", "True", reason, message))
        if not any(c[0] == "Available" for c in conds):
            conds.insert(
                0,
                (
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                ),
            )
        status["conditions"] = self._deployment_conditions(dep, conds)
        return self._set_status("Deployment", namespace, name, status)

    def _deployment_conditions(
        self, dep: Mapping[str, Any], conds: Iterable[tuple[str, str, str, str]]
    ) -> _Objects:
        """Conditions keep lastTransitionTime while their status holds; Progressing's lastUpdateTime moves with
        progress, the others' only when reason or message change (the controller's SetDeploymentCondition)."""
        old = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}
        out = []
        for type_, status, reason, message in conds:
            was = old.get(type_)
            same = was is not None and was["status"] == status
            unchanged = same and was is not None and (was["reason"], was["message"]) == (reason, message)
            out.append(
                {
                    "type": type_,
                    "status": status,
                    "lastUpdateTime": was["lastUpdateTime"]
                    if unchanged and type_ != "Progressing" and was
                    else self.now(),
                    "lastTransitionTime": was["lastTransitionTime"] if same and was else self.now(),
                    "reason": reason,
                    "message": message,
                }
            )
        return out

    def warning_event(
        self,
        namespace: str,
        involved: Mapping[str, str],
        reason: str,
        message: str,
        *,
        component: str = "kubelet",
    ) -> dict[str, Any]:
        """A Warning Event about `involved` ({kind, name[, uid, apiVersion]}) posted as `component` does:
        the scheduler through events.k8s.io/v1 (eventTime, no first/lastTimestamp), kubelet and controllers
        through core/v1 (first/lastTimestamp, count)."""
        now = self.clock
        ref = {"namespace": namespace, **involved}
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{involved['name']}.{next(self._uids):016x}", "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": "Warning",
        }
        if component == "default-scheduler":
            event.update(
                eventTime=now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                reportingComponent=component,
                reportingInstance=f"{component}-fake",
                action="Scheduling",
                source={},
            )
        else:
            event.update(
                firstTimestamp=self.now(),
                lastTimestamp=self.now(),
                count=1,
                source={"component": component},
                reportingComponent=component,
                reportingInstance="",
            )
        return self.create(event, manager=component)

    def collect_garbage(self) -> _Keys:
        """The garbage collector: delete every object whose ownerReferences all name objects that are gone.
        Returns what it deleted (kind, namespace, name)."""
        gone: _Keys = []
        uids = {o["metadata"]["uid"] for o in self._objects.values()}
        for key, obj in list(self._objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if refs and not any(ref.get("uid") in uids for ref in refs):
                self.delete(key[0], key[1], key[2], manager="generic-garbage-collector")
                gone.append(key)
        return gone

    def _status_of(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self._objects.get(self._key(kind, namespace, name))
        return dict((obj or {}).get("status") or {})

    def _set_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        live = self._objects.get(self._key(kind, namespace, name)) or {}
        old = live.get("status") or {}
        patch = {"status": {**{k: None for k in old if k not in status}, **status}}
        return self.merge_patch(kind, namespace, name, patch, sub="status", manager="kube-controller-manager")


# --- helpers of the write path --------------------------------------------------------------------------

_MISSING = object()


def _json(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy through JSON, as the wire makes it (a value JSON cannot carry fails here too)."""
    return dict(json.loads(json.dumps(body)))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# Lists server-side apply merges by key (listType=map in the API's schema); every other list is atomic.
_LIST_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",),
}


def _list_key(field: str, items: list[Any]) -> Callable[[Any], tuple[Any, ...]] | None:
    """How the API server keys the items of list `field` (ports: containerPort or port, and protocol)."""
    if not items or not all(isinstance(i, Mapping) for i in items):
        return None
    if field == "ports":
        port = "containerPort" if "containerPort" in items[0] else "port"
        return lambda i: (i.get(port), i.get("protocol") or "TCP")
    fields = _LIST_KEYS.get(field)
    if fields is None or not all(f in i for i in items for f in fields):
        return None
    return lambda i: tuple(i.get(f) for f in fields)


def _apply_merge(live: Any, sent: Any, prev: Any, field: str = "") -> Any:
    """`sent` applied over `live`: objects merge, keyed lists merge item by item (an item this manager sent
    before and no longer sends goes, another manager's stays; inside an item, the fields it sent before and
    no longer sends go), other lists and scalars replace. `prev`: what this manager applied last time."""
    if isinstance(sent, Mapping):
        out = dict(live) if isinstance(live, Mapping) else {}
        for key, value in sent.items():
            if value is not None:  # an applied null means "unset", never "delete"
                before = prev.get(key) if isinstance(prev, Mapping) else None
                out[key] = _apply_merge(out.get(key), value, before, key)
        return out
    keyof = _list_key(field, sent) if isinstance(sent, list) else None
    if keyof is None:
        return copy.deepcopy(sent)
    old = [i for i in live if isinstance(i, Mapping)] if isinstance(live, list) else []
    if old and _list_key(field, old) is None:
        return copy.deepcopy(sent)
    earlier = {keyof(i): i for i in prev} if isinstance(prev, list) and _list_key(field, prev) else {}
    by_key = {keyof(i): i for i in old}
    out_items = []
    for item in sent:
        base, was = by_key.get(keyof(item)), earlier.get(keyof(item))
        if isinstance(base, Mapping) and isinstance(was, Mapping):
            base = _unsent(base, was, item)
        out_items.append(_apply_merge(base, item, was))
    sent_keys = {keyof(i) for i in sent}
    out_items += [copy.deepcopy(i) for i in old if keyof(i) not in sent_keys and keyof(i) not in earlier]
    return out_items


def _unsent(live: Mapping[str, Any], was: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, Any]:
    """`live` without what this manager applied before (`was`) and no longer applies (`now`); of a keyed
    list, only its own items go."""
    out = dict(live)
    for field, value in was.items():
        if field in now:
            continue
        keyof = _list_key(field, value) if isinstance(value, list) else None
        current = out.get(field)
        if keyof is not None and isinstance(current, list) and _list_key(field, current) is not None:
            mine = {keyof(i) for i in value}
            rest = [i for i in current if keyof(i) not in mine]
            if rest:
                out[field] = rest
                continue
        out.pop(field, None)
    return out


def _has(obj: Any, path: FieldPath) -> bool:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return False
        obj = obj[key]
    return True


def _generational(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What moves generation: everything but metadata and status; on a Deployment its annotations too (the
    registry copies them to ReplicaSets, so it counts them as a change to roll out)."""
    out = {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    if obj.get("kind") == "Deployment":
        out["annotations"] = obj["metadata"].get("annotations") or {}
    return out


def _safe(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:length])


def _fold_string_data(secret: dict[str, Any]) -> None:
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        data = secret.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def _default(kind: str, obj: dict[str, Any], ips: Iterator[int]) -> None:
    """The defaults the API server fills in on create for the fields a reader of these kinds may look at."""
    spec = obj.get("spec")
    meta = obj["metadata"]
    if kind == "Secret":
        obj.setdefault("type", "Opaque")
        _fold_string_data(obj)
    elif kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("revisionHistoryLimit", 10)
    elif kind == "Job" and isinstance(spec, dict):
        uid, name = meta["uid"], meta["name"]
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
        labels.update(
            {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            }
        )
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        if spec["type"] != "ExternalName" and "clusterIP" not in spec:
            n = next(ips)
            ip = f"10.96.{n // 250}.{n % 250 + 1}"
            spec.update(clusterIP=ip, clusterIPs=[ip])
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif kind == "Namespace":
        obj["status"] = {"phase": "Active"}
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]


CRD_DIR = FilePath(__file__).resolve().parents[2] / "crds"


@functools.cache
def _crd_schema(kind: str) -> Mapping[str, Any] | None:
    """The openAPIV3Schema of the storage version of the CRD in crds/ whose kind is `kind`."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
            return dict(version["schema"]["openAPIV3Schema"])
    return None


def _structural(value: Any, schema: Mapping[str, Any]) -> Any:
    """`value` as the API server stores it under a structural schema: fields the schema does not declare
    pruned (unless x-kubernetes-preserve-unknown-fields), nulls dropped where not nullable, defaults set."""
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    if isinstance(value, dict) and (props is not None or extra is not None or schema.get("type") == "object"):
        out = {}
        for key, item in value.items():
            sub = props.get(key) if props else None
            if sub is None and isinstance(extra, Mapping):
                sub = extra
            if sub is None:
                if schema.get("x-kubernetes-preserve-unknown-fields") or extra is True:
                    out[key] = item
                continue
            if item is None and not sub.get("nullable"):
                continue
            out[key] = _structural(item, sub)
        for key, sub in (props or {}).items():
            if key not in out and "default" in sub:
                out[key] = _structural(copy.deepcopy(sub["default"]), sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_structural(item, schema["items"]) for item in value]
    return value


def _custom(obj: dict[str, Any]) -> None:
    """Prune and default a custom resource's spec and status by its CRD (crds/), as the API server does."""
    schema = _crd_schema(obj["kind"])
    if schema is None:
        return
    props = schema.get("properties") or {}
    for field in [k for k in obj if k not in ("apiVersion", "kind", "metadata")]:
        if field not in props:
            del obj[field]
        elif obj[field] is not None:
            obj[field] = _structural(obj[field], props[field])
    for field, sub in props.items():
        if field not in obj and "default" in sub:
            obj[field] = _structural(copy.deepcopy(sub["default"]), sub)


def _invalid(info: _Kind, obj: Mapping[str, Any], live: Mapping[str, Any] | None) -> list[str]:
    """The API server's validation of what these tests can get wrong, as its field causes."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    causes = []
    if info.kind in ("Service", "Namespace"):
        pattern, limit, what = (
            (_DNS_1035, 63, "a DNS-1035 label")
            if info.kind == "Service"
            else (_DNS_LABEL, 63, "a lowercase RFC 1123 label")
        )
    else:
        pattern, limit, what = _DNS_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"
    if name and (not pattern.match(name) or len(name) > limit):
        causes.append(f'metadata.name: Invalid value: "{name}": must be {what}')
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, short = str(key).rpartition("/")
        if (
            (prefix and not _DNS_SUBDOMAIN.match(prefix))
            or not short
            or not _LABEL_VALUE.match(short)
            or len(short) > 63
        ):
            causes.append(
                f'metadata.labels: Invalid value: "{key}": name part must consist of alphanumeric characters'
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                f'metadata.labels: Invalid value: "{value}": a valid label must be an empty string or '
                "consist of alphanumeric characters, '-', '_' or '.'"
            )
    annotations = meta.get("annotations") or {}
    size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
    if size > MAX_ANNOTATIONS_BYTES:
        causes.append(f"metadata.annotations: Too long: may not be more than {MAX_ANNOTATIONS_BYTES} bytes")
    refs = meta.get("ownerReferences") or []
    for i, ref in enumerate(refs):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                causes.append(
                    f'metadata.ownerReferences[{i}].{field}: Invalid value: "": {field} must not be empty'
                )
    if sum(1 for ref in refs if ref.get("controller")) > 1:
        causes.append(
            "metadata.ownerReferences: Invalid value: []: Only one reference can have Controller set to true"
        )
    spec = obj.get("spec") or {}
    live_spec = (live or {}).get("spec") or {}
    if info.kind == "Deployment":
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector:
            causes.append("spec.selector: Required value")
        elif any(labels.get(k) != v for k, v in selector.items()):
            causes.append(
                "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`"
            )
        if live is not None and spec.get("selector") != live_spec.get("selector"):
            causes.append("spec.selector: Invalid value: field is immutable")
    if info.kind == "Service":
        ports = [p.get("name", "") for p in spec.get("ports") or []]
        for i, port in enumerate(ports):
            if port in ports[:i]:
                causes.append(f'spec.ports[{i}].name: Duplicate value: "{port}"')
            elif len(ports) > 1 and not port:
                causes.append(f"spec.ports[{i}].name: Required value")
    if info.kind == "Job" and live is not None:
        if spec.get("template") != live_spec.get("template"):
            causes.append("spec.template: Invalid value: field is immutable")
        if spec.get("selector") != live_spec.get("selector"):
            causes.append("spec.selector: Invalid value: field is immutable")
    if info.kind == "Job":
        restart = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if restart not in ("Never", "OnFailure"):
            causes.append(
                'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
            )
    if info.kind == "Secret":
        for key in obj.get("data") or {}:
            if not _SECRET_KEY.match(str(key)):
                causes.append(
                    f'data[{key}]: Invalid value: "{key}": a valid config key must consist of alphanumeric '
                    "characters, '-', '_' or '.'"
                )
        if live is not None and obj.get("type") != live.get("type"):
            causes.append("type: Invalid value: field is immutable")
    return causes
