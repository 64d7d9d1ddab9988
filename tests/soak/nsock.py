"""Sockets that live in a test namespace, opened by the test process itself.

Spawning a helper process per transfer or per idle connection would cost more CPU
than the server under test spends on it, which on a 2-core machine shared by several
runs distorts a soak.  ``setns(2)`` switches only the calling *thread*, and a socket
stays in the namespace it was created in, so one Python process can drive hundreds of
connections in many namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator

from tests.support.netns import NETNS_RUN_DIR

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NsSocketError(OSError):
    """The calling thread could not enter or leave a network namespace."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NsSocketError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(ns_name: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``ns_name``; always come back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_RUN_DIR / ns_name, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)  # a thread left in a test namespace would poison later work
    finally:
        os.close(own)


def tcp_socket_in(ns_name: str) -> socket.socket:
    """A fresh IPv4 TCP socket belonging to ``ns_name``."""
    with entered(ns_name):
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def connect_in(ns_name: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection from ``ns_name``; connect() itself runs outside the namespace."""
    sock = tcp_socket_in(ns_name)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class DigestSink:
    """TCP service in the server namespace: reads to EOF, answers with the SHA-256.

    A client that gets its own digest back knows every byte crossed the tunnel intact
    in both directions (the answer comes back through the tunnel too).
    """

    def __init__(self, ns_name: str, host: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.listener = tcp_socket_in(ns_name)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(256)
        self.address: tuple[str, int] = self.listener.getsockname()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="digest-sink", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        digest = hashlib.sha256()
        with conn:
            try:
                conn.settimeout(self.timeout)
                while chunk := conn.recv(65536):
                    digest.update(chunk)
                conn.sendall(digest.hexdigest().encode())
            except OSError as exc:
                log.debug("digest sink: %s", exc)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(5)


def digest_roundtrip(ns_name: str, sink: tuple[str, int], nbytes: int,
                     timeout: float = 60.0) -> bool:
    """Send ``nbytes`` of random data from ``ns_name`` to a :class:`DigestSink`; True if the
    digest that comes back matches what was sent."""
    payload = os.urandom(nbytes)
    with connect_in(ns_name, sink[0], sink[1], timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(128):
            answer += chunk
    return answer.decode(errors="replace") == hashlib.sha256(payload).hexdigest()
