"""The whole-kind property of issue 11: for any sequence of spec changes, controller progress and user
interference, no Deployment ever runs an image that was not migrated on the database its pods use.

The reconcile runs for real (reconcile.Reconciler, manifests, migrations, rollout); the Kubernetes API is
an in-memory store (`MemoryKube`) with two controllers played by rules — a Job finishes (or fails), a
Deployment rolls out. Why not the testbed: Hypothesis runs hundreds of sequences of up to 30 steps, each
needing Job and Deployment controllers to act on demand, which takes milliseconds here and hours on a real
API server. The apps use `existingSecret`, so no PostgreSQL is involved: the property is about which
database URL a Job and a pod template point at, not about provisioning (tests/e2e/test_truth.py covers
the same rule against the real API server and PostgreSQL for one sequence).
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from kubernetes.client.exceptions import ApiException

from flaskops import names
from flaskops.reconcile import Reconciler

NS, APP = "shop", "web"
IMAGES = ["app:1", "app:2", "app:bad"]  # app:bad's migration always fails
SECRETS = ["db-a", "db-b"]


class MemoryKube:
    """The subset of flaskops.kube.Kube the reconcile uses, over a dict. Objects get uid, generation and
    creationTimestamp like the API server gives them; `apply` replaces what it sends and keeps status."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.uids = itertools.count(1)

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self, kind: str, namespace: str | None = None, selector: str | None = None, fields: str | None = None
    ) -> list[dict[str, Any]]:
        want = dict(part.split("=", 1) for part in (selector or "").split(",") if part)
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and ns == (namespace or "")
            and all((o["metadata"].get("labels") or {}).get(key) == v for key, v in want.items())
        ]

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = (body["kind"], body["metadata"].get("namespace") or "", body["metadata"]["name"])
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        obj = copy.deepcopy(dict(body))
        obj["metadata"].update(
            uid=f"uid-{next(self.uids)}", generation=1, creationTimestamp="2026-01-01T00:00:00Z"
        )
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = (body["kind"], body["metadata"].get("namespace") or "", body["metadata"]["name"])
        old = self.objects.get(key)
        if old is None:
            return self.create(body)
        obj = copy.deepcopy(dict(body))
        obj["metadata"] = {**old["metadata"], **obj["metadata"]}
        changed = obj.get("spec") != old.get("spec")
        obj["metadata"]["generation"] = old["metadata"]["generation"] + int(changed)
        obj["status"] = old.get("status", {})
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def merge_patch(
        self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any], sub: str | None = None
    ) -> dict[str, Any]:
        obj = self.objects[(kind, namespace or "", name)]
        for field, value in patch.items():
            obj[field] = copy.deepcopy(value) if field == "spec" else {**obj.get(field, {}), **value}
        return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str | None, name: str, propagation: str = "Background") -> bool:
        return self.objects.pop((kind, namespace or "", name), None) is not None

    def live(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.get(kind, namespace, name)

    def jobs(self, namespace: str, app: str) -> list[dict[str, Any]]:
        return self.list("Job", namespace, selector=f"flaskops.dev/app={app}")

    def verified(self, current: Mapping[str, Any], desired_digest: str) -> bool:
        return False

    def verify(self, live: Mapping[str, Any], desired_digest: str) -> None:
        pass

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        obj = self.get("Secret", namespace, name)
        if obj is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def _secret_of(pod_spec: Mapping[str, Any]) -> str:
    """Which Secret the container's DATABASE_URL comes from: the database the pod uses."""
    env = pod_spec["containers"][0]["env"]
    return next(e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"] == "DATABASE_URL")


class MigrationBeforeRollout(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.kube = MemoryKube()
        for i, name in enumerate(SECRETS):
            url = f"postgresql://app:pw@db-{i}.internal:5432/{name.replace('-', '_')}"
            self.kube.create(
                {
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": NS},
                    "data": {"URL": base64.b64encode(url.encode()).decode()},
                }
            )
        self.migrated: set[tuple[str, str]] = set()  # (image, Secret) pairs a Job succeeded for
        self.app = self.kube.create(
            {
                "apiVersion": names.API_VERSION,
                "kind": names.FLASKAPP_KIND,
                "metadata": {"name": APP, "namespace": NS},
                "spec": {
                    "environment": "testing",
                    "image": IMAGES[0],
                    "replicas": 2,
                    "database": {"existingSecret": {"name": SECRETS[0], "key": "URL"}},
                },
            }
        )

    def _change_spec(self, **changes: Any) -> None:
        obj = self.kube.objects[(names.FLASKAPP_KIND, NS, APP)]
        before = copy.deepcopy(obj["spec"])
        for path, value in changes.items():
            target = obj["spec"]
            *parents, leaf = path.split(".")
            for p in parents:
                target = target[p]
            target[leaf] = value
        if obj["spec"] != before:
            obj["metadata"]["generation"] += 1

    @rule(image=st.sampled_from(IMAGES))
    def set_image(self, image: str) -> None:
        self._change_spec(image=image)

    @rule(secret=st.sampled_from(SECRETS))
    def move_database(self, secret: str) -> None:
        self._change_spec(**{"database.existingSecret.name": secret})

    @rule(token=st.sampled_from(["1", "2"]))
    def retry(self, token: str) -> None:
        obj = self.kube.objects[(names.FLASKAPP_KIND, NS, APP)]
        obj["metadata"].setdefault("annotations", {})[f"{names.GROUP}/retry-migration"] = token

    @rule()
    def reconcile(self) -> None:
        body = self.kube.get(names.FLASKAPP_KIND, NS, APP)
        assert body is not None
        result = Reconciler(self.kube, now=lambda: "2026-01-01T00:10:00Z").reconcile(body)  # type: ignore[arg-type]
        self.kube.objects[(names.FLASKAPP_KIND, NS, APP)]["status"] = result.status

    @rule()
    def jobs_finish(self) -> None:
        """The Job controller: every running migration Job completes; app:bad's fail."""
        for key, job in self.kube.objects.items():
            if key[0] != "Job" or (job.get("status") or {}).get("conditions"):
                continue
            pod = job["spec"]["template"]["spec"]
            image = pod["containers"][0]["image"]
            ok = image != "app:bad"
            job["status"] = {
                "startTime": "2026-01-01T00:00:01Z",
                "completionTime": "2026-01-01T00:00:09Z" if ok else None,
                "conditions": [{"type": "Complete" if ok else "Failed", "status": "True"}],
            }
            if ok:
                self.migrated.add((image, _secret_of(pod)))

    @rule()
    def deployment_rolls_out(self) -> None:
        """The Deployment controller: the current template is fully rolled out."""
        dep = self.kube.objects.get(("Deployment", NS, APP))
        if dep is None:
            return
        n = dep["spec"].get("replicas", 1)
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": n,
            "updatedReplicas": n,
            "availableReplicas": n,
            "readyReplicas": n,
            "conditions": [{"type": "Available", "status": "True"}],
        }

    @rule()
    def someone_deletes_the_deployment(self) -> None:
        self.kube.delete("Deployment", NS, APP)

    @invariant()
    def the_deployment_runs_only_migrated_pairs(self) -> None:
        dep = self.kube.objects.get(("Deployment", NS, APP)) if hasattr(self, "kube") else None
        if dep is None:
            return
        pod = dep["spec"]["template"]["spec"]
        pair = (pod["containers"][0]["image"], _secret_of(pod))
        assert pair in self.migrated, f"{pair} runs but only {sorted(self.migrated)} were migrated"

    @invariant()
    def serving_image_was_migrated(self) -> None:
        if not hasattr(self, "kube"):
            return
        status = self.kube.objects[(names.FLASKAPP_KIND, NS, APP)].get("status") or {}
        serving = status.get("servingImage")
        assert serving is None or any(image == serving for image, _ in self.migrated), serving


MigrationBeforeRollout.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestMigrationBeforeRollout = MigrationBeforeRollout.TestCase
