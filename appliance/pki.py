"""Certificate authority, server and client certificates for the appliance.

The first-boot wizard and ``make run`` need a working TLS identity before any
administrator has supplied one, and VPN users with certificate login need client
certificates they can import on phones and laptops.  This module makes all of
that with ``cryptography`` alone, so no ``openssl``/``certtool`` binary has to be
present on the appliance image.

Two fingerprints matter for interoperability and are computed here exactly as
the other side computes them:

* :func:`pin_sha256` is what ``openconnect --servercert`` accepts (RFC 7469 pin
  over the SubjectPublicKeyInfo), so a client can trust a self-signed appliance
  without a CA file;
* :func:`sha1_fingerprint_hex` is the ``sh:`` value ocserv puts in its
  ``webvpnc`` cookie (docs/protocol.md §2.4.4).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .atomicfile import write_atomic

log = logging.getLogger(__name__)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: RSA size when RSA is asked for: 3072 bits is the NIST level matching P-256.
RSA_BITS = 3072
#: Backdating of notBefore, because client clocks (phones, fresh VMs) are often
#: a few minutes behind the appliance that issued the certificate.
CLOCK_SKEW = datetime.timedelta(minutes=5)
#: Apple platforms reject TLS server certificates valid for more than 825 days.
MAX_APPLE_SERVER_DAYS = 825

_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


class PkiError(ValueError):
    """A certificate request or a key/certificate file that cannot be used."""


# ---------------------------------------------------------------- keys


def generate_key(key_type: str = "ec") -> PrivateKey:
    """New private key: ``ec`` = P-256 (fast, small), ``rsa`` = RSA-3072 (for old clients)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    raise PkiError(f"unknown key type {key_type!r} (expected 'ec' or 'rsa')")


# ---------------------------------------------------------------- validation helpers


def _check_days(days: int) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
        raise PkiError(f"validity must be a positive number of days, got {days!r}")


def _check_text(what: str, value: str) -> None:
    """Reject empty values and control characters, which break PEM viewers and logs."""
    if not isinstance(value, str) or not value.strip():
        raise PkiError(f"{what} must be a non-empty string")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise PkiError(f"{what} contains control characters")
    if len(value.encode("utf-8")) > 64:
        # X.520 upper bound for commonName, which cryptography counts in UTF-8 bytes.
        raise PkiError(f"{what} is longer than 64 bytes (UTF-8)")


def _dns_name(name: str) -> str:
    """Return the A-label form of ``name``; certificates must not carry raw Unicode."""
    if not isinstance(name, str) or not name:
        raise PkiError("empty DNS name")
    wildcard = name.startswith("*.")
    body = name[2:] if wildcard else name
    body = body.rstrip(".")
    try:
        ascii_name = body.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise PkiError(f"invalid DNS name {name!r}: {exc}") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise PkiError(f"invalid DNS name {name!r}")
    return ("*." if wildcard else "") + ascii_name.lower()


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise PkiError(f"invalid IP address {address!r}") from None


def _now(now: datetime.datetime | None) -> datetime.datetime:
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if now.tzinfo is None:
        raise PkiError("'now' must be timezone-aware")
    return now


def _key_usage(*, ca: bool, key: PrivateKey) -> x509.KeyUsage:
    # keyEncipherment only makes sense for RSA (static RSA key exchange);
    # GnuTLS rejects EC certificates that claim it in strict modes.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey) and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _check_issuer(ca_key: PrivateKey, ca_cert: x509.Certificate) -> None:
    """Signing with a key that does not match the CA yields certificates nobody can verify."""
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError("CA key must be an EC or RSA private key")
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if ca_key.public_key().public_bytes(der, spki) != ca_cert.public_key().public_bytes(der, spki):
        raise PkiError("CA key does not match the CA certificate")


def _leaf_builder(
    ca_cert: x509.Certificate,
    subject: x509.Name,
    key: PrivateKey,
    *,
    days: int,
    now: datetime.datetime | None,
) -> x509.CertificateBuilder:
    start = _now(now)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False, key=key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )


# ---------------------------------------------------------------- certificates


def make_ca(
    common_name: str,
    *,
    key_type: str = "ec",
    days: int = 3650,
    now: datetime.datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """Self-signed CA that can only issue end-entity certificates (pathLen 0).

    pathLen 0 limits the damage if the appliance's CA key ever leaks: it cannot
    be used to mint intermediate CAs that clients would accept.
    """
    _check_text("common name", common_name)
    _check_days(days)
    key = generate_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = _now(now)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True, key=key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    log.info("created CA %r (%s)", common_name, key_type)
    return key, cert


def make_server_cert(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    *,
    names: Sequence[str],
    addresses: Sequence[str],
    key_type: str = "ec",
    days: int = MAX_APPLE_SERVER_DAYS,
    now: datetime.datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """TLS server certificate for every given DNS name and IP address.

    Clients match the URL host against the subjectAltName only (the CN is
    ignored by modern verifiers), so every name and address a user may type
    must be listed.  The CN repeats the first one for human readers.
    """
    if isinstance(names, str) or isinstance(addresses, str):
        raise PkiError("names and addresses must be lists, not strings")
    dns = [_dns_name(n) for n in names]
    ips = [_ip(a) for a in addresses]
    if not dns and not ips:
        raise PkiError("a server certificate needs at least one DNS name or IP address")
    _check_days(days)
    _check_issuer(ca_key, ca_cert)
    key = generate_key(key_type)
    # commonName is capped at 64 characters; a longer DNS name lives in the SAN only,
    # and with no usable CN the subject is empty and the SAN must be critical (RFC 5280).
    common_name = next((c for c in [*dns, *map(str, ips)] if len(c) <= 64), None)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns)]
    sans += [x509.IPAddress(ip) for ip in dict.fromkeys(ips)]
    cert = (
        _leaf_builder(ca_cert, subject, key, days=days, now=now)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=common_name is None)
        .sign(ca_key, hashes.SHA256())
    )
    log.info("created server certificate for %s", ", ".join([*dns, *map(str, ips)]))
    return key, cert


def make_client_cert(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    *,
    username: str,
    days: int = MAX_APPLE_SERVER_DAYS,
    key_type: str = "ec",
    now: datetime.datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """Client certificate carrying the VPN username in both CN and UID.

    ocserv's ``cert-user-oid`` is usually set to the UID OID
    (0.9.2342.19200300.100.1.1) or to CN (2.5.4.3); filling both lets either
    configuration map the certificate to the same user.
    """
    _check_text("username", username)
    _check_days(days)
    _check_issuer(ca_key, ca_cert)
    key = generate_key(key_type)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, username),
            x509.NameAttribute(NameOID.USER_ID, username),
        ]
    )
    cert = (
        _leaf_builder(ca_cert, subject, key, days=days, now=now)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    log.info("created client certificate for user %r", username)
    return key, cert


def pkcs12_bundle(
    key: PrivateKey,
    cert: x509.Certificate,
    ca_cert: x509.Certificate | None,
    password: bytes | None,
    friendly_name: str,
    *,
    legacy: bool = False,
) -> bytes:
    """PKCS#12 file a user can import on a device (key + certificate + CA).

    The default encryption is PBES2/AES-256 with a SHA-256 MAC.  ``legacy=True``
    selects 3DES/SHA-1 instead, which older Android, macOS and iOS keychains
    need; only use it when a device refuses the modern file.
    """
    _check_text("friendly name", friendly_name)
    if password is not None and not isinstance(password, bytes):
        raise PkiError("password must be bytes or None")
    encryption: serialization.KeySerializationEncryption
    if not password:
        encryption = serialization.NoEncryption()
    else:
        algorithm = (
            pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC
            if legacy
            else pkcs12.PBES.PBESv2SHA256AndAES256CBC
        )
        mac = hashes.SHA1() if legacy else hashes.SHA256()  # legacy importers need SHA-1
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(50000 if not legacy else 2048)
            .key_cert_algorithm(algorithm)
            .hmac_hash(mac)
            .build(password)
        )
    cas = [ca_cert] if ca_cert is not None else None
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"), key, cert, cas, encryption
    )


# ---------------------------------------------------------------- fingerprints


def pin_sha256(cert: x509.Certificate) -> str:
    """``pin-sha256:<base64>`` over the DER SubjectPublicKeyInfo, as ``--servercert`` wants.

    Pinning the key rather than the certificate keeps clients working when the
    certificate is re-issued for the same key.
    """
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def sha1_fingerprint_hex(cert: x509.Certificate) -> str:
    """Upper-case hex SHA-1 of the certificate DER (ocserv's ``webvpnc`` ``sh:`` value)."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # SHA-1: ocserv's format


# ---------------------------------------------------------------- files


def key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: readable by GnuTLS (ocserv), OpenSSL and cryptography."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate, *chain: x509.Certificate) -> bytes:
    """PEM of ``cert`` followed by any chain certificates (leaf first, as servers send it)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *chain))


def write_key(path: str | os.PathLike[str], key: PrivateKey) -> None:
    """Store a private key with mode 0600, atomically."""
    write_atomic(path, key_pem(key), 0o600)


def write_cert(
    path: str | os.PathLike[str], cert: x509.Certificate, *chain: x509.Certificate
) -> None:
    """Store a certificate (plus optional chain) with mode 0644, atomically."""
    write_atomic(path, cert_pem(cert, *chain), 0o644)


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror}") from None


def load_cert(path: str | os.PathLike[str]) -> x509.Certificate:
    """First certificate of a PEM file (or a DER file): the leaf of a chain file."""
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
            return certs[0]
        return x509.load_der_x509_certificate(data)
    except (ValueError, IndexError) as exc:
        raise PkiError(f"{path} does not hold a usable certificate: {exc}") from None


def load_key(path: str | os.PathLike[str], password: bytes | None = None) -> PrivateKey:
    """Load a PEM or DER private key; only EC and RSA (what GnuTLS and all clients share)."""
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=password)
        else:
            key = serialization.load_der_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise PkiError(f"{path} does not hold a usable private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{path}: unsupported key type {type(key).__name__}")
    return key
