"""Our record layer against OpenSSL's, via a real handshake with the stdlib client."""

from __future__ import annotations

import ssl

import pytest

from appliance.vpn.protocol.tls.credentials import load_credentials
from appliance.vpn.protocol.tls.handshake import ServerHandshake, make_server_context
from appliance.vpn.protocol.tls.record import RecordLayer, TlsClosed, TlsRecordError, TrafficKeys
from tests.support.tls import pump_handshake


def _connect(certfiles, version, ciphers=None, tls13_suite=None):
    ctx = make_server_context(load_credentials(*certfiles))
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.minimum_version = cctx.maximum_version = version
    if ciphers:
        cctx.set_ciphers(ciphers)
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(cin, cout, server_hostname="vpn.test")
    hs = ServerHandshake(ctx)
    pump_handshake(client, cin, cout, hs)
    return client, cin, cout, hs


CASES = [
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-GCM-SHA384"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305"),
    (ssl.TLSVersion.TLSv1_3, None),
]


@pytest.mark.parametrize(("version", "ciphers"), CASES)
def test_records_interoperate_with_openssl(certfiles, version, ciphers):
    client, cin, cout, hs = _connect(certfiles, version, ciphers)
    assert hs.result is not None
    assert hs.result.sni == "vpn.test"
    rl = RecordLayer(hs.result.keys)
    # client -> server: several records in one feed, split at odd places
    for i in range(3):
        client.write(b"hello %d" % i)
    wire = cout.read()
    got = []
    for i in range(0, len(wire), 7):
        got += rl.feed(wire[i:i + 7])
    assert got == [b"hello 0", b"hello 1", b"hello 2"]
    # server -> client: one record per chunk, joined
    cin.write(rl.seal_many([b"a" * 1400, b"b", b"c" * 16384]))
    received = b""
    while True:
        try:
            received += client.read(65536)
        except ssl.SSLWantReadError:
            break
    assert received == b"a" * 1400 + b"b" + b"c" * 16384
    # keys survive a trip through IPC
    rl2 = RecordLayer(TrafficKeys.from_wire(rl.snapshot().to_wire()))
    client.write(b"after")
    assert rl2.feed(cout.read()) == [b"after"]
    cin.write(rl2.seal(b"back"))
    assert client.read(100) == b"back"
    # the exporter is there for DTLS (docs/protocol.md 5.3)
    assert len(hs.result.psk) == 32


def test_close_notify_and_tampering(certfiles):
    client, cin, cout, hs = _connect(certfiles, ssl.TLSVersion.TLSv1_3)
    rl = RecordLayer(hs.result.keys)
    client.write(b"x")
    wire = bytearray(cout.read())
    wire[-1] ^= 1
    with pytest.raises(TlsRecordError):
        rl.feed(bytes(wire))
    client2, cin2, cout2, hs2 = _connect(certfiles, ssl.TLSVersion.TLSv1_2,
                                          "ECDHE-ECDSA-AES256-GCM-SHA384")
    rl2 = RecordLayer(hs2.result.keys)
    client2.unwrap() if False else None
    try:
        client2.unwrap()
    except ssl.SSLWantReadError:
        pass
    with pytest.raises(TlsClosed):
        rl2.feed(cout2.read())


def test_handshake_leftover_is_first_application_data(certfiles):
    ctx = make_server_context(load_credentials(*certfiles))
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.maximum_version = ssl.TLSVersion.TLSv1_2
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(cin, cout)
    hs = ServerHandshake(ctx)
    # ClientHello, then the client's second flight and its first request in one feed
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    cin.write(hs.feed(cout.read()))
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    flight = cout.read()
    cin.write(b"")
    out = hs.feed(flight)
    cin.write(out)
    client.do_handshake()
    client.write(b"POST / HTTP/1.1\r\n\r\n")
    assert hs.done
    rl = RecordLayer(hs.result.keys)
    assert rl.feed(hs.leftover + cout.read()) == [b"POST / HTTP/1.1\r\n\r\n"]


def test_garbage_handshake_fails_cleanly(certfiles):
    from appliance.vpn.protocol.tls.handshake import HandshakeError
    hs = ServerHandshake(make_server_context(load_credentials(*certfiles)))
    with pytest.raises(HandshakeError):
        hs.feed(b"\x16\x03\x01\x00\x05hello" + b"GET / HTTP/1.1\r\n")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_no_session_tickets(certfiles, version):
    """We never resume sessions, so no ticket may reach the client (issue 4), and dropping
    OpenSSL's TLS 1.3 tickets must leave our first record at the sequence number the
    client expects."""
    client, cin, _cout, hs = _connect(certfiles, version)
    assert hs.result is not None
    cin.write(RecordLayer(hs.result.keys).seal(b"first"))
    assert client.read(100) == b"first"
    assert client.session is not None
    assert not client.session.has_ticket
