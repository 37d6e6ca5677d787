"""The whole-kind property of issue 11: for any sequence of spec changes, controller progress and user
interference, no Deployment ever runs an image that was not migrated on the database its pods use.

The reconcile runs for real (reconcile.Reconciler, manifests, migrations, rollout); the Kubernetes API is
the shared in-memory fake (tests/operator/fake_kube.py, checked against the real API server by
tests/e2e/test_fake_kube_contract.py), whose Job and Deployment controllers the rules play — a Job finishes (or
fails), a Deployment rolls out. Why not the testbed: Hypothesis runs hundreds of sequences of up to 30 steps,
each needing Job and Deployment controllers to act on demand, which takes milliseconds here and hours on a
real API server. The apps use `existingSecret`, so no PostgreSQL is involved: the property is about which
database URL a Job and a pod template point at, not about provisioning (tests/e2e/test_truth.py covers
the same rule against the real API server and PostgreSQL for one sequence).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from flaskops import names
from flaskops.steps.migrate import RETRY_MIGRATION
from tests.operator.behaviour_support import (
    APP,
    NS,
    USER,
    annotate,
    edit_spec,
    flaskapp,
    reconcile,
    running_jobs,
    url_secret,
)
from tests.operator.fake_kube import FakeKube

IMAGES = ["app:1", "app:2", "app:bad"]  # app:bad's migration always fails
SECRETS = ["db-a", "db-b"]


def _secret_of(pod_spec: Mapping[str, Any]) -> str:
    """Which Secret the container's DATABASE_URL comes from: the database the pod uses."""
    env = pod_spec["containers"][0]["env"]
    return next(e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"] == "DATABASE_URL")


class MigrationBeforeRollout(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.kube = FakeKube(namespaces=[NS])
        for i, name in enumerate(SECRETS):
            url_secret(self.kube, name, f"postgresql://app:pw@db-{i}.internal:5432/{name.replace('-', '_')}")
        self.migrated: set[tuple[str, str]] = set()  # (image, Secret) pairs a Job succeeded for
        self.kube.create(flaskapp(image=IMAGES[0], secret=SECRETS[0]), manager=USER)

    @rule(image=st.sampled_from(IMAGES))
    def set_image(self, image: str) -> None:
        edit_spec(self.kube, {"image": image})

    @rule(secret=st.sampled_from(SECRETS))
    def move_database(self, secret: str) -> None:
        edit_spec(self.kube, {"database": {"existingSecret": {"name": secret}}})

    @rule(token=st.sampled_from(["1", "2"]))
    def retry(self, token: str) -> None:
        annotate(self.kube, RETRY_MIGRATION, token)

    @rule()
    def reconcile(self) -> None:
        reconcile(self.kube)

    @rule()
    def jobs_finish(self) -> None:
        """The Job controller: every running migration Job completes; app:bad's fail."""
        for job in running_jobs(self.kube):
            pod = job["spec"]["template"]["spec"]
            image = pod["containers"][0]["image"]
            ok = image != "app:bad"
            self.kube.finish_job(NS, job["metadata"]["name"], succeeded=ok)
            if ok:
                self.migrated.add((image, _secret_of(pod)))

    @rule()
    def deployment_rolls_out(self) -> None:
        """The Deployment controller: the current template is fully rolled out."""
        if self.kube.get("Deployment", NS, APP) is not None:
            self.kube.roll_out(NS, APP)

    @rule()
    def someone_deletes_the_deployment(self) -> None:
        self.kube.delete("Deployment", NS, APP, manager=USER)

    @invariant()
    def the_deployment_runs_only_migrated_pairs(self) -> None:
        dep = self.kube.get("Deployment", NS, APP) if hasattr(self, "kube") else None
        if dep is None:
            return
        pod = dep["spec"]["template"]["spec"]
        pair = (pod["containers"][0]["image"], _secret_of(pod))
        assert pair in self.migrated, f"{pair} runs but only {sorted(self.migrated)} were migrated"

    @invariant()
    def serving_image_was_migrated(self) -> None:
        if not hasattr(self, "kube"):
            return
        app = self.kube.get(names.FLASKAPP_KIND, NS, APP)
        assert app is not None
        serving = (app.get("status") or {}).get("servingImage")
        assert serving is None or any(image == serving for image, _ in self.migrated), serving


MigrationBeforeRollout.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestMigrationBeforeRollout = MigrationBeforeRollout.TestCase
