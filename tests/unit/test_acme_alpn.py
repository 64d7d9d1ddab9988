"""TLS-ALPN-01 in the sec-mod's handshake path: the ClientHello peek and the context choice,
with a stdlib (OpenSSL) client in memory.  The e2e proof (pebble validating through a
router) is tests/e2e/test_reach.py::test_certificate_from_pebble_by_tls_alpn01."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.reach.challenges import ID_PE_ACME_IDENTIFIER, AlpnChallengeStore, store_beside
from appliance.vpn.protocol.tls.clienthello import (
    ClientHelloError,
    HelloInfo,
    peek_client_hello,
)
from appliance.vpn.protocol.tls.credentials import load_credentials
from appliance.vpn.protocol.tls.handshake import (
    HandshakeError,
    ServerHandshake,
    make_server_context,
)
from appliance.vpn.secmod.acmealpn import AcmeAlpn
from tests.support.tls import pump_handshake


def _client(alpn: list[str] | None, sni: str, version: ssl.TLSVersion | None = None
            ) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    if version:
        cctx.minimum_version = cctx.maximum_version = version
    if alpn:
        cctx.set_alpn_protocols(alpn)
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    return cctx.wrap_bio(cin, cout, server_hostname=sni), cin, cout


def _hello(alpn: list[str] | None, sni: str) -> bytes:
    client, _cin, cout = _client(alpn, sni)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return cout.read()


def test_peek_reads_sni_and_alpn_whole_or_in_pieces() -> None:
    hello = _hello(["acme-tls/1", "h2"], "vpn.home.test")
    assert peek_client_hello(hello) == HelloInfo("vpn.home.test", (b"acme-tls/1", b"h2"))
    for cut in (0, 3, 5, 60, len(hello) - 1):
        assert peek_client_hello(hello[:cut]) is None
    # the same hello split into two records (legal, RFC 8446 5.1)
    body = hello[5:]
    two = (b"\x16\x03\x01" + (40).to_bytes(2, "big") + body[:40]
           + b"\x16\x03\x01" + (len(body) - 40).to_bytes(2, "big") + body[40:])
    assert peek_client_hello(two[:60]) is None
    assert peek_client_hello(two) == HelloInfo("vpn.home.test", (b"acme-tls/1", b"h2"))
    assert peek_client_hello(_hello(None, "x.test")) == HelloInfo("x.test", ())


@pytest.mark.parametrize("bad", [b"\x17\x03\x03\x00\x05hello", b"GET / HTTP/1.1\r\n\r\n",
                                 b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",
                                 b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00"])
def test_peek_refuses_what_is_not_a_client_hello(bad: bytes) -> None:
    with pytest.raises(ClientHelloError):
        peek_client_hello(bad)


@pytest.fixture
def store(tmp_path: Path, certfiles: tuple[str, str]) -> AlpnChallengeStore:
    s = store_beside(str(tmp_path / "server-cert.pem"))
    assert s.directory == tmp_path / "acme-alpn"
    s.put("vpn.home.test", "token.thumbprint")
    return s


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_acme_tls1_gets_the_challenge_certificate(store: AlpnChallengeStore,
                                                  certfiles: tuple[str, str],
                                                  version: ssl.TLSVersion) -> None:
    client, cin, cout = _client(["acme-tls/1"], "vpn.home.test", version)
    hs = ServerHandshake(make_server_context(load_credentials(*certfiles)), AcmeAlpn(store).choose)
    pump_handshake(client, cin, cout, hs)
    assert hs.result is not None and hs.result.alpn == b"acme-tls/1"
    assert client.selected_alpn_protocol() == "acme-tls/1"
    der = client.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    ext = cert.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    assert ext.critical
    assert ext.value.value == b"\x04\x20" + hashlib.sha256(b"token.thumbprint").digest()
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName) \
        .value.get_values_for_type(x509.DNSName) == ["vpn.home.test"]


def test_acme_tls1_for_an_unknown_name_fails(store: AlpnChallengeStore,
                                             certfiles: tuple[str, str]) -> None:
    hs = ServerHandshake(make_server_context(load_credentials(*certfiles)), AcmeAlpn(store).choose)
    with pytest.raises(HandshakeError):
        hs.feed(_hello(["acme-tls/1"], "other.home.test"))
    hs = ServerHandshake(make_server_context(load_credentials(*certfiles)), AcmeAlpn(store).choose)
    with pytest.raises(HandshakeError):  # no SNI at all
        hs.feed(_hello_without_sni())


def _hello_without_sni() -> bytes:
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.set_alpn_protocols(["acme-tls/1"])
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(cin, cout)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return cout.read()


def test_a_vpn_client_still_gets_the_server_certificate(store: AlpnChallengeStore,
                                                        certfiles: tuple[str, str]) -> None:
    """Same name, no acme-tls/1 (openconnect offers no ALPN): the real certificate, no ALPN."""
    client, cin, cout = _client(None, "vpn.home.test")
    hs = ServerHandshake(make_server_context(load_credentials(*certfiles)), AcmeAlpn(store).choose)
    pump_handshake(client, cin, cout, hs)
    assert hs.result is not None and hs.result.alpn is None
    der = client.getpeercert(binary_form=True)
    assert der is not None
    assert x509.load_der_x509_certificate(der).public_bytes(
        serialization.Encoding.PEM) == Path(certfiles[0]).read_bytes()
