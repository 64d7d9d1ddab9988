"""Certificates the wizard makes, parsed back: SANs, key usage, EKU, validity, PKCS#12."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance import pki
from appliance.firstboot.certs import (
    CA_DAYS,
    SERVER_DAYS,
    export_password,
    make_certificates,
    make_client,
)

NAMES = ["vpn.example.net", "ocgate", "ocgate.local"]
ADDRS = ["198.18.2.10", "2001:db8::10"]


@pytest.fixture(scope="module", params=["ec", "rsa"])
def certs(request: pytest.FixtureRequest):  # noqa: ANN201
    return make_certificates("ocgate", NAMES, ADDRS, request.param)


def _ext(cert: x509.Certificate, kind):  # noqa: ANN001, ANN202
    return cert.extensions.get_extension_for_class(kind)


def test_server_certificate_names_everything(certs) -> None:  # noqa: ANN001
    cert = x509.load_pem_x509_certificate(certs.server_cert_pem)
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == NAMES
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(a) for a in ADDRS]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NAMES[0]


def test_server_key_usage_and_validity(certs) -> None:  # noqa: ANN001
    cert = x509.load_pem_x509_certificate(certs.server_cert_pem)
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ku.value.key_encipherment == (certs.key_type == "rsa")
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=SERVER_DAYS) <= lifetime <= datetime.timedelta(
        days=SERVER_DAYS, minutes=10)
    assert SERVER_DAYS <= 825  # Apple's limit
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    assert certs.not_after == cert.not_valid_after_utc
    assert certs.pin == pki.pin_sha256(cert)


def test_ca_is_a_constrained_ca_that_signed_the_server(certs) -> None:  # noqa: ANN001
    ca = x509.load_pem_x509_certificate(certs.ca_cert_pem)
    cert = x509.load_pem_x509_certificate(certs.server_cert_pem)
    bc = _ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert _ext(ca, x509.KeyUsage).value.key_cert_sign
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= CA_DAYS
    cert.verify_directly_issued_by(ca)
    assert "ocgate" in ca.subject.rfc4514_string()


def test_keys_have_the_requested_type(certs) -> None:  # noqa: ANN001
    key = load_pem_private_key(certs.server_key_pem, None)
    if certs.key_type == "ec":
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    else:
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072


@pytest.mark.parametrize("legacy", [False, True])
def test_client_pkcs12_round_trip(certs, legacy: bool) -> None:  # noqa: ANN001
    user = make_client(certs, "alice", legacy=legacy)
    assert user.method == "certificate" and user.pkcs12 and user.pkcs12_password
    key, cert, extra = pkcs12.load_key_and_certificates(user.pkcs12,
                                                        user.pkcs12_password.encode())
    assert key is not None and cert is not None
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "alice"
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca = x509.load_pem_x509_certificate(certs.ca_cert_pem)
    cert.verify_directly_issued_by(ca)
    assert [c.subject for c in extra] == [ca.subject]
    assert x509.load_pem_x509_certificate(user.client_cert_pem) == cert
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(user.pkcs12, b"wrong")


def test_export_password_is_typable() -> None:
    pw = export_password()
    assert len(pw) == 19 and pw.count("-") == 3 and pw.upper() == pw


def test_bad_names_are_refused() -> None:
    with pytest.raises(pki.PkiError):
        make_certificates("x", ["bad name!"], [], "ec")
