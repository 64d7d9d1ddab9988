"""``listen-proxy-proto``: learn each connection's real client from its PROXY header.

Main reads the header itself, non-blocking in its selector loop, before it decides
anything: the ban check, ban points, max-clients and the worker's notion of its peer must
all be about the client, never about the load balancer in front of us. Reading it in the
worker instead would fork a process per balancer connection before a ban could refuse it.

The TLS handshake runs later in the sec-mod on this very descriptor (passed on by
SCM_RIGHTS), so the bytes after the header — the start of the ClientHello — must stay in
the kernel's receive queue: every read here is a MSG_PEEK first, and only bytes known to
be header are taken off the queue.
"""

from __future__ import annotations

import logging
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol.proxyproto import (
    COMMAND_LOCAL,
    V2_MAX_LENGTH,
    HeaderReader,
    NeedMore,
    ProxyHeader,
    ProxyProtocolError,
)

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 5.0  # a balancer sends the header at once; anything slower is not one
MAX_PENDING = 512  # connections waiting for their header; more are refused, not queued

#: main's admission step: (socket, client ip, client port, local ip, local port)
Admit = Callable[[socket.socket, str, int, str, int], None]


@dataclass
class PendingConnection:
    """An accepted connection whose PROXY header is not complete yet."""

    sock: socket.socket
    proxy_ip: str  # the balancer's address: only for logs
    deadline: float
    reader: HeaderReader


class ProxyIntake:
    """The connections main has accepted but not yet admitted."""

    def __init__(self, sel: selectors.BaseSelector, admit: Admit,
                 plain_ip: Callable[[str], str], timeout: float = HEADER_TIMEOUT,
                 limit: int = MAX_PENDING) -> None:
        self.sel = sel
        self.admit = admit
        self.plain_ip = plain_ip
        self.timeout = timeout
        self.limit = limit
        self.pending: dict[int, PendingConnection] = {}

    def add(self, sock: socket.socket, proxy_ip: str, now: float) -> None:
        """Wait (in the selector) for the header of a freshly accepted connection."""
        if len(self.pending) >= self.limit:
            log.warning("proxy-proto: %d connections already wait for a header; dropping "
                        "one from %s", len(self.pending), proxy_ip)
            sock.close()
            return
        sock.setblocking(False)
        self.pending[sock.fileno()] = PendingConnection(sock, proxy_ip, now + self.timeout,
                                                        HeaderReader())
        self.sel.register(sock, selectors.EVENT_READ, self._readable)

    def _readable(self, sock: socket.socket) -> None:
        conn = self.pending.get(sock.fileno())
        if conn is None:
            return
        try:
            data = sock.recv(V2_MAX_LENGTH, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(conn, f"receive failed: {exc}", quiet=True)
            return
        if not data:
            self._drop(conn, "closed before sending a PROXY header", quiet=True)
            return
        taken_before = conn.reader.buffered
        try:
            outcome = conn.reader.feed(data)
        except ProxyProtocolError as exc:
            self._drop(conn, f"invalid PROXY header: {exc}")
            return
        # NeedMore: every byte seen is header, so take them all off the queue (or the
        # socket would stay readable and spin the loop); done: take only the header's rest
        count = len(data) if isinstance(outcome, NeedMore) else outcome.consumed - taken_before
        if not _discard(sock, count):
            self._drop(conn, "could not consume the PROXY header", quiet=True)
            return
        if isinstance(outcome, ProxyHeader):
            self._complete(conn, outcome)

    def _complete(self, conn: PendingConnection, header: ProxyHeader) -> None:
        self._forget(conn)
        sock = conn.sock
        if header.command == COMMAND_LOCAL or header.family == "unspec":
            log.debug("proxy-proto: health check from %s (v%d %s); closing", conn.proxy_ip,
                      header.version, header.command)
            sock.close()
            return
        if not header.has_client_address:
            log.info("proxy-proto: header from %s names no IP client (%s); dropping",
                     conn.proxy_ip, header.family)
            sock.close()
            return
        assert header.source_ip is not None and header.dest_ip is not None
        log.debug("proxy-proto: %s port %s via %s (v%d)", header.source_ip,
                  header.source_port, conn.proxy_ip, header.version)
        sock.setblocking(True)  # a shared file flag: the worker and sec-mod expect blocking
        self.admit(sock, self.plain_ip(header.source_ip), header.source_port or 0,
                   self.plain_ip(header.dest_ip), header.dest_port or 0)

    def _drop(self, conn: PendingConnection, reason: str, quiet: bool = False) -> None:
        self._forget(conn)
        (log.debug if quiet else log.info)("proxy-proto: dropping connection from %s: %s",
                                           conn.proxy_ip, reason)
        conn.sock.close()

    def _forget(self, conn: PendingConnection) -> None:
        self.pending.pop(conn.sock.fileno(), None)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def sweep(self, now: float) -> None:
        """Drop connections that sent no complete header within the deadline."""
        for conn in [c for c in self.pending.values() if c.deadline <= now]:
            self._drop(conn, f"no complete PROXY header within {self.timeout:.0f} s")

    def close_in_child(self) -> None:
        """A forked worker must not keep other clients' connections open."""
        for conn in self.pending.values():
            conn.sock.close()
        self.pending.clear()


def _discard(sock: socket.socket, count: int) -> bool:
    """Take ``count`` bytes that MSG_PEEK already saw off the receive queue."""
    while count > 0:
        try:
            chunk = sock.recv(count)
        except OSError:
            return False
        if not chunk:
            return False
        count -= len(chunk)
    return True
