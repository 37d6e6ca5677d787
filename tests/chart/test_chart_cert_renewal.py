"""The chart's own webhook certificate on a real API server with real Helm: kept across `helm upgrade`
while it has time left, replaced by the upgrade once it is near expiry (or expired, or made by an older
chart without the annotations, or for another validity), with a caBundle that trusts both CAs meanwhile."""

from __future__ import annotations

import base64
import datetime
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client

from flaskops import certs
from flaskops_testbed.kube_fixtures import Kube
from tests.chart.chart_support import CHART, fullname

pytestmark = pytest.mark.e2e

NOT_AFTER = "flaskops.dev/cert-not-after"


@pytest.fixture
def release(kube: Kube) -> Iterator[str]:
    """A release in its own namespace with the webhook on and nothing else that needs pods."""
    name = f"cr-{secrets.token_hex(3)}"
    core = client.CoreV1Api(kube.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        upgrade(kube, name)
        yield name
    finally:
        kube.helm_run("uninstall", name, "-n", name, "--ignore-not-found", "--wait", check=False)
        core.delete_namespace(name, propagation_policy="Background")


def upgrade(kube: Kube, name: str, *values: str) -> None:
    kube.helm_run(
        "upgrade",
        "--install",
        name,
        str(CHART),
        "-n",
        name,
        # Nothing here needs the operator to run; the webhook reviews no namespace (only its objects).
        "--set",
        "operator.replicas=0",
        "--set",
        "tests.enabled=false",
        "--set",
        "crds.create=false",
        "--set-json",
        f'webhook.namespaceSelector={{"matchLabels":{{"flaskops-cert-test":"{name}"}}}}',
        *values,
    )


def secret(kube: Kube, name: str) -> Any:
    return client.CoreV1Api(kube.api).read_namespaced_secret(f"{fullname(name)}-webhook-tls", name)


def cert_of(obj: Any) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(obj.data["tls.crt"]))


def ca_bundle(kube: Kube, name: str) -> list[x509.Certificate]:
    api = client.AdmissionregistrationV1Api(kube.api)
    vwc: Any = api.read_validating_webhook_configuration(fullname(name))
    return x509.load_pem_x509_certificates(base64.b64decode(vwc.webhooks[0].client_config.ca_bundle))


def pod_checksum(kube: Kube, name: str) -> str:
    dep: Any = client.AppsV1Api(kube.api).read_namespaced_deployment(fullname(name), name)
    return str(dep.spec.template.metadata.annotations["checksum/webhook-tls"])


def put_in_place(kube: Kube, name: str, tmp: Path, *, days_left: float, annotate: bool = True) -> bytes:
    """Replace the Secret's certificate with one that has `days_left` (negative: already expired);
    returns its CA (PEM). `annotate=False` drops the chart's annotations, as an older chart left it."""
    service = f"{fullname(name)}-webhook"
    made = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days_left - 90)
    ca, crt, key = certs.generate(tmp, [f"{service}.{name}.svc"], datetime.timedelta(days=90), now=made)
    current = secret(kube, name)
    annotations = {
        k: v
        for k, v in (current.metadata.annotations or {}).items()
        if annotate or not k.startswith("flaskops.dev/")
    }
    if annotate:
        not_after = cert_of_pem(crt.read_bytes()).not_valid_after_utc
        annotations[NOT_AFTER] = not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    # Written as Helm's own field manager, as an earlier `helm install` would have left it (Helm 4 applies
    # server-side: a foreign manager's values would make the upgrade conflict rather than renew).
    (manager,) = {f.manager for f in current.metadata.managed_fields if f.operation == "Apply"}
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": current.type,
        "metadata": {
            "name": current.metadata.name,
            "namespace": name,
            "labels": current.metadata.labels,
            "annotations": annotations,
        },
        "data": {
            "ca.crt": base64.b64encode(ca.read_bytes()).decode(),
            "tls.crt": base64.b64encode(crt.read_bytes()).decode(),
            "tls.key": base64.b64encode(key.read_bytes()).decode(),
        },
    }
    kube.kubectl(
        "apply", "--server-side", f"--field-manager={manager}", "-f", "-", input=yaml.safe_dump(body)
    )
    return ca.read_bytes()


def cert_of_pem(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def days_left(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400


def test_upgrade_keeps_a_certificate_with_time_left(kube: Kube, release: str, tmp_path: Path) -> None:
    first = secret(kube, release)
    assert 3649 < days_left(cert_of(first)) <= 3650
    recorded = datetime.datetime.fromisoformat(first.metadata.annotations[NOT_AFTER])
    assert abs((recorded - cert_of(first).not_valid_after_utc).total_seconds()) <= 120
    checksum = pod_checksum(kube, release)

    # 31 days left with the default 30-day window: kept, the pod not restarted, one CA trusted.
    put_in_place(kube, release, tmp_path, days_left=31)
    kept = secret(kube, release).data
    upgrade(kube, release)
    assert secret(kube, release).data == kept
    assert len(ca_bundle(kube, release)) == 1
    assert pod_checksum(kube, release) != checksum  # the test's own swap, not the upgrade, changed it
    checksum = pod_checksum(kube, release)
    upgrade(kube, release, "--set", "operator.maxWorkers=3")
    assert pod_checksum(kube, release) == checksum


@pytest.mark.parametrize(
    ("days", "annotate"),
    [(10, True), (-1, True), (200, False)],
    ids=["near-expiry", "expired", "older-chart-without-annotations"],
)
def test_upgrade_renews_a_certificate_near_expiry(
    kube: Kube, release: str, tmp_path: Path, days: float, annotate: bool
) -> None:
    old_ca = put_in_place(kube, release, tmp_path, days_left=days, annotate=annotate)
    old = cert_of(secret(kube, release))
    checksum = pod_checksum(kube, release)

    upgrade(kube, release)
    renewed = secret(kube, release)
    new = cert_of(renewed)
    assert new.serial_number != old.serial_number
    assert 3649 < days_left(new) <= 3650
    assert renewed.metadata.annotations[NOT_AFTER] != ""
    new_ca = x509.load_pem_x509_certificate(base64.b64decode(renewed.data["ca.crt"]))
    new.verify_directly_issued_by(new_ca)
    # The API server trusts the new CA and, while the pod restarts onto the new certificate, the old one.
    assert ca_bundle(kube, release) == [new_ca, cert_of_pem(old_ca)]
    assert pod_checksum(kube, release) != checksum

    # The next upgrade keeps it, and trusts only the new CA.
    upgrade(kube, release)
    assert cert_of(secret(kube, release)).serial_number == new.serial_number
    assert ca_bundle(kube, release) == [new_ca]


def test_upgrade_renews_when_the_validity_setting_changes(kube: Kube, release: str) -> None:
    before = cert_of(secret(kube, release))
    upgrade(kube, release, "--set", "webhook.certValidityDays=400")
    after = cert_of(secret(kube, release))
    assert after.serial_number != before.serial_number
    assert 399 < days_left(after) <= 400
    assert secret(kube, release).metadata.annotations["flaskops.dev/cert-validity-days"] == "400"
