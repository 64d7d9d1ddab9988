"""Main's PROXY header intake (appliance.vpn.main.proxyintake) on real socket pairs."""

from __future__ import annotations

import selectors
import socket
from collections.abc import Iterator

import pytest

from appliance.vpn.main.proxyintake import ProxyIntake
from appliance.vpn.protocol.proxyproto import build_v1, build_v2

HELLO = b"\x16\x03\x01\x00\x10" + b"h" * 16


class Harness:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.admitted: list[tuple[socket.socket, str, int, str, int]] = []
        self.intake = ProxyIntake(self.sel, self._admit, lambda ip: ip, timeout=5.0, limit=3)
        self.peers: list[socket.socket] = []

    def _admit(self, sock: socket.socket, ip: str, port: int, lip: str, lport: int) -> None:
        self.admitted.append((sock, ip, port, lip, lport))

    def connect(self, now: float = 0.0) -> socket.socket:
        ours, theirs = socket.socketpair()
        self.peers.append(theirs)
        self.intake.add(ours, "198.18.0.9", now)
        return theirs

    def pump(self) -> None:
        for key, _ in self.sel.select(timeout=0.2):
            key.data(key.fileobj)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    for sock in harness.peers:
        sock.close()
    for sock, *_ in harness.admitted:
        sock.close()
    harness.sel.close()


def _is_closed(peer: socket.socket) -> bool:
    peer.settimeout(1.0)
    try:
        return peer.recv(1) == b""
    except ConnectionResetError:
        return True


def test_header_in_pieces_then_the_hello_stays_queued(h: Harness) -> None:
    peer = h.connect()
    header = build_v2(("198.51.100.7", 40000), ("198.18.0.1", 443))
    peer.sendall(header[:7])
    h.pump()
    assert not h.admitted and h.intake.pending
    peer.sendall(header[7:] + HELLO)
    h.pump()
    (sock, ip, port, lip, lport), = h.admitted
    assert (ip, port, lip, lport) == ("198.51.100.7", 40000, "198.18.0.1", 443)
    assert not h.intake.pending
    assert sock.getblocking()  # the worker and sec-mod expect a blocking socket
    sock.settimeout(1.0)
    assert sock.recv(100) == HELLO  # not one byte of the ClientHello was lost


def test_v1_header(h: Harness) -> None:
    peer = h.connect()
    peer.sendall(build_v1(("198.51.100.8", 1234), ("198.18.0.1", 443)) + HELLO)
    h.pump()
    assert [a[1:] for a in h.admitted] == [("198.51.100.8", 1234, "198.18.0.1", 443)]


@pytest.mark.parametrize("payload", [HELLO, b"GET / HTTP/1.0\r\n\r\n",
                                     build_v2(None, None, local=True), b"PROXY UNKNOWN\r\n"])
def test_garbage_and_health_checks_are_closed_not_admitted(h: Harness, payload: bytes) -> None:
    peer = h.connect()
    peer.sendall(payload)
    h.pump()
    assert not h.admitted and not h.intake.pending
    assert _is_closed(peer)


def test_silence_is_dropped_at_the_deadline(h: Harness) -> None:
    peer = h.connect(now=100.0)
    peer.sendall(b"PROXY TCP4 ")
    h.pump()
    h.intake.sweep(104.9)
    assert h.intake.pending
    h.intake.sweep(105.0)
    assert not h.intake.pending and not h.admitted
    assert _is_closed(peer)


def test_too_many_waiting_connections_are_refused(h: Harness) -> None:
    for _ in range(3):
        h.connect()
    extra = h.connect()
    assert len(h.intake.pending) == 3
    assert _is_closed(extra)


def test_close_in_child_releases_every_waiting_socket(h: Harness) -> None:
    peer = h.connect()
    h.intake.close_in_child()
    assert not h.intake.pending
    assert _is_closed(peer)
