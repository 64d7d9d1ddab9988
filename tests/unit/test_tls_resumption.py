"""TLS 1.2 session resumption in the sec-mod (issue 17): the abbreviated handshake gives
working record keys, and sessions stay with the address that made them."""

from __future__ import annotations

import ssl

from appliance.vpn.protocol.tls.credentials import load_credentials
from appliance.vpn.protocol.tls.handshake import ServerHandshake, make_server_context
from appliance.vpn.protocol.tls.record import RecordLayer
from appliance.vpn.secmod.resumption import (
    MIN_ADDRESSES,
    SESSIONS_PER_ADDRESS,
    ResumptionContexts,
)
from tests.support.tls import pump_handshake

CLIENT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # a session resumes in its own context
CLIENT.check_hostname, CLIENT.verify_mode = False, ssl.CERT_NONE
CLIENT.minimum_version = CLIENT.maximum_version = ssl.TLSVersion.TLSv1_2


def _client(session: ssl.SSLSession | None = None):
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    return CLIENT.wrap_bio(cin, cout, server_hostname="vpn.test", session=session), cin, cout


def _exchange(client, cin, cout, hs: ServerHandshake) -> None:
    """Application data both ways with our record layer on the server side."""
    assert hs.result is not None
    rl = RecordLayer(hs.result.keys)
    client.write(b"GET / HTTP/1.1\r\n\r\n")
    assert b"".join(rl.feed(cout.read())) == b"GET / HTTP/1.1\r\n\r\n"
    cin.write(rl.seal_many([b"HTTP/1.1 200 OK\r\n", b"\r\n"]))
    assert client.read(100) + client.read(100) == b"HTTP/1.1 200 OK\r\n\r\n"


def test_second_connection_resumes_and_carries_data(certfiles) -> None:
    ctx = make_server_context(load_credentials(*certfiles), resume_timeout=300)
    first, cin, cout = _client()
    hs = ServerHandshake(ctx)
    pump_handshake(first, cin, cout, hs)
    assert hs.result is not None and not hs.result.resumed
    _exchange(first, cin, cout, hs)
    again, cin2, cout2 = _client(first.session)
    hs2 = ServerHandshake(ctx)
    pump_handshake(again, cin2, cout2, hs2)
    assert again.session_reused and hs2.result is not None and hs2.result.resumed
    _exchange(again, cin2, cout2, hs2)


def test_no_cache_without_resume_timeout(certfiles) -> None:
    ctx = make_server_context(load_credentials(*certfiles))
    first, cin, cout = _client()
    pump_handshake(first, cin, cout, ServerHandshake(ctx))
    again, cin2, cout2 = _client(first.session)
    hs2 = ServerHandshake(ctx)
    pump_handshake(again, cin2, cout2, hs2)
    assert not again.session_reused and hs2.result is not None and not hs2.result.resumed


def test_contexts_per_address_are_bounded(certfiles) -> None:
    made: list[object] = []

    def factory():
        made.append(make_server_context(load_credentials(*certfiles), resume_timeout=300))
        return made[-1]

    contexts = ResumptionContexts(factory, max_clients=4)
    a = contexts.context_for("198.51.100.7")
    assert contexts.context_for("198.51.100.7") is a
    assert contexts.context_for("198.51.100.8") is not a
    # a session made at one address is unknown at another: a full handshake there
    first, cin, cout = _client()
    pump_handshake(first, cin, cout, ServerHandshake(a))
    again, cin2, cout2 = _client(first.session)
    pump_handshake(again, cin2, cout2, ServerHandshake(contexts.context_for("198.51.100.8")))
    assert not again.session_reused
    # one address cannot grow its cache without end: it starts over
    for _ in range(SESSIONS_PER_ADDRESS):
        last = contexts.context_for("198.51.100.9")
    assert contexts.context_for("198.51.100.9") is not last
    for i in range(MIN_ADDRESSES + 10):
        contexts.context_for(f"203.0.113.{i}")
    assert len(contexts) == MIN_ADDRESSES
    contexts.reset(factory)
    assert len(contexts) == 0 and contexts.context_for("198.51.100.7") is not a
