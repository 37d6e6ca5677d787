"""A child the API server refuses (the schema passes resources, env and labels through) stalls the app
with the server's reason instead of failing the reconcile over and over."""

import base64
import json

import pytest
from kubernetes.client.exceptions import ApiException

from flaskops import names
from flaskops.kube import Kube, decode_secret
from flaskops.reconcile import Reconciler

REFUSAL = 'Deployment.apps "shop" is invalid: spec.template.spec.containers[0].resources.requests[cpu]: Invalid value'


class RefusingKube(Kube):
    """Objects in a dict; creating or applying `refuse` answers 422 like a real API server."""

    def __init__(self, refuse: str, status: int = 422, message: str = REFUSAL) -> None:
        self.refuse, self.status, self.message = refuse, status, message
        url = base64.b64encode(b"postgresql://shop:pw@pg.internal:5432/shop").decode()
        self.objects = {("Secret", "n", "legacy-db"): {"kind": "Secret", "data": {"DATABASE_URL": url}}}

    def get(self, kind, namespace, name):
        return self.objects.get((kind, namespace, name))

    def read_secret_data(self, namespace, name):
        return decode_secret(self.get("Secret", namespace, name))

    def list(self, kind, namespace=None, selector=None):
        return [o for (k, ns, _), o in self.objects.items() if k == kind and ns == namespace]

    def create(self, body):
        return self.apply(body)

    def apply(self, body):
        if body["kind"] == self.refuse:
            exc = ApiException(status=self.status, reason="Refused")
            exc.body = json.dumps({"kind": "Status", "message": self.message, "code": self.status})
            raise exc
        meta = body["metadata"]
        self.objects[(body["kind"], meta["namespace"], meta["name"])] = body
        return body

    def delete(self, kind, namespace, name, propagation="Background"):
        return self.objects.pop((kind, namespace, name), None) is not None


def app(migrations_enabled):
    return {
        "metadata": {"name": "shop", "namespace": "n", "uid": "u", "generation": 3},
        "spec": {
            "environment": "production",
            "image": "i:1",
            "resources": {"requests": {"cpu": "lots"}},
            "database": {"existingSecret": {"name": "legacy-db"}},
            "migrations": {"enabled": migrations_enabled},
        },
    }


@pytest.mark.parametrize(
    ("refuse", "step", "enabled"), [("Job", names.MIGRATED, True), ("Deployment", names.AVAILABLE, False)]
)
def test_refused_child_stalls_with_the_servers_reason(refuse, step, enabled):
    result = Reconciler(RefusingKube(refuse)).reconcile(app(enabled))
    conds = {c["type"]: c for c in result.status["conditions"]}
    assert conds[step]["status"] == "False" and conds[step]["reason"] == "InvalidSpec"
    assert REFUSAL in conds[step]["message"] and refuse in conds[step]["message"]
    assert conds[names.STALLED]["status"] == "True"
    assert conds[names.READY]["reason"] == "InvalidSpec"
    assert result.retry_after is None  # the same spec can never succeed: wait for the user's fix
    assert any(e.type == "Warning" and e.reason == "InvalidSpec" for e in result.events)


CONVERSION = (
    "failed to convert new object (n/shop; apps/v1, Kind=Deployment) to proper version: unable to convert "
    "unstructured object to apps/v1, Kind=Deployment: quantities must match the regular expression"
)


def test_server_side_apply_conversion_error_is_a_refusal_too():
    # The API server answers a server-side apply it cannot convert to the typed object with a 500, every time.
    result = Reconciler(RefusingKube("Deployment", 500, CONVERSION)).reconcile(app(False))
    conds = {c["type"]: c for c in result.status["conditions"]}
    assert (
        conds[names.AVAILABLE]["reason"] == "InvalidSpec"
        and "quantities" in conds[names.AVAILABLE]["message"]
    )
    assert conds[names.STALLED]["status"] == "True"


def test_other_server_errors_are_retried():
    with pytest.raises(ApiException):
        Reconciler(RefusingKube("Deployment", 500, "etcdserver: request timed out")).reconcile(app(False))
