"""The webhook certificate's "self" mode: when a certificate must be made again, and the renewal itself."""

import datetime
from pathlib import Path

import pytest
from cryptography import x509

from flaskops import certs
from flaskops.admission import Renewal

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
YEAR = datetime.timedelta(days=365)
MONTH = datetime.timedelta(days=30)
HOSTS = ["flaskops-webhook.flaskops.svc", "127.0.0.1"]


def _cert(tmp_path, *, hosts=HOSTS, validity=YEAR, made=NOW):
    _, crt, _ = certs.generate(tmp_path, hosts, validity, now=made)
    return crt.read_bytes()


def _reason(pem, *, hosts=HOSTS, validity=YEAR, renew_before=MONTH, now=NOW):
    return certs.renewal_reason(pem, hosts, validity=validity, renew_before=renew_before, now=now)


def test_a_fresh_certificate_is_kept(tmp_path):
    assert _reason(_cert(tmp_path)) is None


def test_missing_or_garbage_is_made_again():
    assert _reason(None) == certs.MISSING
    assert _reason(b"not a certificate") == certs.MISSING


@pytest.mark.parametrize(
    ("age_days", "expected"),
    [(334, None), (336, certs.EXPIRING), (400, certs.EXPIRING)],  # 31 days left, 29 left, expired
)
def test_renewed_once_fewer_than_renew_before_days_remain(tmp_path, age_days, expected):
    pem = _cert(tmp_path)
    assert _reason(pem, now=NOW + datetime.timedelta(days=age_days)) == expected


def test_a_changed_validity_setting_makes_a_new_one(tmp_path):
    pem = _cert(tmp_path, validity=YEAR)
    assert _reason(pem, validity=datetime.timedelta(days=90)) == certs.VALIDITY_CHANGED


def test_a_host_the_certificate_does_not_name_makes_a_new_one(tmp_path):
    pem = _cert(tmp_path)
    assert _reason(pem, hosts=[*HOSTS, "flaskops-webhook.other.svc"]) == certs.HOSTS_CHANGED
    assert _reason(pem, hosts=["10.0.0.7"]) == certs.HOSTS_CHANGED


def _fingerprint(cert):
    return cert.fingerprint(cert.signature_hash_algorithm)


def test_renewal_keeps_the_previous_ca_in_the_bundle_once(tmp_path):
    renewal = Renewal(tmp_path, HOSTS, validity_days=365, renew_before_days=30)
    assert renewal.ensure(now=NOW) == certs.MISSING
    ca, crt, key = renewal.files()
    first_ca, first_crt = ca.read_bytes(), crt.read_bytes()
    assert len(x509.load_pem_x509_certificates(first_ca)) == 1
    assert renewal.ensure(now=NOW + datetime.timedelta(days=100)) is None
    assert crt.read_bytes() == first_crt

    assert renewal.ensure(now=NOW + datetime.timedelta(days=340)) == certs.EXPIRING
    bundle = x509.load_pem_x509_certificates(ca.read_bytes())
    assert [_fingerprint(c) for c in bundle[1:]] == [_fingerprint(x509.load_pem_x509_certificate(first_ca))]
    new = x509.load_pem_x509_certificate(crt.read_bytes())
    assert new.not_valid_after_utc == NOW + datetime.timedelta(days=340) + YEAR
    new.verify_directly_issued_by(bundle[0])  # signed by the bundle's first CA: the new one
    assert key.stat().st_mode & 0o777 == 0o600

    # A second renewal keeps one previous CA, not a growing chain.
    assert renewal.ensure(now=NOW + datetime.timedelta(days=700)) == certs.EXPIRING
    assert len(x509.load_pem_x509_certificates(ca.read_bytes())) == 2


def test_the_check_interval_is_a_tenth_of_the_window_at_most_hourly():
    assert Renewal(Path("."), HOSTS, 365, 30).check_interval == 3600
    assert Renewal(Path("."), HOSTS, 0.002, 0.001).check_interval == pytest.approx(8.64)
