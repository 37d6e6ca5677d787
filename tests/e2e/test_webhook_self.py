"""FLASKOPS_WEBHOOK=self, the local-development mode: the operator makes its own CA and serving certificate
and kopf creates the ValidatingWebhookConfiguration itself. It needs to write that configuration, which
the chart never grants, so this operator runs with the admin kubeconfig (as a developer's would)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from e2e_support import Apps, OperatorProcess, flaskapp, free_port

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e

# kopf names each webhook "<handler id>.<configuration name>", which must be a domain of three labels or more.
CONFIG_NAME = f"e2e-self-{secrets.token_hex(3)}.flaskops.dev"


@pytest.fixture(scope="module")
def self_managed(
    kube: Kube, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("webhook-self")
    env = {
        "FLASKOPS_WEBHOOK": "self",
        "FLASKOPS_WEBHOOK_ADDR": "127.0.0.1",
        "FLASKOPS_WEBHOOK_HOST": "127.0.0.1",
        "FLASKOPS_WEBHOOK_PORT": str(free_port()),
        "FLASKOPS_WEBHOOK_CERT_DIR": str(tmp / "certs"),
        "FLASKOPS_WEBHOOK_CONFIG_NAME": CONFIG_NAME,
    }
    operator.stop()
    proc = OperatorProcess(Path(kube.kubeconfig), tmp / "operator.log", extra_env=env)
    try:
        proc.start()
        ca = tmp / "certs" / "ca.crt"

        def configured() -> dict[str, Any]:
            out = kube.kubectl(
                "get", "validatingwebhookconfiguration", CONFIG_NAME, "-o", "json", check=False
            )
            if out.returncode != 0:
                raise NotYet(out.stderr.strip())
            body = dict(json.loads(out.stdout))
            if not body.get("webhooks"):
                raise NotYet("created, webhooks not filled in yet")  # kopf creates, then patches
            return body

        config = wait_for(configured, timeout=60, what=f"kopf to create {CONFIG_NAME}")
        yield {**config, "port": int(env["FLASKOPS_WEBHOOK_PORT"]), "ca": ca}
    finally:
        proc.stop()
        kube.kubectl("delete", "validatingwebhookconfiguration", CONFIG_NAME, "--ignore-not-found")
        operator.start()


def test_self_mode_manages_its_configuration_and_refuses(
    kube: Kube, self_managed: dict[str, Any], ns: str, make_server: Any
) -> None:
    hook = self_managed["webhooks"][0]
    assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:")
    assert hook["clientConfig"]["url"].endswith("/validate-flaskapp")
    assert hook["clientConfig"]["caBundle"]
    assert hook["failurePolicy"] == "Fail"

    server = make_server(["production"])
    body = flaskapp("bad", ns, server=server, dbname=f"shop_test_{secrets.token_hex(2)}")

    def refused() -> str:
        out = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False)
        if out.returncode == 0 or "S1" not in out.stderr:
            raise NotYet(out.stderr.strip() or "allowed")
        return out.stderr

    stderr = wait_for(refused, timeout=60, what="the self-managed webhook to refuse S1")
    assert "denied the request: unsafe FlaskApp: S1" in stderr


def test_an_anonymous_caller_learns_nothing_of_another_namespace(
    self_managed: dict[str, Any], ns: str, make_server: Any, apps: Apps, kube: Kube
) -> None:
    """No FLASKOPS_WEBHOOK_CLIENT_CA (this mode's default): anyone reaching the port is anonymous, so
    the answer depends only on the review and the PostgresServer's own configuration."""
    server = make_server(["development", "testing"])
    used = f"ledger_{secrets.token_hex(3)}"
    app = flaskapp("ledger", ns, server=server, environment="development", dbname=used)
    assert kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(app), check=False).returncode == 0
    apps.wait_reason(ns, "ledger", names.DATABASE_READY, "Provisioned", timeout=120)

    def ask(dbname: str) -> dict[str, Any]:
        # From another namespace, in another environment: rule S5 would refuse it, were it judged here.
        body = flaskapp("probe", "elsewhere", server=server, environment="testing", dbname=dbname)
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "forged",
                "operation": "CREATE",
                "userInfo": {"username": "system:anonymous"},
                "resource": {"group": names.GROUP, "version": "v1alpha1", "resource": "flaskapps"},
                "namespace": "elsewhere",
                "name": "probe",
                "object": body,
            },
        }
        url = f"https://127.0.0.1:{self_managed['port']}/validate-flaskapp"
        resp = requests.post(url, json=review, verify=str(self_managed["ca"]), timeout=10)
        assert resp.status_code == 200, resp.text
        return dict(resp.json()["response"])

    assert ask(used) == ask(f"free_{secrets.token_hex(3)}")
    # The rule is moved, not dropped: such an app is admitted, and reconcile refuses it before it touches
    # anything (the genuine API server's review is anonymous here too).
    probe = flaskapp("probe", ns, server=server, environment="testing", dbname=used)
    out = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(probe), check=False)
    assert out.returncode == 0, out.stderr
    cond = apps.wait_reason(ns, "probe", names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing", timeout=120)
    assert "S5" in cond["message"], cond
