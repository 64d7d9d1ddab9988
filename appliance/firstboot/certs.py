"""Certificates the wizard makes, via appliance.pki: CA, server identity, first client.

Lifetimes: the CA lives 10 years (it is only a trust anchor on the user's devices); the
server certificate 825 days, the longest Apple platforms accept; client certificates the
same.  The server certificate names every DNS name and address a user may type, because
clients match the URL only against the subjectAltName.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask_babel import lazy_gettext as _l

from .. import pki
from .plan import CertificateSet, FirstUser
from .setupcode import ALPHABET

CA_DAYS = 3650
SERVER_DAYS = pki.MAX_APPLE_SERVER_DAYS
CLIENT_DAYS = pki.MAX_APPLE_SERVER_DAYS
KEY_TYPES = {"ec": _l("EC P-256 (recommended: fast, small)"),
             "rsa": _l("RSA 3072 (for old clients that lack EC support)")}


def make_certificates(hostname: str, dns_names: Sequence[str], ip_addresses: Sequence[str],
                      key_type: str = "ec") -> CertificateSet:
    """A new CA and a server certificate signed by it; raises pki.PkiError on bad input."""
    ca_name = f"OCGate CA ({hostname})"[:64]
    ca_key, ca_cert = pki.make_ca(ca_name, key_type=key_type, days=CA_DAYS)
    key, cert = pki.make_server_cert(ca_key, ca_cert, names=list(dns_names),
                                     addresses=list(ip_addresses), key_type=key_type,
                                     days=SERVER_DAYS)
    return CertificateSet(
        key_type=key_type,
        ca_cert_pem=pki.cert_pem(ca_cert),
        ca_key_pem=pki.key_pem(ca_key),
        server_cert_pem=pki.cert_pem(cert),
        server_key_pem=pki.key_pem(key),
        pin=pki.pin_sha256(cert),
        not_after=cert.not_valid_after_utc,
    )


def export_password() -> str:
    """Typable password for the PKCS#12 file (Crockford alphabet, 4 groups of 4)."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def make_client(certs: CertificateSet, username: str, *, legacy: bool = False) -> FirstUser:
    """Client certificate for ``username`` plus its PKCS#12 bundle and export password.

    ``legacy`` selects 3DES/SHA-1 PKCS#12 encryption, which older Android and iOS
    versions need to import the file.
    """
    ca_cert = x509.load_pem_x509_certificate(certs.ca_cert_pem)
    ca_key = serialization.load_pem_private_key(certs.ca_key_pem, password=None)
    if not isinstance(ca_key, pki.PrivateKey):
        raise pki.PkiError("the CA key has an unsupported type")
    key, cert = pki.make_client_cert(ca_key, ca_cert, username=username, days=CLIENT_DAYS,
                                     key_type=certs.key_type)
    password = export_password()
    bundle = pki.pkcs12_bundle(key, cert, ca_cert, password.encode(), username, legacy=legacy)
    return FirstUser(username=username, method="certificate",
                     client_cert_pem=pki.cert_pem(cert), pkcs12=bundle,
                     pkcs12_password=password)
