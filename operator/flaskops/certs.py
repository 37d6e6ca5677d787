"""A self-signed CA and a serving certificate for the admission webhook (when no cert-manager is used).

Used by FLASKOPS_WEBHOOK=self: the operator makes them at startup and, while it runs, again when
`renewal_reason` says so (admission.WebhookServer checks); kopf re-reads the files and re-patches the
configuration's caBundle.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
# notBefore lies this far in the past: a client whose clock is a little behind still accepts a new one.
BACKDATE = datetime.timedelta(minutes=5)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_ca(
    common_name: str, now: datetime.datetime, validity: datetime.timedelta
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed P-256 CA (keyCertSign, cRLSign; path length 0), valid from BACKDATE before `now`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca


def generate(
    directory: Path,
    hosts: Iterable[str],
    validity: datetime.timedelta = VALIDITY,
    *,
    keep_ca: bytes = b"",
    now: datetime.datetime | None = None,
) -> tuple[Path, Path, Path]:
    """Write ca.crt, tls.crt and tls.key for `hosts` into directory; returns their paths.

    `keep_ca`: the previous CA certificate (PEM), appended to ca.crt so clients that were given the
    bundle trust both the certificate being replaced and the new one while the server switches over.
    """
    hosts = [h for h in dict.fromkeys(hosts) if h]
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key, ca = make_ca("flaskops webhook CA", now, validity)
    ca_name = ca.subject
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    # The key first, then the certificate, then the CA: kopf re-reads all three once any changed, and a
    # reader between two writes must never pair the new certificate with the old key. Each file is
    # replaced atomically (rename), so no reader sees half a file.
    _write(
        paths[2],
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    _write(paths[1], cert.public_bytes(serialization.Encoding.PEM))
    _write(paths[0], ca.public_bytes(serialization.Encoding.PEM) + _first_pem(keep_ca))
    return paths


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.replace(path)


def _first_pem(bundle: bytes) -> bytes:
    """The first certificate of a PEM bundle (the CA being replaced), or b"" when there is none.

    Only the first: a renewal keeps the one previous CA, never a growing chain of expired ones.
    """
    end = b"-----END CERTIFICATE-----"
    head, sep, _ = bundle.partition(end)
    return head.lstrip() + sep + b"\n" if sep else b""


# Why a certificate must be made again (renewal_reason's answers).
MISSING = "missing"
EXPIRING = "expiring"
VALIDITY_CHANGED = "validity-changed"
HOSTS_CHANGED = "hosts-changed"


def renewal_reason(
    cert_pem: bytes | None,
    hosts: Iterable[str],
    *,
    validity: datetime.timedelta,
    renew_before: datetime.timedelta,
    now: datetime.datetime,
) -> str | None:
    """None while the serving certificate `cert_pem` is fine; else why to make a new one.

    MISSING: no file or not a certificate. EXPIRING: fewer than `renew_before` left before notAfter.
    VALIDITY_CHANGED: its lifetime differs from `validity` by more than a minute (the setting changed).
    HOSTS_CHANGED: its subjectAltNames do not cover every one of `hosts`.
    """
    if not cert_pem:
        return MISSING
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return MISSING
    not_after = cert.not_valid_after_utc
    if not_after - now < renew_before:
        return EXPIRING
    lifetime = not_after - cert.not_valid_before_utc - BACKDATE
    if abs(lifetime - validity) > datetime.timedelta(minutes=1):
        return VALIDITY_CHANGED
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return HOSTS_CHANGED
    have = {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(n) for n in san.get_values_for_type(x509.IPAddress)
    }
    if any(h and h not in have for h in hosts):
        return HOSTS_CHANGED
    return None
