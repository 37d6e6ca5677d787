"""The testbed API server's client certificate for admission webhooks, and the files that hand it over.

`write(directory)` makes (once; kept while the cluster's state directory lives):
- ca.crt / ca.key: a CA of its own, used for nothing else: the operator trusts exactly the clients it
  signed (FLASKOPS_WEBHOOK_CLIENT_CA=ca.crt);
- client.crt / client.key: the API server's client certificate (CN kube-apiserver-webhook-client,
  extended key usage clientAuth), valid for a year;
- webhook-kubeconfig.yaml: gives the user "*" (every webhook the API server calls) that certificate;
- admission-config.yaml: the AdmissionConfiguration (apiserver.config.k8s.io/v1) naming that kubeconfig
  for the ValidatingAdmissionWebhook and MutatingAdmissionWebhook plugins, for the API server's
  --admission-control-config-file. Shapes: Kubernetes "Dynamic Admission Control", "Authenticate
  apiservers".
"""

from __future__ import annotations

import datetime
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flaskops import certs

CLIENT_NAME = "kube-apiserver-webhook-client"
VALIDITY = datetime.timedelta(days=365)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write(directory: Path) -> Path:
    """Create the files above in `directory` unless they exist; returns the AdmissionConfiguration's path."""
    config = directory / "admission-config.yaml"
    if config.exists():
        return config
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    # The operator's own CA builder (flaskops.certs): one definition of what a CA here is.
    ca_key, ca = certs.make_ca("flaskops testbed webhook-client CA", now, VALIDITY)
    ca_name = ca.subject
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_NAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.key").write_bytes(_key_pem(ca_key))
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "client.key").write_bytes(_key_pem(key))
    (directory / "client.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for private in ("ca.key", "client.key"):
        (directory / private).chmod(0o600)
    kubeconfig = directory / "webhook-kubeconfig.yaml"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "users": [
                    {
                        "name": "*",
                        "user": {
                            "client-certificate": str(directory / "client.crt"),
                            "client-key": str(directory / "client.key"),
                        },
                    }
                ],
            }
        )
    )
    plugin_config = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "WebhookAdmissionConfiguration",
        "kubeConfigFile": str(kubeconfig),
    }
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [
                    {"name": "ValidatingAdmissionWebhook", "configuration": plugin_config},
                    {"name": "MutatingAdmissionWebhook", "configuration": plugin_config},
                ],
            }
        )
    )
    return config
