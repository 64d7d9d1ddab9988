"""A CRL whose CA has a keyUsage without cRLSign (issue 17): accepted, as GnuTLS accepts
it, and it still revokes; its signature is still checked."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from appliance import pki
from appliance.vpn.protocol.tls.credentials import load_credentials
from appliance.vpn.protocol.tls.handshake import (
    HandshakeResult,
    ServerHandshake,
    make_server_context,
)
from tests.support.tls import pump_handshake

NOW = datetime.datetime.now(datetime.UTC)


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=False, encipher_only=False,
                          decipher_only=False)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(hours=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True).sign(key, hashes.SHA256()))
    return key, cert


def _crl(path: Path, issuer: x509.Certificate, signer: ec.EllipticCurvePrivateKey,
         revoked: list[x509.Certificate]) -> Path:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(NOW - datetime.timedelta(hours=1))
               .next_update(NOW + datetime.timedelta(days=1)))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(NOW).build())
    path.write_bytes(builder.sign(signer, hashes.SHA256()).public_bytes(Encoding.PEM))
    return path


def _handshake(d: Path, ca: x509.Certificate, crl: Path, pair: tuple[object, x509.Certificate]
               ) -> HandshakeResult:
    pki.write_cert(d / "ca.pem", ca)
    ctx = make_server_context(load_credentials(str(d / "server-cert.pem"),
                                               str(d / "server-key.pem")),
                              None, str(d / "ca.pem"), client_certs=True, crl_file=str(crl))
    key, cert = pair
    pki.write_key(d / "client-key.pem", key)  # type: ignore[arg-type]
    pki.write_cert(d / "client-cert.pem", cert)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname, cctx.verify_mode = False, ssl.CERT_NONE
    cctx.load_cert_chain(d / "client-cert.pem", d / "client-key.pem")
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(cin, cout, server_hostname="vpn.test")
    hs = ServerHandshake(ctx)
    pump_handshake(client, cin, cout, hs)
    assert hs.result is not None
    return hs.result


def _setup(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    server_ca_key, server_ca = pki.make_ca("server CA", days=1)
    key, cert = pki.make_server_cert(server_ca_key, server_ca, names=["vpn.test"],
                                     addresses=[], days=1)
    pki.write_key(tmp_path / "server-key.pem", key)
    pki.write_cert(tmp_path / "server-cert.pem", cert)
    return _ca("client CA without cRLSign")


def test_good_certificate_passes_and_revoked_one_does_not(tmp_path: Path) -> None:
    ca_key, ca = _setup(tmp_path)
    good = pki.make_client_cert(ca_key, ca, username="alice", days=1)
    revoked = pki.make_client_cert(ca_key, ca, username="mallory", days=1)
    crl = _crl(tmp_path / "crl.pem", ca, ca_key, [revoked[1]])
    ok = _handshake(tmp_path, ca, crl, good)
    assert ok.client_cert_verified, ok.client_cert_problem
    bad = _handshake(tmp_path, ca, crl, revoked)
    assert not bad.client_cert_verified and "revoked" in bad.client_cert_problem


def test_crl_signed_by_another_key_is_still_refused(tmp_path: Path) -> None:
    ca_key, ca = _setup(tmp_path)
    good = pki.make_client_cert(ca_key, ca, username="alice", days=1)
    forged = _crl(tmp_path / "crl.pem", ca, ec.generate_private_key(ec.SECP256R1()), [])
    result = _handshake(tmp_path, ca, forged, good)
    assert not result.client_cert_verified
    assert "CRL signature failure" in result.client_cert_problem
