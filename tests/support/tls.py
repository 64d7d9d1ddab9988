"""TLS handshakes in memory: a stdlib (OpenSSL) client against our sans-IO ServerHandshake."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.vpn.protocol.tls.handshake import ServerHandshake


def self_signed_files(directory: Path) -> tuple[str, str]:
    """A one-day self-signed P-256 certificate and its key: (cert.pem, key.pem) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return str(directory / "cert.pem"), str(directory / "key.pem")


def pump_handshake(client: ssl.SSLObject, cin: ssl.MemoryBIO, cout: ssl.MemoryBIO,
                   hs: ServerHandshake) -> None:
    """Run the handshake between a stdlib client and our ServerHandshake."""
    for _ in range(20):
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        data = cout.read()
        if data:
            cin.write(hs.feed(data))
        if hs.done:
            # the client needs our final flight to finish too
            try:
                client.do_handshake()
            except ssl.SSLWantReadError:
                pass
            return
    raise AssertionError("handshake did not complete")
