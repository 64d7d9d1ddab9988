"""Legacy (non-PSK) DTLS, sans-IO (appliance/vpn/protocol/dtls/legacy.py).

Two independent references, neither of them our own code:

* a captured exchange (tests/unit/data/dtls_legacy_capture.json) between openconnect 9.01
  and Debian's ocserv 1.1.6 with ``dtls-psk = false``, GnuTLS on both ends: our key block
  must open both Finished messages, and our transcript hash + PRF must reproduce their
  verify_data, for DTLS 1.2 (AES-256-GCM, SHA-384 PRF) and DTLS 0.9 (AES-128-CBC, TLS 1.0
  PRF, body-only handshake hash);
* OpenSSL as the client (the library Cisco's clients are built on), resuming a session
  built from DER the way openconnect's OpenSSL build does: it must accept our flight and
  exchange data with our record layers.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL
from OpenSSL._util import ffi, lib

from appliance.vpn.protocol.cstp import ConnectRequest
from appliance.vpn.protocol.dtls import legacy as L
from appliance.vpn.protocol.dtls.record import DTLS_BAD_VER, DtlsClosed, iter_records
from appliance.vpn.worker.legacydtls import LegacyHandshakeDriver, legacy_offer

CAPTURE = json.loads((Path(__file__).parent / "data" / "dtls_legacy_capture.json").read_text())
CAPTURED = [("dtls12-aes256-gcm", L.DTLS12_SUITES["AES256-GCM-SHA384"]),
            ("dtls09-aes128-sha", L.LEGACY_SUITES["AES128-SHA"])]


def _records(name: str) -> tuple[bytes, list[tuple[int, int, int, int, bytes]]]:
    v = CAPTURE[name]
    datagrams = [bytes.fromhex(h) for _, h in v["datagrams"]]
    return bytes.fromhex(v["master"]), [r for d in datagrams for r in iter_records(d)]


def _open_as(suite: L.LegacySuite, kb: L.KeyBlock, server: bool, rec: tuple) -> bytes:
    """Decrypt a captured epoch-1 record with the sender's keys."""
    ctype, version, epoch, seq, body = rec
    key = kb.server_key if server else kb.client_key
    if suite.aead:
        salt = kb.server_iv if server else kb.client_iv
        aad = struct.pack("!QBHH", (epoch << 48) | seq, ctype, version, len(body) - 24)
        return AESGCM(key).decrypt(salt + body[:8], body[8:], aad)
    mac = kb.server_mac if server else kb.client_mac
    plain = L.CbcRecordLayer(key, mac, os.urandom(16), os.urandom(20)).open_record(*rec)
    assert plain is not None
    return plain


# --------------------------------------------------------------------------- captured


@pytest.mark.parametrize(("name", "suite"), CAPTURED)
def test_key_schedule_reproduces_gnutls_finished_messages(name: str, suite: L.LegacySuite) -> None:
    master, recs = _records(name)
    client_hello, server_hello = recs[0][4], recs[1][4]
    server_fin_rec, client_ccs, client_fin_rec = recs[3], recs[4], recs[5]
    hello = L.parse_client_hello(client_hello)
    assert hello.session_id.hex() == CAPTURE[name]["session_id"]
    assert suite.code in hello.suites and hello.version == suite.version
    server_random = server_hello[L.HS_HEADER_LEN + 2:L.HS_HEADER_LEN + 34]
    kb = L.key_block(suite, master, hello.random, server_random)
    server_fin = _open_as(suite, kb, True, server_fin_rec)
    client_fin = _open_as(suite, kb, False, client_fin_rec)
    hashed = [L._hashed(suite, client_hello), L._hashed(suite, server_hello)]
    assert server_fin[L.HS_HEADER_LEN:] == L.verify_data(suite, master, b"server finished",
                                                           hashed)
    assert client_fin[L.HS_HEADER_LEN:] == L.verify_data(
        suite, master, b"client finished", [*hashed, L._hashed(suite, server_fin)])
    # the DTLS 0.9 ChangeCipherSpec carries the handshake sequence number 1
    assert client_ccs[4] == (b"\x01\x00\x01" if suite.version == DTLS_BAD_VER else b"\x01")


@pytest.mark.parametrize(("name", "suite"), CAPTURED)
def test_captured_client_hello_gets_a_bare_resumption_flight(name: str,
                                                             suite: L.LegacySuite) -> None:
    master, recs = _records(name)
    first = bytes.fromhex(CAPTURE[name]["datagrams"][0][1])
    hs = L.LegacyServerHandshake(suite, bytes.fromhex(CAPTURE[name]["session_id"]), master,
                                 server_random=bytes(range(32)))
    (flight,) = hs.feed(first, 0.0)
    sh, ccs, fin = list(iter_records(flight))
    assert [r[0] for r in (sh, ccs, fin)] == [22, 20, 22] and fin[2] == 1
    assert {sh[1], ccs[1], fin[1]} == {suite.version}
    body = sh[4][L.HS_HEADER_LEN:]
    assert body == L.server_hello_body(suite.version, bytes(range(32)), hs.session_id,
                                       suite.code)  # no extensions at all
    hello = L.parse_client_hello(recs[0][4])
    kb = L.key_block(suite, master, hello.random, bytes(range(32)))
    ours = _open_as(suite, kb, True, fin)
    assert ours[L.HS_HEADER_LEN:] == L.verify_data(
        suite, master, b"server finished", [L._hashed(suite, recs[0][4]), L._hashed(suite, sh[4])])
    # a repeated ClientHello (our flight was lost) gets the flight again, new sequence numbers
    (again,) = hs.feed(first, 0.5)
    assert [r[3] for r in iter_records(again)] == [2, 3, 1]
    assert not hs.done


def test_tls10_prf_splits_the_secret_and_xors() -> None:
    secret, seed = bytes(range(48)), b"seed"
    expected = bytes(a ^ b for a, b in zip(L.tls12_prf("md5", secret[:24], b"l", seed, 40),
                                           L.tls12_prf("sha1", secret[24:], b"l", seed, 40),
                                           strict=True))
    assert L.tls10_prf(secret, b"l", seed, 40) == expected
    assert len(L.tls10_prf(b"odd", b"l", seed, 13)) == 13


# --------------------------------------------------------------------------- OpenSSL client


def _der(tag: int, body: bytes) -> bytes:
    assert len(body) < 256
    size = bytes((len(body),)) if len(body) < 128 else bytes((0x81, len(body)))
    return bytes((tag,)) + size + body


def _der_int(v: int) -> bytes:
    return _der(2, v.to_bytes((v.bit_length() + 8) // 8, "big"))


def _openssl_client(suite: L.LegacySuite, ciphers: str, sid: bytes,
                    master: bytes) -> SSL.Connection:
    """An OpenSSL DTLS client holding the fake session, as openconnect's OpenSSL build
    makes it (a DER SSL_SESSION: version, suite, session id, master key)."""
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    ctx.set_min_proto_version(suite.version)
    ctx.set_max_proto_version(suite.version)
    ctx.set_options(SSL.OP_LEGACY_SERVER_CONNECT | lib.SSL_OP_NO_QUERY_MTU | SSL.OP_NO_TICKET)
    ctx.set_cipher_list(ciphers.encode())
    conn = SSL.Connection(ctx, None)
    der = _der(0x30, _der_int(1) + _der_int(suite.version) + _der(4, suite.code.to_bytes(2, "big"))
               + _der(4, sid) + _der(4, master))
    buf = ffi.new("unsigned char[]", der)
    session = lib.d2i_SSL_SESSION(ffi.NULL, ffi.new("unsigned char **", buf), len(der))
    assert session != ffi.NULL
    assert lib.SSL_set_session(conn._ssl, session) == 1
    lib.SSL_SESSION_free(session)
    lib.SSL_set_mtu(conn._ssl, 1400)
    conn.set_connect_state()
    return conn


def _step(conn: SSL.Connection) -> bytes:
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


@pytest.mark.parametrize(("suite", "ciphers"), [
    (L.LEGACY_SUITES["AES128-SHA"], "AES128-SHA:@SECLEVEL=0"),
    (L.LEGACY_SUITES["AES256-SHA"], "AES256-SHA:@SECLEVEL=0"),
    (L.DTLS12_SUITES["AES256-GCM-SHA384"], "AES256-GCM-SHA384"),
    (L.DTLS12_SUITES["AES128-GCM-SHA256"], "AES128-GCM-SHA256"),
    (L.DTLS12_SUITES["ECDHE-RSA-AES256-GCM-SHA384"], "ECDHE-RSA-AES256-GCM-SHA384"),
])
def test_openssl_client_resumes_and_exchanges_data(suite: L.LegacySuite, ciphers: str) -> None:
    sid, master = os.urandom(32), os.urandom(48)
    conn = _openssl_client(suite, ciphers, sid, master)
    hs = L.LegacyServerHandshake(suite, sid, master)
    for datagram in hs.feed(_step(conn), 0.0):
        conn.bio_write(datagram)
    hs.feed(_step(conn), 0.1)  # the client's CCS + Finished
    assert hs.done and hs.timeout(0.2) is None
    assert conn.get_protocol_version_name() == ("DTLSv0.9" if suite.version == DTLS_BAD_VER
                                                else "DTLSv1.2")
    rl = hs.record_layer()
    conn.send(b"\x00" + b"x" * 1300)
    assert rl.open(conn.bio_read(65536)) == [b"\x00" + b"x" * 1300]
    for datagram in rl.seal_many([b"\x03" + b"p" * 100, b"\x00pong"]):
        conn.bio_write(datagram)
    assert conn.recv(2000) == b"\x03" + b"p" * 100
    assert conn.recv(2000) == b"\x00pong"
    conn.shutdown()
    with pytest.raises(DtlsClosed):
        rl.open(conn.bio_read(65536))


def test_wrong_master_secret_fails_the_handshake() -> None:
    suite, sid = L.LEGACY_SUITES["AES128-SHA"], os.urandom(32)
    conn = _openssl_client(suite, "AES128-SHA:@SECLEVEL=0", sid, os.urandom(48))
    hs = L.LegacyServerHandshake(suite, sid, os.urandom(48))
    for datagram in hs.feed(_step(conn), 0.0):
        conn.bio_write(datagram)
    with pytest.raises(SSL.Error):  # our Finished does not verify for the client either
        conn.do_handshake()
    assert not hs.done


# --------------------------------------------------------------------------- CBC records


def test_cbc_records_reject_tampering_and_replay() -> None:
    k1, m1, k2, m2 = os.urandom(16), os.urandom(20), os.urandom(16), os.urandom(20)
    sender = L.CbcRecordLayer(k2, m2, k1, m1)
    receiver = L.CbcRecordLayer(k1, m1, k2, m2)
    records = sender.seal_many([b"\x00" + bytes([i]) * i for i in range(40)])
    assert receiver.open_many(records) == [b"\x00" + bytes([i]) * i for i in range(40)]
    assert receiver.open(records[3]) == [] and receiver.dropped == 1  # replay
    fresh = sender.seal(b"\x00data")
    for pos in (14, 30, len(fresh) - 1):  # IV, ciphertext, padding block
        bad = bytearray(fresh)
        bad[pos] ^= 1
        assert receiver.open(bytes(bad)) == []
    assert receiver.open(fresh) == [b"\x00data"]


# --------------------------------------------------------------------------- selection


@pytest.mark.parametrize(("legacy", "dtls12", "tls", "expected"), [
    # openconnect 9.01's headers (captured), TLS session AES-256-GCM
    ("PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:OC2-DTLS1_2-CHACHA20-POLY1305:OC-DTLS1_2-AES128-GCM:"
     "DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA",
     "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384:"
     "AES128-GCM-SHA256:DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA",
     "AES-256-GCM", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("", "ECDHE-RSA-AES256-GCM-SHA384:AES128-GCM-SHA256", "AES-128-GCM", "AES128-GCM-SHA256"),
    ("", "ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384", "CHACHA20-POLY1305",
     "AES256-GCM-SHA384"),  # no match: highest priority
    ("AES128-SHA:AES256-SHA", "", "AES-256-GCM", "AES256-SHA"),
    ("AES128-SHA", "DHE-RSA-AES128-SHA", None, "AES128-SHA"),  # DTLS12 header had nothing
    ("DES-CBC3-SHA:OC2-DTLS1_2-CHACHA20-POLY1305", "AES256-SHA", None, None),
])
def test_suite_selection_follows_ocserv(legacy: str, dtls12: str, tls: str | None,
                                        expected: str | None) -> None:
    suite = L.select_suite([t for t in legacy.split(":") if t],
                           [t for t in dtls12.split(":") if t], tls)
    assert (suite.name if suite else None) == expected


class _Cfg:
    udp_port = 443
    dtls_legacy = True
    dtls_psk = True


def test_legacy_offer_only_without_psk() -> None:
    master = os.urandom(48)
    psk = ConnectRequest(cookie="c", dtls_master_secret=master, dtls_ciphersuites=["PSK-NEGOTIATE",
                                                                       "AES128-SHA"])
    assert legacy_offer(_Cfg(), psk, "AES-256-GCM") is None  # type: ignore[arg-type]
    cfg = _Cfg()
    cfg.dtls_psk = False
    offer = legacy_offer(cfg, psk, "AES-256-GCM")  # type: ignore[arg-type]
    assert offer is not None and offer.suite.name == "AES128-SHA"
    assert len(offer.session_id) == 32 and master.hex() not in repr(offer)
    params = offer.response_params(type("P", (), {"port": 443, "dpd": 9, "keepalive": 5,
                                                  "rekey_time": None})())
    assert params.session_id == offer.session_id.hex() and not params.dtls12
    cfg.dtls_legacy = False
    assert legacy_offer(cfg, psk, "AES-256-GCM") is None  # type: ignore[arg-type]
    no_secret = ConnectRequest(cookie="c", dtls_ciphersuites=["AES128-SHA"])
    assert legacy_offer(_Cfg(), no_secret, None) is None  # type: ignore[arg-type]


def test_driver_drops_junk_but_fails_on_a_hello_without_the_suite() -> None:
    from appliance.vpn.protocol.dtls.handshake import DtlsHandshakeError
    suite, sid, master = L.LEGACY_SUITES["AES128-SHA"], os.urandom(32), os.urandom(48)
    drv = LegacyHandshakeDriver(L.LegacyServerHandshake(suite, sid, master))
    assert drv.feed(b"\x16\x01\x00junk") == [] and drv.dropped == 1
    body = (b"\x01\x00" + os.urandom(32) + bytes((32,)) + sid + b"\x00" + b"\x00\x02\x00\x35"
            + b"\x01\x00")
    hello = L.plain_record(22, DTLS_BAD_VER, 0, 0, L.handshake_message(1, 0, body))
    with pytest.raises(DtlsHandshakeError):
        drv.feed(hello)


def test_fragmented_hello_is_refused_clearly() -> None:
    msg = bytearray(L.handshake_message(1, 0, b"\x01\x00" + bytes(40)))
    msg[9:12] = (10).to_bytes(3, "big")
    with pytest.raises(L.LegacyDtlsError, match="fragmented"):
        L.parse_client_hello(bytes(msg[:22]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzzed_datagrams_never_crash_the_handshake(data: bytes) -> None:
    hs = L.LegacyServerHandshake(L.DTLS12_SUITES["AES256-GCM-SHA384"], b"\x01" * 32,
                                 b"\x02" * 48)
    try:
        hs.feed(data, 0.0)
    except L.LegacyDtlsError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 200))
def test_fuzzed_client_hellos_parse_or_raise_clearly(tail: bytes, cut: int) -> None:
    body = b"\xfe\xfd" + bytes(32) + b"\x20" + bytes(32) + b"\x00" + tail
    message = L.handshake_message(1, 0, body)
    for fragment in (message, message[:cut]):
        try:
            L.parse_client_hello(fragment)
        except L.LegacyDtlsError:
            pass
