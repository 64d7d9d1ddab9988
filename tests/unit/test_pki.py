"""Tests for appliance.pki, cross-checked against the openssl and certtool command-line tools."""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import pki
from tests.prereqs import needs_command

OPENSSL = shutil.which("openssl")
CERTTOOL = shutil.which("certtool")
needs_openssl = needs_command("openssl", "openssl")
needs_certtool = needs_command("certtool", "gnutls-bin")

NOW = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)


@functools.cache
def _ec_ca() -> tuple[pki.PrivateKey, x509.Certificate]:
    return pki.make_ca("Test CA")


def _ext(cert: x509.Certificate, cls: type) -> x509.ExtensionType:
    return cert.extensions.get_extension_for_class(cls).value


def _sh(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(args, input=stdin, capture_output=True, check=True, timeout=30).stdout


# ---------------------------------------------------------------- CA


def test_ca_is_self_signed_ec_p256_with_pathlen_zero() -> None:
    key, cert = pki.make_ca("Appliance CA", now=NOW)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Appliance CA"
    cert.verify_directly_issued_by(cert)
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.ca is True and bc.path_length == 0
    ku = _ext(cert, x509.KeyUsage)
    assert ku.key_cert_sign and ku.crl_sign
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=3650)
    assert cert.not_valid_before_utc < NOW


def test_ca_rsa_is_3072_bits() -> None:
    key, cert = pki.make_ca("RSA CA", key_type="rsa", days=10)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == (
        datetime.timedelta(days=10) + pki.CLOCK_SKEW
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"common_name": ""}, "non-empty"),
        ({"common_name": "a\nb"}, "control"),
        ({"common_name": "x" * 65}, "64"),
        ({"common_name": "ok", "days": 0}, "positive"),
        ({"common_name": "ok", "key_type": "dsa"}, "key type"),
    ],
)
def test_ca_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(pki.PkiError, match=message):
        pki.make_ca(**kwargs)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(pki.PkiError, match="timezone"):
        pki.make_ca("x", now=datetime.datetime(2025, 1, 1))


# ---------------------------------------------------------------- server certificates


def test_server_cert_has_every_name_and_address() -> None:
    ca_key, ca = _ec_ca()
    key, cert = pki.make_server_cert(
        ca_key,
        ca,
        names=["vpn.example.test", "Other.Example.Test", "*.wild.test", "vpn.example.test"],
        addresses=["198.18.0.1", "2001:db8::1"],
        now=NOW,
    )
    cert.verify_directly_issued_by(ca)
    assert cert.issuer == ca.subject
    san = _ext(cert, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == [
        "vpn.example.test",
        "other.example.test",
        "*.wild.test",
    ]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("198.18.0.1"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    assert list(_ext(cert, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert _ext(cert, x509.BasicConstraints).ca is False
    ku = _ext(cert, x509.KeyUsage)
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_cert_sign
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "vpn.example.test"
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=825)
    aki = _ext(cert, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == _ext(ca, x509.SubjectKeyIdentifier).digest
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_server_cert_ip_only_uses_ip_as_cn() -> None:
    ca_key, ca = _ec_ca()
    _, cert = pki.make_server_cert(ca_key, ca, names=[], addresses=["198.18.7.1"])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "198.18.7.1"


def test_server_cert_unicode_name_becomes_a_label() -> None:
    ca_key, ca = _ec_ca()
    _, cert = pki.make_server_cert(ca_key, ca, names=["bücher.example"], addresses=[])
    san = _ext(cert, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["xn--bcher-kva.example"]


def test_server_cert_long_name_gets_critical_san_and_empty_subject() -> None:
    ca_key, ca = _ec_ca()
    long_name = ".".join(["a" * 60, "b" * 60, "example"])
    _, cert = pki.make_server_cert(ca_key, ca, names=[long_name], addresses=[])
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_server_cert_rsa_has_key_encipherment() -> None:
    ca_key, ca = _ec_ca()
    key, cert = pki.make_server_cert(ca_key, ca, names=["r.test"], addresses=[], key_type="rsa")
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    assert _ext(cert, x509.KeyUsage).key_encipherment


@pytest.mark.parametrize(
    ("names", "addresses", "message"),
    [
        ([], [], "at least one"),
        (["bad name.test"], [], "invalid DNS"),
        (["-lead.test"], [], "invalid DNS"),
        (["a..b"], [], "invalid DNS"),
        ([""], [], "empty DNS"),
        ([], ["300.1.1.1"], "invalid IP"),
        ([], ["198.18.0.0/24"], "invalid IP"),
        ("vpn.test", [], "lists"),
    ],
)
def test_server_cert_rejects_bad_names(
    names: list[str], addresses: list[str], message: str
) -> None:
    ca_key, ca = _ec_ca()
    with pytest.raises(pki.PkiError, match=message):
        pki.make_server_cert(ca_key, ca, names=names, addresses=addresses)


def test_server_cert_rejects_mismatched_ca_key() -> None:
    _, ca = _ec_ca()
    other_key, _ = pki.make_ca("Other CA")
    with pytest.raises(pki.PkiError, match="does not match"):
        pki.make_server_cert(other_key, ca, names=["x.test"], addresses=[])


# ---------------------------------------------------------------- client certificates


def test_client_cert_carries_username_in_cn_and_uid() -> None:
    ca_key, ca = _ec_ca()
    _, cert = pki.make_client_cert(ca_key, ca, username="alice", now=NOW)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "alice"
    assert list(_ext(cert, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=825)


def test_client_cert_rejects_bad_username() -> None:
    ca_key, ca = _ec_ca()
    with pytest.raises(pki.PkiError):
        pki.make_client_cert(ca_key, ca, username=" ")
    with pytest.raises(pki.PkiError):
        pki.make_client_cert(ca_key, ca, username="a\x00b")


# ---------------------------------------------------------------- PKCS#12


@pytest.mark.parametrize("legacy", [False, True])
def test_pkcs12_round_trip(legacy: bool) -> None:
    ca_key, ca = _ec_ca()
    key, cert = pki.make_client_cert(ca_key, ca, username="bob")
    blob = pki.pkcs12_bundle(key, cert, ca, b"s3cret", "bob@vpn", legacy=legacy)
    loaded = pkcs12.load_pkcs12(blob, b"s3cret")
    assert loaded.cert is not None and loaded.cert.certificate == cert
    assert loaded.cert.friendly_name == b"bob@vpn"
    assert [c.certificate for c in loaded.additional_certs] == [ca]
    assert loaded.key is not None
    assert loaded.key.private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(blob, b"wrong")


def test_pkcs12_without_password_or_ca() -> None:
    ca_key, ca = _ec_ca()
    key, cert = pki.make_client_cert(ca_key, ca, username="carol")
    loaded = pkcs12.load_pkcs12(pki.pkcs12_bundle(key, cert, None, None, "carol"), None)
    assert loaded.cert is not None and loaded.cert.certificate == cert
    assert loaded.additional_certs == []


def test_pkcs12_rejects_text_password() -> None:
    ca_key, ca = _ec_ca()
    key, cert = pki.make_client_cert(ca_key, ca, username="dave")
    with pytest.raises(pki.PkiError, match="bytes"):
        pki.pkcs12_bundle(key, cert, ca, "text", "dave")  # type: ignore[arg-type]


@needs_openssl
def test_pkcs12_readable_by_openssl(tmp_path: Path) -> None:
    ca_key, ca = _ec_ca()
    key, cert = pki.make_client_cert(ca_key, ca, username="erin")
    p12 = tmp_path / "erin.p12"
    p12.write_bytes(pki.pkcs12_bundle(key, cert, ca, b"pw", "erin"))
    out = _sh(OPENSSL, "pkcs12", "-in", str(p12), "-passin", "pass:pw", "-nokeys")
    assert out.count(b"BEGIN CERTIFICATE") == 2
    assert b"friendlyName: erin" in out


# ---------------------------------------------------------------- fingerprints vs reference tools


@needs_openssl
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_pin_sha256_matches_openssl(tmp_path: Path, key_type: str) -> None:
    ca_key, ca = _ec_ca()
    _, cert = pki.make_server_cert(ca_key, ca, names=["p.test"], addresses=[], key_type=key_type)
    pem = tmp_path / "c.pem"
    pki.write_cert(pem, cert)
    pub = _sh(OPENSSL, "x509", "-in", str(pem), "-pubkey", "-noout")
    der = _sh(OPENSSL, "pkey", "-pubin", "-outform", "der", stdin=pub)
    digest = _sh(OPENSSL, "dgst", "-sha256", "-binary", stdin=der)
    b64 = _sh(OPENSSL, "base64", "-A", stdin=digest).decode().strip()
    assert pki.pin_sha256(cert) == f"pin-sha256:{b64}"


@needs_certtool
def test_pin_sha256_matches_certtool(tmp_path: Path) -> None:
    ca_key, ca = _ec_ca()
    _, cert = pki.make_server_cert(ca_key, ca, names=["p.test"], addresses=["198.18.0.1"])
    pem = tmp_path / "c.pem"
    pki.write_cert(pem, cert)
    info = _sh(CERTTOOL, "-i", "--infile", str(pem)).decode()
    assert pki.pin_sha256(cert) in info.split()


@needs_openssl
def test_sha1_fingerprint_matches_openssl(tmp_path: Path) -> None:
    _, ca = _ec_ca()
    pem = tmp_path / "ca.pem"
    pki.write_cert(pem, ca)
    out = _sh(OPENSSL, "x509", "-in", str(pem), "-noout", "-fingerprint", "-sha1").decode()
    expected = out.strip().split("=", 1)[1].replace(":", "")
    assert pki.sha1_fingerprint_hex(ca) == expected
    assert expected == expected.upper() and len(expected) == 40


@needs_openssl
def test_openssl_verifies_server_and_client_purpose(tmp_path: Path) -> None:
    ca_key, ca = _ec_ca()
    _, server = pki.make_server_cert(ca_key, ca, names=["v.test"], addresses=["198.18.0.1"])
    _, client = pki.make_client_cert(ca_key, ca, username="frank")
    for name, cert in (("ca", ca), ("server", server), ("client", client)):
        pki.write_cert(tmp_path / f"{name}.pem", cert)
    ca_file = str(tmp_path / "ca.pem")
    _sh(
        OPENSSL,
        "verify",
        "-CAfile",
        ca_file,
        "-purpose",
        "sslserver",
        "-verify_ip",
        "198.18.0.1",
        "-verify_hostname",
        "v.test",
        str(tmp_path / "server.pem"),
    )
    _sh(
        OPENSSL, "verify", "-CAfile", ca_file, "-purpose", "sslclient", str(tmp_path / "client.pem")
    )
    with pytest.raises(subprocess.CalledProcessError):
        _sh(
            OPENSSL,
            "verify",
            "-CAfile",
            ca_file,
            "-purpose",
            "sslclient",
            str(tmp_path / "server.pem"),
        )


@needs_certtool
def test_certtool_verifies_chain(tmp_path: Path) -> None:
    """GnuTLS is what ocserv (and openconnect on Debian) uses to check these certificates."""
    ca_key, ca = _ec_ca()
    _, server = pki.make_server_cert(ca_key, ca, names=["v.test"], addresses=["198.18.0.1"])
    pki.write_cert(tmp_path / "ca.pem", ca)
    pki.write_cert(tmp_path / "chain.pem", server, ca)
    out = _sh(
        CERTTOOL,
        "--verify",
        "--load-ca-certificate",
        str(tmp_path / "ca.pem"),
        "--infile",
        str(tmp_path / "chain.pem"),
    ).decode()
    assert "Chain verification output: Verified" in out


# ---------------------------------------------------------------- files


def test_write_key_is_private_and_round_trips(tmp_path: Path) -> None:
    key, _ = _ec_ca()
    path = tmp_path / "k.pem"
    path.write_text("old")
    path.chmod(0o644)
    pki.write_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pki.load_key(path).private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem"]


def test_write_cert_chain_and_load(tmp_path: Path) -> None:
    ca_key, ca = _ec_ca()
    _, leaf = pki.make_server_cert(ca_key, ca, names=["l.test"], addresses=[])
    path = tmp_path / "chain.pem"
    pki.write_cert(path, leaf, ca)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    assert pki.load_cert(path) == leaf
    der = tmp_path / "leaf.der"
    der.write_bytes(leaf.public_bytes(serialization.Encoding.DER))
    assert pki.load_cert(der) == leaf


def test_write_failure_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = _ec_ca()

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        pki.write_key(tmp_path / "k.pem", key)
    assert list(tmp_path.iterdir()) == []


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(pki.PkiError, match="cannot read"):
        pki.load_cert(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(pki.PkiError):
        pki.load_cert(junk)
    with pytest.raises(pki.PkiError):
        pki.load_key(junk)
    ed = tmp_path / "ed.pem"
    ed.write_bytes(pki.key_pem(ed25519.Ed25519PrivateKey.generate()))  # type: ignore[arg-type]
    with pytest.raises(pki.PkiError, match="unsupported key type"):
        pki.load_key(ed)


def test_load_encrypted_key(tmp_path: Path) -> None:
    key, _ = _ec_ca()
    path = tmp_path / "enc.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    assert pki.load_key(path, b"pw").private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    with pytest.raises(pki.PkiError):
        pki.load_key(path, b"bad")
    with pytest.raises(pki.PkiError):
        pki.load_key(path)


# ---------------------------------------------------------------- hostile input


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=2048))
def test_loaders_only_raise_pki_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz"
    for blob in (
        data,
        b"-----BEGIN CERTIFICATE-----\n" + data,
        b"-----BEGIN PRIVATE KEY-----\n" + data,
    ):
        path.write_bytes(blob)
        for loader in (pki.load_cert, pki.load_key):
            try:
                loader(path)
            except pki.PkiError:
                pass


@settings(max_examples=150, deadline=None)
@given(
    names=st.lists(st.text(max_size=70), max_size=3),
    addresses=st.lists(st.text(alphabet="0123456789abcdef.:/%", max_size=45), max_size=3),
)
def test_server_cert_arbitrary_names_only_raise_pki_error(
    names: list[str], addresses: list[str]
) -> None:
    ca_key, ca = _ec_ca()
    try:
        _, cert = pki.make_server_cert(ca_key, ca, names=names, addresses=addresses)
    except pki.PkiError:
        return
    san = _ext(cert, x509.SubjectAlternativeName)
    assert len(san) >= 1
    for dns_name in san.get_values_for_type(x509.DNSName):
        dns_name.encode("ascii")


@settings(max_examples=100, deadline=None)
@given(username=st.text(max_size=80))
def test_client_cert_arbitrary_usernames_only_raise_pki_error(username: str) -> None:
    ca_key, ca = _ec_ca()
    try:
        _, cert = pki.make_client_cert(ca_key, ca, username=username)
    except pki.PkiError:
        return
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == username
