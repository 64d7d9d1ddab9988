"""Our handshake + record layer against real TLS stacks: ``openssl s_client`` and ``gnutls-cli``.

test_tls.py checks the record layer against Python's ssl module in-process, which is OpenSSL
again and never exercises TLS 1.3 KeyUpdate. openconnect links GnuTLS (or OpenSSL), so here a
tiny TCP echo server built from ServerHandshake + RecordLayer talks to the command-line
clients of both libraries, suite by suite, including KeyUpdate in both flavours mid-stream.
"""

from __future__ import annotations

import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from appliance import pki
from appliance.vpn.protocol.tls.credentials import load_credentials
from appliance.vpn.protocol.tls.handshake import (
    HandshakeResult,
    ServerHandshake,
    make_server_context,
)
from appliance.vpn.protocol.tls.record import TLS12, TLS13, RecordLayer, TlsClosed
from tests.prereqs import require_command

# Each step (a handshake, an echo, the client's exit) is bounded by this; a healthy run
# takes milliseconds, so hitting it means the peers are stuck, not slow.
STEP_TIMEOUT = 5.0
# How long the coalescing echo server waits for the rest of a burst of records.
COALESCE_WAIT = 0.05


# --- certificates -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Identity:
    cert: str
    key: str


def _identity(directory: Path, key_type: str) -> Identity:
    ca_key, ca_cert = pki.make_ca("Peer Test CA", key_type="ec")
    key, cert = pki.make_server_cert(ca_key, ca_cert, names=["vpn.test"],
                                     addresses=["127.0.0.1"], key_type=key_type)
    pki.write_key(directory / "key.pem", key)
    pki.write_cert(directory / "cert.pem", cert, ca_cert)
    return Identity(str(directory / "cert.pem"), str(directory / "key.pem"))


@pytest.fixture(scope="module")
def ec_identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return _identity(tmp_path_factory.mktemp("ec"), "ec")


@pytest.fixture(scope="module")
def rsa_identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return _identity(tmp_path_factory.mktemp("rsa"), "rsa")


@pytest.fixture(scope="module")
def openssl_bin() -> str:
    return require_command("openssl", "openssl")


@pytest.fixture(scope="module")
def gnutls_bin() -> str:
    return require_command("gnutls-cli", "gnutls-bin")


# --- the echo server --------------------------------------------------------------------------

@dataclass
class EchoLog:
    """What the server saw; the test thread reads it after ``EchoServer.join``."""

    result: HandshakeResult | None = None
    received: list[bytes] = field(default_factory=list)
    read_rekeys: int = 0  # client KeyUpdates we followed
    write_rekeys: int = 0  # KeyUpdates we sent in answer (update_requested)
    closed_by_peer: bool = False
    error: str = ""


class EchoServer:
    """One connection on 127.0.0.1: handshake, then echo every plaintext back sealed.

    A thread with blocking sockets is enough: the point is the bytes on the wire, and the
    client under test is a separate process anyway.
    """

    def __init__(self, identity: Identity, *, coalesce: bool = False) -> None:
        self._ctx = make_server_context(load_credentials(identity.cert, identity.key))
        self._coalesce = coalesce
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(STEP_TIMEOUT)
        self.port: int = self._listener.getsockname()[1]
        self.log = EchoLog()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def join(self) -> EchoLog:
        self._thread.join(STEP_TIMEOUT)
        assert not self._thread.is_alive(), "echo server did not finish"
        return self.log

    def _run(self) -> None:
        try:
            conn, _addr = self._listener.accept()
        except OSError as exc:
            self.log.error = f"accept: {exc}"
            return
        finally:
            self._listener.close()
        with conn:
            conn.settimeout(STEP_TIMEOUT)
            try:
                self._serve(conn)
            except Exception as exc:  # recorded for the test to report, never swallowed
                self.log.error = f"{type(exc).__name__}: {exc}"

    def _serve(self, conn: socket.socket) -> None:
        hs = ServerHandshake(self._ctx)
        while not hs.done:
            data = conn.recv(65536)
            if not data:
                raise ConnectionError("client left during the handshake")
            conn.sendall(hs.feed(data))
        assert hs.result is not None
        self.log.result = hs.result
        rl = RecordLayer(hs.result.keys)
        data = hs.leftover
        while True:
            secrets = _secrets(rl)
            try:
                plains = rl.feed(data)
            except TlsClosed:
                self.log.closed_by_peer = True
                conn.sendall(bytes(rl.pending) + rl.close_notify())
                return
            self._count_rekeys(secrets, _secrets(rl))
            self.log.received += plains
            # our KeyUpdate answer was sealed under the old key: it must precede the echoes
            out = bytes(rl.pending) + rl.seal_many(plains)
            rl.pending.clear()
            if out:
                conn.sendall(out)
            data = self._receive(conn)
            if not data:
                raise ConnectionError("client closed the TCP connection without close_notify")

    def _receive(self, conn: socket.socket) -> bytes:
        """One recv, or with ``coalesce`` everything that arrives in a short burst.

        A worker reading a busy socket gets several records per recv; coalescing makes that
        deterministic, e.g. a client's KeyUpdate and the record after it in one ``feed``.
        """
        data = conn.recv(65536)
        while data and self._coalesce and select.select([conn], [], [], COALESCE_WAIT)[0]:
            more = conn.recv(65536)
            if not more:
                break
            data += more
        return data

    def _count_rekeys(self, before: tuple[bytes, bytes], after: tuple[bytes, bytes]) -> None:
        self.log.read_rekeys += before[0] != after[0]
        self.log.write_rekeys += before[1] != after[1]


def _secrets(rl: RecordLayer) -> tuple[bytes, bytes]:
    keys = rl.snapshot()
    return keys.read_secret, keys.write_secret


# --- driving a command-line client ------------------------------------------------------------

class Client:
    """A client process whose stdout/stderr are collected so the test can wait for markers."""

    def __init__(self, argv: list[str]) -> None:
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        self._cond = threading.Condition()
        self._out = {"stdout": bytearray(), "stderr": bytearray()}
        self._readers = [
            threading.Thread(target=self._pump, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        while chunk := stream.read1(65536):  # type: ignore[attr-defined]
            with self._cond:
                self._out[name] += chunk
                self._cond.notify_all()

    @property
    def stdout(self) -> bytes:
        with self._cond:
            return bytes(self._out["stdout"])

    @property
    def stderr(self) -> bytes:
        with self._cond:
            return bytes(self._out["stderr"])

    def send_line(self, line: bytes) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(line + b"\n")
        self._proc.stdin.flush()

    def wait_for(self, marker: bytes, stream: str = "stdout", count: int = 1) -> None:
        """Block until ``marker`` occurs ``count`` times, failing with the client's output."""
        deadline = time.monotonic() + STEP_TIMEOUT
        with self._cond:
            while self._out[stream].count(marker) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (self._proc.poll() is not None and not self._cond.wait(0.2)):
                    raise AssertionError(
                        f"no {marker[:60]!r} x{count} on {stream};\nstdout tail: "
                        f"{bytes(self._out['stdout'][-1500:])!r}\nstderr tail: "
                        f"{bytes(self._out['stderr'][-1500:])!r}")
                self._cond.wait(min(left, 0.5))

    def finish(self) -> int:
        """Close stdin (both clients then close the TLS session) and reap the process."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            code = self._proc.wait(STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"client did not exit; stderr: {self.stderr[-1500:]!r}") from None
        for reader in self._readers:
            reader.join(STEP_TIMEOUT)
        return code

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(STEP_TIMEOUT)


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    """Every client a test starts is killed at the end, whatever happened."""
    started: list[Client] = []
    yield started
    for client in started:
        client.kill()


def _payloads(tag: str) -> list[bytes]:
    """Lines that cannot be mistaken for s_client commands (Q, R, k, K) or for each other.

    Sizes go from one byte to a few kB (below both clients' stdin buffers); a line split
    over several records still counts, since the echo check is on the joined bytes.
    """
    return [f"ping-{tag}-{i}-".encode() + b"x" * size for i, size in enumerate((1, 1000, 3000))]


def _echo_all(client: Client, server: EchoServer, lines: list[bytes]) -> None:
    """Send each line and wait for its echo; a failure names the server's error, if any."""
    for line in lines:
        client.send_line(line)
        try:
            client.wait_for(line)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nserver error: {server.log.error!r}") from None


def _check_session(log: EchoLog, version: int, aead: str, lines: list[bytes]) -> None:
    assert log.error == "", log.error
    assert log.result is not None
    assert log.result.keys.version == version, log.result.description
    assert log.result.keys.cipher.aead == aead, log.result.description
    assert b"".join(log.received) == b"".join(line + b"\n" for line in lines)
    assert log.closed_by_peer, "client did not end with close_notify"


# --- openssl s_client -------------------------------------------------------------------------

def _s_client(openssl: str, port: int, *args: str) -> list[str]:
    # Neither -quiet nor -ign_eof: either would disable the k/K commands (openssl-s_client(1),
    # CONNECTED COMMANDS). stdin EOF then makes s_client send close_notify and exit.
    return [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "vpn.test",
            *args]


OPENSSL_CASES = [
    ("ec", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], TLS12, "AES-128-GCM"),
    ("ec", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"], TLS12, "AES-256-GCM"),
    ("ec", ["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"], TLS12, "CHACHA20-POLY1305"),
    ("rsa", ["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"], TLS12, "AES-256-GCM"),
    ("rsa", ["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"], TLS12, "CHACHA20-POLY1305"),
    ("ec", ["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"], TLS13, "AES-128-GCM"),
    ("ec", ["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"], TLS13, "AES-256-GCM"),
    ("ec", ["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"], TLS13,
     "CHACHA20-POLY1305"),
    ("rsa", ["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"], TLS13, "AES-128-GCM"),
]


@pytest.mark.parametrize(("key_type", "args", "version", "aead"), OPENSSL_CASES,
                         ids=[f"{c[0]}-{c[1][2]}" for c in OPENSSL_CASES])
def test_openssl_s_client_echo(request: pytest.FixtureRequest, openssl_bin: str,
                               clients: list[Client], key_type: str, args: list[str],
                               version: int, aead: str) -> None:
    identity = request.getfixturevalue(f"{key_type}_identity")
    server = EchoServer(identity)
    client = Client(_s_client(openssl_bin, server.port, *args))
    clients.append(client)
    lines = _payloads(args[2])
    _echo_all(client, server, lines)
    assert client.finish() == 0, client.stderr[-1500:]
    _check_session(server.join(), version, aead, lines)


@pytest.mark.parametrize(("suite", "aead"), [("TLS_AES_128_GCM_SHA256", "AES-128-GCM"),
                                             ("TLS_AES_256_GCM_SHA384", "AES-256-GCM"),
                                             ("TLS_CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305")])
def test_openssl_key_update_mid_stream(ec_identity: Identity, openssl_bin: str,
                                       clients: list[Client], suite: str, aead: str) -> None:
    """'K' asks us to update too (we must answer with our own KeyUpdate and switch keys),
    'k' updates the client's keys only; data must keep flowing both ways after each."""
    server = EchoServer(ec_identity, coalesce=True)
    client = Client(_s_client(openssl_bin, server.port, "-tls1_3", "-ciphersuites", suite))
    clients.append(client)
    lines = [b"ping-before"]
    _echo_all(client, server, lines)
    for n, (command, tag) in enumerate([(b"K", "req1"), (b"k", "noreq"), (b"K", "req2")], 1):
        client.send_line(command)
        # s_client forgets the rest of its stdin buffer after a command: wait until it has
        # taken this one before the next line. Its KeyUpdate leaves with the next write.
        client.wait_for(b"KEYUPDATE", "stderr", count=n)
        line = f"ping-after-{tag}".encode()
        lines.append(line)
        _echo_all(client, server, [line])
    assert client.finish() == 0, client.stderr[-1500:]
    log = server.join()
    _check_session(log, TLS13, aead, lines)
    assert log.read_rekeys == 3
    assert log.write_rekeys == 2  # only the two update_requested ones are answered


# --- gnutls-cli -------------------------------------------------------------------------------

def _gnutls_cli(gnutls: str, port: int, priority: str, *args: str) -> list[str]:
    return [gnutls, "--insecure", "--port", str(port), "--priority", priority, *args,
            "127.0.0.1"]


def _priority(version: str, cipher: str) -> str:
    return f"NORMAL:-VERS-ALL:+VERS-{version}:-CIPHER-ALL:+{cipher}"


GNUTLS_CASES = [
    ("ec", "TLS1.2", "AES-128-GCM"),
    ("ec", "TLS1.2", "AES-256-GCM"),
    ("ec", "TLS1.2", "CHACHA20-POLY1305"),
    ("rsa", "TLS1.2", "AES-128-GCM"),
    ("ec", "TLS1.3", "AES-128-GCM"),
    ("ec", "TLS1.3", "AES-256-GCM"),
    ("ec", "TLS1.3", "CHACHA20-POLY1305"),
    ("rsa", "TLS1.3", "CHACHA20-POLY1305"),
]


@pytest.mark.parametrize(("key_type", "version", "aead"), GNUTLS_CASES,
                         ids=["-".join(c) for c in GNUTLS_CASES])
def test_gnutls_cli_echo(request: pytest.FixtureRequest, gnutls_bin: str,
                         clients: list[Client], key_type: str, version: str,
                         aead: str) -> None:
    identity = request.getfixturevalue(f"{key_type}_identity")
    server = EchoServer(identity)
    client = Client(_gnutls_cli(gnutls_bin, server.port, _priority(version, aead)))
    clients.append(client)
    lines = _payloads(f"{version}-{aead}")
    _echo_all(client, server, lines)
    assert client.finish() == 0, client.stderr[-1500:]
    _check_session(server.join(), TLS13 if version == "TLS1.3" else TLS12, aead, lines)


def test_gnutls_cli_key_update_mid_stream(ec_identity: Identity, gnutls_bin: str,
                                          clients: list[Client]) -> None:
    """GnuTLS' own KeyUpdate: ^rekey^ requests ours (GNUTLS_KU_PEER), ^rekey1^ does not."""
    server = EchoServer(ec_identity, coalesce=True)
    client = Client(_gnutls_cli(gnutls_bin, server.port, _priority("TLS1.3", "AES-256-GCM"),
                                "--inline-commands"))
    clients.append(client)
    lines = [b"ping-before"]
    _echo_all(client, server, lines)
    for n, (command, tag) in enumerate([(b"^rekey^", "req1"), (b"^rekey1^", "noreq"),
                                        (b"^rekey^", "req2")], 1):
        client.send_line(command)
        client.wait_for(b"Rekey was completed", count=n)
        line = f"ping-after-{tag}".encode()
        lines.append(line)
        _echo_all(client, server, [line])
    assert client.finish() == 0, client.stderr[-1500:]
    log = server.join()
    _check_session(log, TLS13, "AES-256-GCM", lines)
    assert log.read_rekeys == 3
    assert log.write_rekeys == 2
