"""Deadlines on the web UI and the handshake (issue #11: timeouts everywhere).

A client that connects and then says nothing, or stops half-way through its headers or its
TLS handshake, must lose its connection after a bounded time instead of holding it forever.
The VPN side is covered end to end in tests/e2e/test_timeouts.py; control-socket idle
clients in tests/unit/test_control.py (test_server_limits_clients_and_closes_idle_ones).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.vpn.config import parse_config
from appliance.vpn.secmod import server as secmod
from appliance.web.server import WebServer
from appliance.web.tlsserver import HttpsWebServer
from tests.support.webui import make_state

CHANNEL_TIMEOUT = 2
CLOSE_WITHIN = 12.0  # channel timeout + waitress's cleanup interval + a loaded machine


def _app(environ: dict, start_response) -> list[bytes]:  # type: ignore[no-untyped-def]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def plain_server() -> Iterator[WebServer]:
    server = WebServer(_app, ["127.0.0.1"], 0, channel_timeout=CHANNEL_TIMEOUT)
    server.start_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[WebServer]:
    layout = make_state(tmp_path / "state")
    server = HttpsWebServer(_app, ["127.0.0.1"], 0, cert=layout.server_cert,
                            key=layout.server_key, channel_timeout=CHANNEL_TIMEOUT)
    server.start_thread()
    try:
        yield server
    finally:
        server.stop()


def _closed_after(sock: socket.socket, trickle: bytes = b"") -> float:
    """Seconds until the server closes ``sock``; trickles a byte now and then if asked.

    Fails if the connection is still open after CLOSE_WITHIN."""
    started = time.monotonic()
    sock.settimeout(0.5)
    sent = 0
    while time.monotonic() - started < CLOSE_WITHIN:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        if trickle and sent < len(trickle) and time.monotonic() - started < 1.0:
            try:
                sock.send(trickle[sent:sent + 1])
            except OSError:
                return time.monotonic() - started
            sent += 1
    pytest.fail(f"connection still open after {CLOSE_WITHIN}s")


def test_web_ui_drops_a_silent_client(plain_server: WebServer) -> None:
    with socket.create_connection(("127.0.0.1", plain_server.port)) as sock:
        assert _closed_after(sock) >= CHANNEL_TIMEOUT - 0.5


def test_web_ui_drops_half_sent_headers(plain_server: WebServer) -> None:
    with socket.create_connection(("127.0.0.1", plain_server.port)) as sock:
        _closed_after(sock, trickle=b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")


def test_web_ui_still_serves_while_a_client_stalls(plain_server: WebServer) -> None:
    with socket.create_connection(("127.0.0.1", plain_server.port)) as stalled:
        stalled.send(b"GET / HTTP/1.1\r\n")
        with socket.create_connection(("127.0.0.1", plain_server.port), timeout=5) as other:
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert other.recv(4096).startswith(b"HTTP/1.1 200")


def test_https_ui_drops_a_half_finished_tls_handshake(tls_server: WebServer) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.port)) as sock:
        sock.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello, cut short
        _closed_after(sock)


def test_tls_handshake_deadline_follows_a_short_auth_timeout() -> None:
    base = 'auth = "plain[passwd=/etc/ocserv/ocpasswd]"\nipv4-network = 198.51.100.0/24\n'
    assert secmod.handshake_timeout(parse_config(base)) == secmod.HANDSHAKE_TIMEOUT
    assert secmod.handshake_timeout(parse_config(base + "auth-timeout = 3\n")) == 3.0
