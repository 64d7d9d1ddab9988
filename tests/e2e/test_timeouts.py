"""Issue #11 timeouts end to end: stalled clients are dropped, the server keeps serving.

With a short ``auth-timeout`` the server must drop, after about that long,

* a TCP client that connects and sends nothing (TLS handshake deadline in the sec-mod),
* a client that sends half a ClientHello and stops (same deadline),
* a client that finishes TLS, then trickles its HTTP headers a byte at a time, so that it
  never looks idle (the worker's pre-CONNECT deadline, not an idle timer),

while control-socket clients that connect and never send, or send and never read, do not
hold up main: ``occtl`` and the real openconnect client are served meanwhile.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.support import harness

AUTH_TIMEOUT = 5
SLACK = 8.0  # the sec-mod checks deadlines once a second; the machine may be loaded

# Runs inside the client namespace: prints the seconds until the server closed, or -1.
PROBE = r"""
import socket, ssl, sys, time
mode, host, port, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
sock = socket.create_connection((host, port), timeout=10)
start = time.monotonic()
if mode == "half-hello":
    sock.sendall(bytes.fromhex("16030100c8010000c40303") + bytes(20))
elif mode == "slow-headers":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = ctx.wrap_socket(sock, server_hostname="vpn")
    sock.sendall(b"POST / HTTP/1.1\r\nHost: vpn\r\nX-Slow: ")
sock.settimeout(0.3)
while time.monotonic() - start < limit:
    try:
        if sock.recv(4096) == b"":
            break
    except (TimeoutError, socket.timeout):
        if mode == "slow-headers":
            try:
                sock.send(b"a")
            except OSError:
                break
    except (OSError, ssl.SSLError):
        break
else:
    print(-1)
    sys.exit(0)
print(round(time.monotonic() - start, 2))
"""


@pytest.fixture
def extra_conf() -> list[str]:
    return [f"auth-timeout = {AUTH_TIMEOUT}"]


def _probe(client: harness.Client, mode: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", PROBE, mode, client.link.server_ip, str(harness.HTTPS_PORT),
            str(AUTH_TIMEOUT + SLACK + 5)]
    return client.link.ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)


def _stalled_control_clients(path: str) -> list[socket.socket]:
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(path)
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(path)
    half.sendall(b'{"v":1,"cmd":"show st')  # no end of line, ever
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deaf.connect(path)
    deaf.sendall(b'{"v":1,"cmd":"show status"}\n' * 200)  # never reads the answers
    return [silent, half, deaf]


def test_stalled_clients_are_dropped_and_others_served(server, make_client, users,
                                                       server_files) -> None:
    client = make_client()
    probes = {mode: _probe(client, mode) for mode in ("silent", "half-hello", "slow-headers")}
    stalled = _stalled_control_clients(str(server_files.occtl_socket))
    try:
        # main is not blocked by the control clients nor by the stalled TLS connections
        started = time.monotonic()
        status = json.loads(server.occtl("-j", "show", "status").stdout)
        assert status and time.monotonic() - started < 10
        assert client.connect("alice", users["alice"])
        client.disconnect()

        for mode, proc in probes.items():
            out, err = proc.communicate(timeout=AUTH_TIMEOUT + SLACK + 30)
            assert proc.returncode == 0, f"{mode}: {err}"
            elapsed = float(out.strip())
            assert elapsed != -1, f"{mode}: still connected after {AUTH_TIMEOUT + SLACK + 5}s"
            # dropped by the deadline, not refused on the spot, and not much later
            assert AUTH_TIMEOUT - 1.5 <= elapsed <= AUTH_TIMEOUT + SLACK, (mode, elapsed)
    finally:
        for proc in probes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for sock in stalled:
            sock.close()
    server.assert_running()
