"""The UDP side of one session: DTLS handshake driving, batched sends, GRO receives.

Main owns the UDP port and hands us a socket connected to the client (plus the datagram
that made it do so). Sends go out with UDP_SEGMENT: one sendmsg() carries a run of
equal-size records and the kernel cuts it into datagrams; receives use UDP_GRO, the mirror
image. Python pays per system call, so this is where DTLS gets cheaper than ocserv's C.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct

from .dtlshandshake import DtlsContext, DtlsHandshakeError, DtlsServerHandshake
from .protocol.dtls import DtlsClosed, DtlsError, DtlsRecordLayer, peek_client_hello

log = logging.getLogger("ocgate.worker")

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
MAX_GSO_SEGMENTS = 64
MAX_GSO_BYTES = 65000
RECV_BATCH = 64
_GRO_CMSG = socket.CMSG_SPACE(4)
_SEGSIZE = struct.Struct("=H")


class DtlsChannel:
    """DTLS for one session; ``established`` once the handshake completed."""

    def __init__(self, ctx: DtlsContext, psk: bytes, app_id: bytes, mtu: int) -> None:
        self.ctx = ctx
        self.psk = psk
        self.app_id = app_id
        self.mtu = mtu
        self.sock: socket.socket | None = None
        self.hs: DtlsServerHandshake | None = None
        self.rl: DtlsRecordLayer | None = None
        self.description = ""
        self.gso = True
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.pending_plain: list[bytes] = []  # authenticated records that came with a rebind

    @property
    def established(self) -> bool:
        return self.rl is not None

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    # --- sockets from main --------------------------------------------------------------------

    def new_socket(self, fd: int, first: bytes, rebind: bool) -> socket.socket | None:
        """Main forwarded a datagram on a new connected socket.

        A ClientHello starts a (new) handshake on it. A data record from a new address/port
        (NAT rebinding) is accepted only if it authenticates under the current keys.
        Returns the socket that replaced the old one (for the caller's poller) or None.
        """
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        if rebind:
            if self.rl is None:
                sock.close()
                return None
            try:
                plains = self.rl.open(first)
            except DtlsClosed:
                plains = []
            if not plains:
                sock.close()
                return None
            log.info("DTLS peer moved to %s", sock.getpeername())
            self._replace(sock)
            self.pending_plain = plains
            return sock
        self.rl = None  # a new ClientHello: the client dropped its old DTLS session
        hs = DtlsServerHandshake(self.ctx, self.psk, self.app_id, mtu=self.mtu)
        self.hs = hs
        self._replace(sock)
        self._handshake_input(first)
        return sock

    def _replace(self, sock: socket.socket) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = sock
        try:
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            pass

    def close(self) -> None:
        if self.hs is not None:
            self.hs.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.rl = None
        self.hs = None

    # --- handshake ----------------------------------------------------------------------------

    def _handshake_input(self, datagram: bytes) -> None:
        hs = self.hs
        assert hs is not None
        try:
            out = hs.feed(datagram)
        except DtlsHandshakeError as exc:
            self._raw_send(exc.datagrams or [])
            log.info("DTLS handshake failed: %s", exc)
            self.hs = None
            return
        self._raw_send(out)
        if hs.done:
            self.rl = hs.record_layer()
            self.description = hs.description
            self.hs = None
            log.info("DTLS established: %s", self.description)

    def handshake_timeout(self) -> float | None:
        return self.hs.timeout() if self.hs is not None else None

    def on_handshake_timeout(self) -> None:
        if self.hs is not None:
            try:
                self._raw_send(self.hs.on_timeout())
            except DtlsHandshakeError as exc:
                log.info("DTLS handshake failed: %s", exc)
                self.hs = None

    # --- receiving ----------------------------------------------------------------------------

    def receive(self) -> list[bytes]:
        """Decrypted payloads (1-byte type + data) of everything waiting on the socket.

        The first read of a burst uses recvmsg() to learn whether the kernel coalesced
        datagrams (UDP_GRO); when it did not, the rest of the burst uses the cheaper recv().
        """
        sock = self.sock
        if sock is None:
            return []
        out: list[bytes] = []
        if self.pending_plain:
            out, self.pending_plain = self.pending_plain, []
        datagrams: list[bytes] = []
        gro = True
        recv = sock.recv
        for _ in range(RECV_BATCH):
            try:
                if gro:
                    data, anc, _flags, _addr = sock.recvmsg(65535, _GRO_CMSG)
                    seg = _gro_segment(anc)
                    if seg and len(data) > seg:
                        datagrams.extend(data[i:i + seg] for i in range(0, len(data), seg))
                    else:
                        datagrams.append(data)
                        gro = bool(seg)
                else:
                    datagrams.append(recv(65535))
            except BlockingIOError:
                break
            except OSError as exc:  # e.g. ECONNREFUSED after an ICMP error: keep going
                log.debug("DTLS receive: %s", exc)
                break
        if not datagrams:
            return out
        self.rx_bytes += sum(map(len, datagrams))
        if self.hs is not None or self.rl is None:
            for datagram in datagrams:
                self._datagram_slow(datagram, out)
            return out
        rl = self.rl
        dropped = rl.dropped
        out.extend(rl.open_many(datagrams))  # DtlsClosed propagates to the caller
        if rl.dropped != dropped:
            # something did not open: maybe the client restarted DTLS from this address
            for datagram in datagrams:
                if datagram[:1] == b"\x16" and _is_client_hello(datagram):
                    self._datagram_slow(datagram, out)
                    break
        if rl.pending:
            self._raw_send(rl.pending)
            rl.pending.clear()
        return out

    def _datagram_slow(self, datagram: bytes, out: list[bytes]) -> None:
        """During a handshake, or a ClientHello on an established flow."""
        if self.hs is None and _is_client_hello(datagram):
            self.rl = None
            self.hs = DtlsServerHandshake(self.ctx, self.psk, self.app_id, mtu=self.mtu)
        if self.hs is not None:
            self._handshake_input(datagram)
        elif self.rl is not None:
            out.extend(self.rl.open(datagram))

    # --- sending ------------------------------------------------------------------------------

    def send(self, payloads: list[bytes]) -> None:
        """Seal each payload (type byte + data) in its own record and send them batched."""
        assert self.rl is not None
        self._raw_send(self.rl.seal_many(payloads))

    def _raw_send(self, datagrams: list[bytes]) -> None:
        sock = self.sock
        if sock is None or not datagrams:
            return
        i, n = 0, len(datagrams)
        while i < n:
            size = len(datagrams[i])
            j = i + 1
            if self.gso:
                limit = min(n, i + MAX_GSO_SEGMENTS, i + MAX_GSO_BYTES // max(size, 1))
                while j < limit and len(datagrams[j]) == size:
                    j += 1
                if j < limit and len(datagrams[j]) < size:
                    j += 1  # a shorter last segment is allowed
            try:
                if j - i == 1:
                    sock.send(datagrams[i])
                else:
                    sock.sendmsg([b"".join(datagrams[i:j])],
                                 [(SOL_UDP, UDP_SEGMENT, _SEGSIZE.pack(size))])
                self.tx_bytes += sum(len(d) for d in datagrams[i:j])
            except BlockingIOError:
                pass  # socket buffer full: UDP may drop, TCP inside will recover
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT) and j - i > 1:
                    log.info("UDP_SEGMENT unavailable (%s); sending datagrams one by one", exc)
                    self.gso = False
                    continue
                if exc.errno not in (errno.ECONNREFUSED, errno.EMSGSIZE, errno.ENOBUFS):
                    raise
            i = j


def _gro_segment(ancillary: list) -> int:
    for level, ctype, cdata in ancillary:
        if level == SOL_UDP and ctype == UDP_GRO and len(cdata) >= 2:
            return int.from_bytes(cdata[:4] if len(cdata) >= 4 else cdata[:2], "little")
    return 0


def _is_client_hello(datagram: bytes) -> bool:
    try:
        return peek_client_hello(datagram) is not None
    except DtlsError:
        return False


def udp_socket_for(local: tuple, peer: tuple, family: int) -> int:
    """A UDP socket on our DTLS port connected to one client (main uses it)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(local)
        sock.connect(peer)
        return os.dup(sock.fileno())
    finally:
        sock.close()
