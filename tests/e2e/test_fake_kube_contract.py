"""The fake API (tests/operator/fake_kube.py) against the real API server: the same requests through
`flaskops.kube.Kube` and through `FakeKube` get the same answers, for the semantics the fast behaviour tests
lean on. Each scenario returns what it observed (codes, reasons, messages, generations, which labels are
left, who manages what); the test runs it on both and compares, so a difference names itself.

No operator runs here: the objects are Secrets, Events, Deployments with no replicas (no pods, so no
controller Events), a suspended Job and one FlaskApp, of which only generation and the status fields
the test writes are observed (an operator of the same test session may write the rest).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flaskops import names
from flaskops.kube import ApiException
from flaskops.kube import Kube as RealKube
from flaskops_testbed.kube_fixtures import Kube
from tests.operator.fake_kube import FakeKube

pytestmark = pytest.mark.e2e

MISSING_NAMESPACE = "flaskops-fake-contract-missing"
OTHER = "kubectl-edit"  # another field manager: a person with kubectl


class Side:
    """One API to run a scenario on: the real one through flaskops.kube.Kube, or the fake."""

    def __init__(self, api: RealKube, namespace: str) -> None:
        self.api = api
        self.ns = namespace

    def patch_as(
        self, manager: str, kind: str, name: str, patch: dict[str, Any], sub: str | None = None
    ) -> dict[str, Any]:
        """A merge patch written by another field manager than the operator's."""
        if isinstance(self.api, FakeKube):
            return self.api.merge_patch(kind, self.ns, name, patch, sub, manager=manager)
        return dict(
            self.api.request(
                "PATCH",
                self.api._path(kind, self.ns, name, sub),
                body=patch,
                query={"fieldManager": manager},
                content_type="application/merge-patch+json",
            )
        )


def error(call: Callable[[], Any]) -> tuple[int, str, str, str] | str:
    """(HTTP status, HTTP reason, Status reason, Status message) of the ApiException `call` raises."""
    try:
        call()
    except ApiException as exc:
        body = json.loads(exc.body or "{}")
        return (exc.status, exc.reason, body.get("reason", ""), body.get("message", ""))
    return "no error"


def code(call: Callable[[], Any]) -> tuple[int, str] | str:
    """Only (HTTP status, Status reason): for answers whose message wording is the server's business."""
    got = error(call)
    return got if isinstance(got, str) else got[:3:2]


def secret(name: str, ns: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def deployment(name: str, ns: str, **labels: str) -> dict[str, Any]:
    selector = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{"name": "web", "image": "app:1"}]},
            },
        },
    }


def managers(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted(
        (m["manager"], m["operation"], m.get("subresource", ""))
        for m in obj["metadata"].get("managedFields") or []
    )


# --- scenarios: each takes a Side and returns what it saw ----------------------------------------------


def errors_and_absence(s: Side) -> dict[str, Any]:
    api, ns = s.api, s.ns
    first = api.create(secret("twice", ns, K="v"))
    return {
        "created": (sorted(first["data"]), first["type"], "generation" in first["metadata"]),
        "create twice": error(lambda: api.create(secret("twice", ns, K="v"))),
        "get missing": api.get("Secret", ns, "missing"),
        "get missing deployment": api.get("Deployment", ns, "missing"),
        "patch missing": error(lambda: api.merge_patch("Secret", ns, "missing", {"data": {}})),
        "patch missing job": error(lambda: api.merge_patch("Job", ns, "missing", {"spec": {}})),
        "delete missing": api.delete("Secret", ns, "missing"),
        "delete": api.delete("Secret", ns, "twice"),
        "get deleted": api.get("Secret", ns, "twice"),
        "missing namespace": error(lambda: api.create(secret("x", MISSING_NAMESPACE))),
        "stale resourceVersion": error(
            lambda: api.merge_patch(
                "Secret",
                ns,
                api.create(secret("stale", ns))["metadata"]["name"],
                {"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}},
            )
        ),
        "bad name": code(lambda: api.create(secret("Bad_Name", ns))),
        "bad label": code(lambda: api.create(secret("badlabel", ns, labels={"a": "not ok!"}))),
        "no name": code(
            lambda: api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": ns}})
        ),
        "not base64": code(
            lambda: api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "b64", "namespace": ns},
                    "data": {"K": "%%"},
                }
            )
        ),
        "selector mismatch": code(
            lambda: api.create(
                {
                    **deployment("mismatch", ns),
                    "spec": {
                        **deployment("mismatch", ns)["spec"],
                        "selector": {"matchLabels": {"app": "other"}},
                    },
                }
            )
        ),
        "unknown field selector": code(lambda: api.list("Secret", ns, fields="data.K=x")),
        "bad label selector": code(lambda: api.list("Secret", ns, selector="a in (")),
    }


def generation_and_versions(s: Side) -> dict[str, Any]:
    api, ns = s.api, s.ns
    out: dict[str, Any] = {}
    dep = api.create(deployment("gen", ns, tier="a"))
    out["created"] = dep["metadata"]["generation"]
    dep = api.merge_patch("Deployment", ns, "gen", {"metadata": {"labels": {"tier": "b"}}})
    out["labels only"] = dep["metadata"]["generation"]
    dep = api.merge_patch("Deployment", ns, "gen", {"metadata": {"annotations": {"note": "x"}}})
    out["annotations only"] = dep["metadata"]["generation"]
    dep = api.merge_patch(
        "Deployment", ns, "gen", {"status": {"replicas": 99}, "metadata": {"labels": {"c": "d"}}}
    )
    out["status through the object"] = (
        dep["metadata"]["generation"],
        (dep.get("status") or {}).get("replicas"),
    )
    out["labels through the object"] = dep["metadata"]["labels"]
    dep = api.merge_patch("Deployment", ns, "gen", {"spec": {"replicas": 0, "minReadySeconds": 3}})
    out["spec"] = dep["metadata"]["generation"]
    dep = api.merge_patch("Deployment", ns, "gen", {"spec": {"minReadySeconds": 3}})
    out["same spec again"] = dep["metadata"]["generation"]
    out["defaults"] = (dep["spec"]["progressDeadlineSeconds"], dep["spec"]["revisionHistoryLimit"])
    out["selector change"] = code(
        lambda: api.merge_patch(
            "Deployment", ns, "gen", {"spec": {"selector": {"matchLabels": {"app": "x"}}}}
        )
    )
    # resourceVersion: moves with every change, never for a write that changes nothing (Secrets: no controller).
    one = api.create(secret("rv", ns, K="1"))
    two = api.merge_patch("Secret", ns, "rv", {"data": {"K": base64.b64encode(b"1").decode()}})
    three = api.merge_patch("Secret", ns, "rv", {"metadata": {"labels": {"x": "y"}}})
    four = api.apply(
        {**secret("rv", ns, K="1"), "metadata": {"name": "rv", "namespace": ns, "labels": {"x": "y"}}}
    )
    five = api.apply(
        {**secret("rv", ns, K="1"), "metadata": {"name": "rv", "namespace": ns, "labels": {"x": "y"}}}
    )
    rvs = [o["metadata"]["resourceVersion"] for o in (one, two, three, four, five)]
    out["resourceVersion moved"] = [a != b for a, b in itertools.pairwise(rvs)]
    out["secret generation"] = "generation" in five["metadata"]
    # A Job's template is immutable (suspended: the Job controller makes no pods in this namespace).
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "job", "namespace": ns},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "app:1"}]},
            },
        },
    }
    made = api.create(job)
    out["job"] = (
        made["metadata"]["generation"],
        made["spec"]["backoffLimit"],
        sorted(made["spec"]["template"]["metadata"]["labels"]),
        sorted(made["spec"]["selector"]["matchLabels"]),
    )
    change = {"spec": {"template": {"spec": {"containers": [{"name": "m", "image": "app:2"}]}}}}
    out["job template change"] = code(lambda: api.merge_patch("Job", ns, "job", change))
    no_restart = {**job, "metadata": {"name": "job2", "namespace": ns}}
    no_restart["spec"] = {"template": {"spec": {"containers": [{"name": "m", "image": "app:1"}]}}}
    out["job without restartPolicy"] = code(lambda: api.create(no_restart))
    return out


def flaskapp_status(s: Side) -> dict[str, Any]:
    """A custom resource with a status subresource: generation moves with spec only; status only through it."""
    api, ns = s.api, s.ns
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.FLASKAPP_KIND,
        "metadata": {"name": "contract", "namespace": ns},
        "spec": {
            "environment": "testing",
            "image": "app:1",
            "database": {"existingSecret": {"name": "no-such-secret"}},
            "bogus": {"pruned": True},
            "migrations": {"enabled": True, "bogus": 1},
        },
        "status": {"servingImage": "on-create"},
    }
    out: dict[str, Any] = {}
    app = api.create(body)
    out["created"] = (app["metadata"]["generation"], (app.get("status") or {}).get("servingImage"))
    out["spec as stored (pruned, defaulted)"] = app["spec"]
    app = api.merge_patch(names.FLASKAPP_KIND, ns, "contract", {"metadata": {"annotations": {"a": "b"}}})
    out["annotation"] = app["metadata"]["generation"]
    app = api.merge_patch(names.FLASKAPP_KIND, ns, "contract", {"status": {"servingImage": "via-object"}})
    out["status via the object"] = (
        app["metadata"]["generation"],
        (app.get("status") or {}).get("servingImage"),
    )
    patch = {
        "status": {"servingImage": "app:1"},
        "metadata": {"annotations": {"via": "status"}},
        "spec": {"image": "x"},
    }
    app = api.merge_patch(names.FLASKAPP_KIND, ns, "contract", patch, sub="status")
    out["status subresource"] = (
        app["metadata"]["generation"],
        app["status"]["servingImage"],
        "via" in (app["metadata"].get("annotations") or {}),
        app["spec"]["image"],
    )
    app = s.patch_as(OTHER, names.FLASKAPP_KIND, "contract", {"spec": {"image": "app:2"}})
    out["spec"] = (app["metadata"]["generation"], app["status"]["servingImage"])
    unknown = {"status": {"bogus": 1, "migratedImage": "app:1"}}
    app = api.merge_patch(names.FLASKAPP_KIND, ns, "contract", unknown, sub="status")
    out["status pruned"] = ("bogus" in app["status"], app["status"].get("migratedImage"))
    return out


def label_selectors(s: Side) -> dict[str, Any]:
    api, ns = s.api, s.ns
    for name, labels in {
        "s1": {"tier": "web", "env": "prod"},
        "s2": {"tier": "web", "env": "dev"},
        "s3": {"tier": "db"},
        "s4": {},
    }.items():
        api.create(secret(name, ns, labels=labels))
    selectors = [
        "tier=web",
        "tier==web",
        "tier!=web",
        "env",
        "!env",
        "tier in (web,db)",
        "env notin (prod)",
        "tier=web,env=dev",
        "tier=web, env!=dev",
        "tier in (db), !env",
        "missing",
    ]
    return {
        sel: sorted(o["metadata"]["name"] for o in api.list("Secret", ns, selector=sel)) for sel in selectors
    }


def field_selectors(s: Side) -> dict[str, Any]:
    api, ns = s.api, s.ns
    for i, (kind, type_, reason) in enumerate(
        [
            ("Pod", "Warning", "FailedScheduling"),
            ("Pod", "Normal", "Pulled"),
            ("Job", "Warning", "FailedCreate"),
        ]
    ):
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"ev{i}", "namespace": ns},
                "involvedObject": {"kind": kind, "name": f"contract-{i}", "namespace": ns},
                "type": type_,
                "reason": reason,
                "message": "m",
                "source": {"component": "kubelet"},
            }
        )
    api.create({**secret("typed", ns), "type": "kubernetes.io/basic-auth", "data": {"username": "dQ=="}})
    api.create(secret("plain", ns))
    mine = "involvedObject.namespace=" + ns  # Events of this namespace only about our objects:
    selectors = {
        "Event": [
            "type=Warning",
            "type!=Warning",
            "reason=FailedCreate",
            "involvedObject.kind=Pod,type=Warning",
            "involvedObject.name=contract-1",
            "source=kubelet",
        ],
        "Secret": [
            "type=Opaque",
            "type=kubernetes.io/basic-auth",
            "metadata.name=plain",
            "metadata.name!=plain",
        ],
    }
    out = {}
    for kind, sels in selectors.items():
        for sel in sels:
            items = api.list(kind, ns, fields=sel + ("," + mine if kind == "Event" else ""))
            names_ = [o["metadata"]["name"] for o in items]
            if kind == "Event":
                names_ = [n for n in names_ if n.startswith("ev")]
            out[f"{kind} {sel}"] = names_
    return out


def apply_and_managers(s: Side) -> dict[str, Any]:
    """Server-side apply: sets what it sends, removes what it sent before and no longer does, leaves another
    manager's fields alone, takes a field another manager set (force); managedFields name the writers."""
    api, ns = s.api, s.ns
    out: dict[str, Any] = {}
    first = api.apply(secret("ssa", ns, labels={"a": "1", "b": "2"}, K="v", L="w"))
    out["apply creates"] = managers(first)
    s.patch_as(OTHER, "Secret", "ssa", {"metadata": {"labels": {"c": "3", "a": "9"}}})
    after = api.apply(secret("ssa", ns, labels={"a": "1"}, K="v"))
    out["labels"] = after["metadata"]["labels"]
    out["data"] = sorted(after["data"])
    out["managers"] = managers(after)
    created = api.create(secret("made", ns, labels={"a": "1"}, K="v"))
    out["create manager"] = managers(created)
    applied = api.apply(secret("made", ns, labels={"a": "1", "n": "2"}, K="v"))
    out["create then apply"] = (managers(applied), applied["metadata"]["labels"])
    patched = api.merge_patch("Secret", ns, "made", {"stringData": {"S": "plain"}})
    out["stringData"] = (sorted(patched["data"]), "stringData" in patched, api.read_secret_data(ns, "made"))
    return out


def keyed_lists(s: Side) -> dict[str, Any]:
    """Lists apply merges by key: another manager's port or env var stays beside ours; a port re-keyed under
    our port's name makes two ports of one name (refused)."""
    api, ns = s.api, s.ns
    http = {"name": "http", "port": 80, "targetPort": "http"}
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc", "namespace": ns},
        "spec": {"selector": {"app": "x"}, "ports": [http]},
    }
    api.apply(svc)
    metrics = {"name": "metrics", "port": 9090, "targetPort": 9090}
    s.patch_as(OTHER, "Service", "svc", {"spec": {"ports": [http, metrics]}})
    out: dict[str, Any] = {"added port": sorted(p["port"] for p in api.apply(svc)["spec"]["ports"])}
    api.apply({**svc, "metadata": {"name": "svc2", "namespace": ns}})
    s.patch_as(
        OTHER, "Service", "svc2", {"spec": {"ports": [{"name": "http", "port": 8081, "targetPort": "http"}]}}
    )
    out["re-keyed port"] = code(lambda: api.apply({**svc, "metadata": {"name": "svc2", "namespace": ns}}))
    dep = deployment("envs", ns)
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    api.apply(dep)
    container = {
        "name": "web",
        "image": "app:1",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    }
    s.patch_as(OTHER, "Deployment", "envs", {"spec": {"template": {"spec": {"containers": [container]}}}})
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "one"}]
    after = api.apply(dep)
    out["env"] = after["spec"]["template"]["spec"]["containers"][0]["env"]
    dep["spec"]["template"]["spec"]["containers"][0].pop("env")
    after = api.apply(dep)
    out["env no longer sent"] = after["spec"]["template"]["spec"]["containers"][0].get("env")
    return out


def deletion(s: Side) -> dict[str, Any]:
    api, ns = s.api, s.ns
    out: dict[str, Any] = {}
    dep = deployment("held", ns)
    dep["metadata"]["finalizers"] = ["example.com/hold"]
    made = api.create(dep)
    out["delete held"] = api.delete("Deployment", ns, "held")
    held = api.get("Deployment", ns, "held")
    assert held is not None
    out["held"] = (
        "deletionTimestamp" in held["metadata"],
        held["metadata"]["generation"] - made["metadata"]["generation"],
    )
    out["delete again"] = api.delete("Deployment", ns, "held")
    api.merge_patch("Deployment", ns, "held", {"metadata": {"finalizers": None}})
    out["after finalizer removed"] = api.get("Deployment", ns, "held")
    return out


def delete_preconditions(s: Side) -> dict[str, Any]:
    """A delete that names the uid it decided about removes only that object: a same-named object made
    after it is refused with 409 Conflict (uids in the message replaced by which object they are)."""
    api, ns = s.api, s.ns
    out: dict[str, Any] = {}
    for kind, body in (("Secret", secret("pre", ns, K="v")), ("Deployment", deployment("pre", ns))):
        first = api.create(body)["metadata"]["uid"]
        api.delete(kind, ns, "pre")
        second = api.create(body)["metadata"]["uid"]

        def stale(kind: str = kind, first: str = first, second: str = second) -> tuple[Any, ...] | str:
            got = error(lambda: api.delete(kind, ns, "pre", uid=first))
            if isinstance(got, str):
                return got
            return (*got[:3], got[3].replace(first, "<decided>").replace(second, "<re-created>"))

        out[f"{kind} stale uid"] = stale()
        out[f"{kind} still there"] = (api.get(kind, ns, "pre") or {}).get("metadata", {}).get("uid") == second
        out[f"{kind} its uid"] = api.delete(kind, ns, "pre", uid=second)
        out[f"{kind} gone"] = api.get(kind, ns, "pre")
        out[f"{kind} missing with uid"] = api.delete(kind, ns, "pre", uid=second)
    return out


SCENARIOS = [errors_and_absence, generation_and_versions, flaskapp_status, label_selectors, field_selectors]
SCENARIOS += [apply_and_managers, keyed_lists, deletion, delete_preconditions]


@pytest.fixture
def real(kube: Kube, crds: None, namespace: str) -> Iterator[Side]:
    yield Side(RealKube(kube.api), namespace)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_the_fake_answers_as_the_api_server_does(real: Side, scenario: Callable[[Side], Any]) -> None:
    fake = Side(FakeKube(namespaces=[real.ns]), real.ns)
    want = scenario(real)
    got = scenario(fake)
    diff = {k: (want.get(k), got.get(k)) for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)}
    assert not diff, "the fake differs from the API server (real, fake):\n" + "\n".join(
        f"  {k}: {v[0]!r}\n  {' ' * len(k)}  {v[1]!r}" for k, v in diff.items()
    )
