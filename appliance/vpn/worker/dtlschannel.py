"""The UDP side of one session: DTLS handshake driving, batched sends, GRO receives.

Main owns the UDP port and hands us a socket connected to the client (plus the datagram
that made it do so). Sends go out with UDP_SEGMENT: one sendmsg() carries a run of
equal-size records and the kernel cuts it into datagrams; receives use UDP_GRO, the mirror
image. Python pays per system call, so this is where DTLS gets cheaper than ocserv's C.

A new handshake never disturbs the established session: the App-ID travels in clear in
every ClientHello, so anyone on the path can send one. The new handshake runs next to the
old session (on its own socket when the client's address changed) and replaces it only
when it completes, which needs the PSK (docs/protocol.md 5.7; ocserv #359).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Protocol

from ..native import fastpath
from ..protocol.dtls.handshake import DtlsHandshakeError
from ..protocol.dtls.legacy import CbcRecordLayer
from ..protocol.dtls.record import (
    _SEQ_MASK,
    DtlsClosed,
    DtlsError,
    DtlsRecordLayer,
    peek_client_hello,
)

log = logging.getLogger(__name__)

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
MAX_GSO_SEGMENTS = 64
MAX_GSO_BYTES = 65000
RECV_BATCH = 64
HANDSHAKE_DEADLINE = 30.0  # a handshake that has not completed by then is abandoned
_GRO_CMSG = socket.CMSG_SPACE(4)
_SEGSIZE = struct.Struct("=H")
CT_CHANGE_CIPHER_SPEC = 20
CT_HANDSHAKE = 22


#: the record layers a channel seals and opens with: PSK DTLS 1.2, or legacy CBC
DatagramRecords = DtlsRecordLayer | CbcRecordLayer


class Handshake(Protocol):
    """What the channel drives: OpenSSL's PSK handshake (protocol/dtls/handshake.py) or
    the legacy one (worker/legacydtls.py). ``feed``/``on_timeout`` raise
    DtlsHandshakeError when the handshake failed."""

    @property
    def done(self) -> bool: ...
    @property
    def description(self) -> str: ...
    def feed(self, datagram: bytes) -> list[bytes]: ...
    def timeout(self) -> float | None: ...
    def on_timeout(self) -> list[bytes]: ...
    def close(self) -> None: ...
    def record_layer(self) -> DatagramRecords: ...


class DtlsChannel:
    """DTLS for one session; ``established`` once a handshake completed.
    ``new_handshake`` starts the server side of one handshake (each ClientHello)."""

    def __init__(self, new_handshake: Callable[[], Handshake]) -> None:
        self.new_handshake = new_handshake
        self.sock: socket.socket | None = None  # the established session's socket
        self.rl: DatagramRecords | None = None
        self.hs: Handshake | None = None  # a handshake in progress ...
        self.hs_sock: socket.socket | None = None  # ... and the socket it runs on
        self.hs_deadline = 0.0
        self.description = ""
        self.gso = True
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.pending_plain: list[bytes] = []  # authenticated records that came with a rebind

    @property
    def established(self) -> bool:
        return self.rl is not None

    def sockets(self) -> list[socket.socket]:
        """Every socket the caller must poll."""
        out = [s for s in (self.sock, self.hs_sock) if s is not None]
        return out if len(out) < 2 or out[0] is not out[1] else out[:1]

    # --- sockets from main --------------------------------------------------------------------

    def new_socket(self, fd: int, first: bytes, rebind: bool) -> None:
        """Main forwarded a datagram on a new connected socket.

        A ClientHello starts a handshake there, next to the running session. A data record
        from a new address/port (NAT rebinding) moves the session to the new socket, but
        only if it authenticates under the current keys.
        """
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        _enable_gro(sock)
        if rebind:
            plains = self._try_open(first)
            if not plains:
                sock.close()
                return
            log.info("DTLS peer moved to %s", _peer(sock))
            if self.sock is not None and self.sock is not self.hs_sock:
                self.sock.close()
            self.sock = sock
            self.pending_plain = plains
            return
        self._start_handshake(sock)
        self._handshake_input(first)

    def _try_open(self, datagram: bytes) -> list[bytes]:
        if self.rl is None:
            return []
        try:
            return self.rl.open(datagram)
        except DtlsClosed:
            return []

    def _start_handshake(self, sock: socket.socket) -> None:
        self._drop_handshake()
        self.hs = self.new_handshake()
        self.hs_sock = sock
        self.hs_deadline = time.monotonic() + HANDSHAKE_DEADLINE

    def _drop_handshake(self) -> None:
        if self.hs is not None:
            self.hs.close()
        if self.hs_sock is not None and self.hs_sock is not self.sock:
            self.hs_sock.close()
        self.hs = None
        self.hs_sock = None

    def close(self) -> None:
        self._drop_handshake()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.rl = None

    # --- handshake ----------------------------------------------------------------------------

    def _handshake_input(self, datagram: bytes) -> None:
        hs = self.hs
        assert hs is not None
        try:
            out = hs.feed(datagram)
        except DtlsHandshakeError as exc:
            self._raw_send(self.hs_sock, exc.datagrams or [])
            log.info("DTLS handshake failed: %s", exc)
            self._drop_handshake()
            return
        self._raw_send(self.hs_sock, out)
        if hs.done:
            new_sock = self.hs_sock
            if self.sock is not None and self.sock is not new_sock:
                self.sock.close()
            self.sock = new_sock
            self.rl = hs.record_layer()
            self.description = hs.description
            self.hs = None
            self.hs_sock = None
            log.info("DTLS established: %s", self.description)

    def handshake_timeout(self) -> float | None:
        return self.hs.timeout() if self.hs is not None else None

    def on_handshake_timeout(self) -> None:
        if self.hs is None:
            return
        if time.monotonic() > self.hs_deadline:
            log.info("DTLS handshake abandoned after %.0f s", HANDSHAKE_DEADLINE)
            self._drop_handshake()
            return
        try:
            self._raw_send(self.hs_sock, self.hs.on_timeout())
        except DtlsHandshakeError as exc:
            log.info("DTLS handshake failed: %s", exc)
            self._drop_handshake()

    # --- receiving ----------------------------------------------------------------------------

    def native_rl(self) -> DtlsRecordLayer | None:
        """The established record layer when the native core can run it."""
        rl = self.rl
        if fastpath is None or not isinstance(rl, DtlsRecordLayer) or rl.native_read is None:
            return None
        return rl

    def receive_to_tun(self, sock: socket.socket, tun: int,
                       vnet: bool) -> tuple[int, int, bool, list[bytes]]:
        """``receive`` with the data packets written straight to the TUN by the native core:
        (packets written, their bytes, any of them user activity, the other payloads).
        What the core does not handle (control payloads, handshake records, anything
        unusual) comes back from it unread and goes through ``receive``'s Python path."""
        rl = self.native_rl()
        if rl is None or sock is not self.sock or self.pending_plain:
            return 0, 0, False, self.receive(sock)
        assert fastpath is not None
        w = rl.window
        (count, nbytes, activity, w.top, w.bits, udp_bytes, dropped, rest,
         err) = fastpath.dtls_to_tun(sock.fileno(), tun, rl.native_read, not rl._gcm,
                                     rl._rsalt, rl.epoch, w.top, w.bits, vnet)
        self.rx_bytes += udp_bytes
        rl.dropped += dropped
        if err:
            raise OSError(err, os.strerror(err))
        payloads = self._open_burst(sock, rest) if rest else []
        return count, nbytes, bool(activity), payloads

    def send_from_tun(self, tun: int, batch: int, vnet: bool) -> tuple[int, int, bool]:
        """Read up to ``batch`` TUN packets, seal and send them (the native core):
        (packets, bytes, any of them user activity)."""
        rl = self.native_rl()
        assert rl is not None and self.sock is not None and fastpath is not None
        if rl.write_seq + batch > _SEQ_MASK:
            raise DtlsError("DTLS sequence numbers exhausted; a new handshake is needed")
        gso = self.gso
        (count, nbytes, activity, es, sent, self.gso, err,
         too_big) = fastpath.tun_to_dtls(tun, self.sock.fileno(), rl.native_write, not rl._gcm,
                                         rl._wsalt, rl._epoch_bits | rl.write_seq, batch, vnet,
                                         gso)
        rl.write_seq = es & _SEQ_MASK
        self.tx_bytes += sent
        if gso and not self.gso:
            log.info("UDP_SEGMENT unavailable; sending datagrams one by one")
        if err:
            raise OSError(err, os.strerror(err))
        if too_big:
            raise DtlsError("a TUN packet does not fit one DTLS record")
        return count, nbytes, bool(activity)

    def receive(self, sock: socket.socket) -> list[bytes]:
        """Decrypted payloads (1-byte type + data) of everything waiting on ``sock``."""
        out: list[bytes] = []
        if self.pending_plain:
            out, self.pending_plain = self.pending_plain, []
        datagrams = _read_burst(sock)
        if not datagrams:
            return out
        self.rx_bytes += sum(map(len, datagrams))
        out.extend(self._open_burst(sock, datagrams))
        return out

    def _open_burst(self, sock: socket.socket, datagrams: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        rl = self.rl if sock is self.sock else None
        if rl is None:  # only a handshake runs on this socket
            for datagram in datagrams:
                if self.hs is not None and sock is self.hs_sock:
                    self._handshake_input(datagram)
            return out
        dropped = rl.dropped
        out.extend(rl.open_many(datagrams))  # DtlsClosed propagates to the caller
        if rl.dropped != dropped:
            # handshake records (a restart from the same address) are not for the session
            for datagram in datagrams:
                if datagram[:1] and datagram[0] in (CT_HANDSHAKE, CT_CHANGE_CIPHER_SPEC):
                    self._handshake_datagram(sock, datagram)
        if rl.pending:
            self._raw_send(sock, rl.pending)
            rl.pending.clear()
        return out

    def _handshake_datagram(self, sock: socket.socket, datagram: bytes) -> None:
        if _is_client_hello(datagram) and (self.hs is None or self.hs_sock is not sock):
            self._start_handshake(sock)
        if self.hs is not None and self.hs_sock is sock:
            self._handshake_input(datagram)

    # --- sending ------------------------------------------------------------------------------

    def send(self, payloads: list[bytes]) -> None:
        """Seal each payload (type byte + data) in its own record and send them batched."""
        assert self.rl is not None
        self._raw_send(self.sock, self.rl.seal_many(payloads))

    def _raw_send(self, sock: socket.socket | None, datagrams: list[bytes]) -> None:
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


def _read_burst(sock: socket.socket) -> list[bytes]:
    """Everything waiting, up to RECV_BATCH reads.

    The first read uses recvmsg() to learn whether the kernel coalesced datagrams
    (UDP_GRO); when it did not, the rest of the burst uses the cheaper recv().
    """
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
    return datagrams


def _enable_gro(sock: socket.socket) -> None:
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        pass


def _peer(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[:2])
    except OSError:
        return "?"


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
