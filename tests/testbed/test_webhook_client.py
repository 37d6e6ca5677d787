"""The testbed API server's webhook client PKI: a certificate a TLS server can verify against the CA."""

from __future__ import annotations

import ssl
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from flaskops_testbed import webhook_client


def test_the_admission_configuration_hands_every_webhook_the_client_certificate(tmp_path: Path) -> None:
    config_path = webhook_client.write(tmp_path)
    config = yaml.safe_load(config_path.read_text())
    assert config["kind"] == "AdmissionConfiguration"
    plugins = {p["name"]: p["configuration"] for p in config["plugins"]}
    assert set(plugins) == {"ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"}
    kubeconfig = yaml.safe_load(Path(plugins["ValidatingAdmissionWebhook"]["kubeConfigFile"]).read_text())
    (user,) = kubeconfig["users"]
    assert user["name"] == "*"  # every webhook the API server calls
    assert Path(user["user"]["client-certificate"]) == tmp_path / "client.crt"

    cert = x509.load_pem_x509_certificate((tmp_path / "client.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # What the operator's TLS server does with FLASKOPS_WEBHOOK_CLIENT_CA: the pair loads, the CA loads.
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.crt"))
    assert server_side.get_ca_certs()[0]["subject"]
    ssl.create_default_context().load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
    assert (tmp_path / "client.key").stat().st_mode & 0o077 == 0


def test_written_once_per_cluster(tmp_path: Path) -> None:
    webhook_client.write(tmp_path)
    first = (tmp_path / "ca.crt").read_bytes()
    webhook_client.write(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == first  # a restart keeps the CA the operator was given
