"""HTTPS for waitress, which speaks only plain HTTP: TLS inside waitress's own channels.

The admin UI must run over HTTPS on the LAN with the device certificate, and waitress has
no TLS.  A blocking ``wrap_socket`` in the accept handler would let one silent client
stall the whole server during its handshake, so instead every accepted socket is wrapped
*non-blocking* and the handshake and all I/O run inside waitress's event loop:

* reads drain the TLS layer completely (``pending()``): decrypted bytes buffered inside
  OpenSSL never wake ``select``, so leaving any behind would stall a request;
* a write that OpenSSL cannot finish reports 0 bytes sent; waitress retries with the same
  leading bytes (its buffer only grows at the end), which is what OpenSSL requires;
* a handshake that never finishes is closed by waitress's idle-channel timeout.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from .server import WebServer

log = logging.getLogger(__name__)

_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
MAX_READ = 256 * 1024


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context with the device certificate; no session tickets."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class TlsChannel(HTTPChannel):
    """waitress's HTTP channel over a non-blocking TLS socket."""

    ssl_context: ssl.SSLContext  # set on the subclass made per server

    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Any,
                 map: Any = None) -> None:
        sock.setblocking(False)
        tls = self.ssl_context.wrap_socket(sock, server_side=True,
                                           do_handshake_on_connect=False)
        self._handshaken = False
        super().__init__(server, tls, addr, adj, map=map)

    def _handshake(self) -> bool:
        if self._handshaken:
            return True
        try:
            self.socket.do_handshake()
        except _WOULD_BLOCK:
            return False
        self._handshaken = True
        return True

    def handle_read(self) -> None:
        try:
            if not self._handshake():
                return
            data = self._read_all()
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS connection from %s failed: %s", self.addr, exc)
            self.handle_close()
            return
        if data is None:
            return
        if not data:
            self.handle_close()
            return
        self.last_activity = time.time()
        self.received(data)

    def _read_all(self) -> bytes | None:
        """Everything readable now; b'' at end of stream, None if nothing is ready."""
        chunks: list[bytes] = []
        size = 0
        while size < MAX_READ:
            try:
                chunk = self.socket.recv(self.adj.recv_bytes)
            except _WOULD_BLOCK:
                break
            except ssl.SSLZeroReturnError:
                return b"".join(chunks) if chunks else b""
            if not chunk:
                return b"".join(chunks) if chunks else b""
            chunks.append(chunk)
            size += len(chunk)
            if not self.socket.pending():
                break
        return b"".join(chunks) if chunks else None

    def send(self, data: bytes, do_close: bool = True) -> int:
        try:
            if not self._handshake():
                return 0
            return int(self.socket.send(data))
        except _WOULD_BLOCK:
            return 0
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS send to %s failed: %s", self.addr, exc)
            if do_close:
                self.handle_close()
            return 0


class HttpsWebServer(WebServer):
    """:class:`WebServer` whose every listening socket speaks HTTPS."""

    def __init__(self, app: Any, hosts: list[str], port: int, *, cert: Path, key: Path,
                 threads: int = 4, channel_timeout: int = 60) -> None:
        super().__init__(app, hosts, port, threads=threads, https=True,
                         channel_timeout=channel_timeout)
        channel = type("BoundTlsChannel", (TlsChannel,),
                       {"ssl_context": server_context(cert, key)})
        socket_map = getattr(self._server, "map", None) or getattr(self._server, "_map", {})
        servers = [s for s in socket_map.values() if isinstance(s, BaseWSGIServer)]
        if isinstance(self._server, BaseWSGIServer) and self._server not in servers:
            servers.append(self._server)
        for server in servers:
            server.channel_class = channel
