"""The batched TUN <-> CSTP loop of one session (docs/architecture.md, "Data path rules").

Python pays per call, not per byte, so the loop drains the TUN until EAGAIN (up to BATCH
packets), seals every frame in its own TLS record (openconnect drops records holding two
frames) and sends all of them with one send(). Backpressure: while the socket has unsent
bytes we stop reading the TUN and let the kernel queue (or drop) there.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

from .. import ipc
from ..native import fastpath
from ..protocol.compression import DECOMPRESS_ERRORS, Compressor
from ..protocol.cstp import (
    BYE_RECONNECTING,
    BYE_USER_DISCONNECT,
    CstpError,
    FrameDecoder,
    PacketType,
)
from ..protocol.dtls.record import DtlsClosed
from ..protocol.tls.record import RecordLayer, TlsClosed, TlsRecordError
from .bandwidth import TokenBucket
from .dtlschannel import DtlsChannel
from .gro import VNET_HDR_LEN, coalesce

log = logging.getLogger(__name__)

BATCH = 64
RECV_SIZE = 256 * 1024
STATS_INTERVAL = 3.0  # occtl and the web UI's live graph read these counters
TICK = 0.5  # seconds between timer checks
_FRAME_HDR = struct.Struct("!4sHBB")
_MAGIC = b"STF\x01"

_ICMP_PROTOCOLS = {1, 2, 58}  # ICMP, IGMP, ICMPv6 do not count as activity (docs/protocol.md 7.3)


@dataclass
class Timers:
    dpd: int
    idle_timeout: int | None
    session_deadline: float | None  # monotonic
    switch_to_tcp: float = 25.0  # UDP silent this long: send over CSTP (docs/protocol.md 5.6)


@dataclass
class Counters:
    rx: int = 0  # bytes from the client, written to the TUN
    tx: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    udp_rx_packets: int = 0
    udp_tx_packets: int = 0
    compressed_rx: int = 0
    compressed_tx: int = 0
    bad_compressed: int = 0


def _is_activity(packet: bytes | memoryview) -> bool:
    if not packet:
        return False
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        return packet[9] not in _ICMP_PROTOCOLS
    if version == 6 and len(packet) >= 40:
        return packet[6] not in _ICMP_PROTOCOLS
    return True


class CstpSession:
    """Runs until the session ends; ``run`` returns the disconnect reason."""

    def __init__(self, sock: socket.socket, records: RecordLayer, tun_fd: int,
                 main_chan: socket.socket, timers: Timers, pending_plain: bytes = b"",
                 dtls: DtlsChannel | None = None, cstp_comp: Compressor | None = None,
                 dtls_comp: Compressor | None = None, rx_limit: int = 0,
                 tx_limit: int = 0, vnet_hdr: bool = False) -> None:
        self.sock = sock
        self.vnet_hdr = vnet_hdr  # main opens TUNs with IFF_VNET_HDR (worker/gro.py)
        self.to_tun: list[bytes] = []  # packets of this wakeup, written together
        now = time.monotonic()
        # rx-data-per-sec / tx-data-per-sec (bytes/s; rx = from the client)
        self.rx_bucket = TokenBucket(rx_limit, now=now) if rx_limit else None
        self.tx_bucket = TokenBucket(tx_limit, now=now) if tx_limit else None
        self.rx_paused_until = 0.0
        self.tx_paused_until = 0.0
        self.cstp_comp = cstp_comp
        self.dtls_comp = dtls_comp
        # decompressed packets may not exceed what openconnect itself accepts (6.4)
        self.max_packet = 16384
        self.dtls = dtls
        self.use_udp = False  # send over DTLS (it is up and the client is using it)
        self.udp_last_rx = 0.0
        self._ep: select.epoll | None = None
        self._udp: dict[int, socket.socket] = {}  # DTLS sockets being polled, by fd
        self._dtls_rl: object | None = None
        self.rl = records
        self.tun = tun_fd
        self.main = main_chan
        self.timers = timers
        self.decoder = FrameDecoder()
        self.pending_plain = pending_plain
        self.out = b""
        self.counters = Counters()
        now = time.monotonic()
        self.last_rx = now
        self.last_activity = now
        self.last_dpd_sent = 0.0
        self.reason: ipc.WorkerReason = ""

    # --- sending ------------------------------------------------------------------------------

    def _queue(self, records: bytes) -> None:
        if self.out:
            self.out += records
            return
        try:
            sent = self.sock.send(records)
        except BlockingIOError:
            sent = 0
        self.out = records[sent:]

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        self.out = self.out[sent:]

    def send_control(self, ptype: int, payload: bytes = b"") -> None:
        self._queue(self.rl.seal(_FRAME_HDR.pack(_MAGIC, len(payload), ptype, 0) + payload))

    def _tun_to_tls(self) -> None:
        """Drain the TUN (up to BATCH packets) and send them on the active channel."""
        if fastpath is not None and self._native_tx():
            return
        packets: list[bytes | memoryview] = []  # memoryviews past the vnet header
        append = packets.append
        read = os.read
        tun = self.tun
        for _ in range(BATCH):
            try:
                append(read(tun, 65535))
            except BlockingIOError:
                break
        if not packets:
            return
        if self.vnet_hdr:  # no offloads were enabled: the header is always empty
            packets = [memoryview(p)[VNET_HDR_LEN:] for p in packets]
        c = self.counters
        nbytes = sum(map(len, packets))
        c.tx += nbytes
        c.tx_packets += len(packets)
        if self.tx_bucket is not None:
            now = time.monotonic()
            wait = self.tx_bucket.take(nbytes, now)
            if wait:
                self.tx_paused_until = now + wait
        if self.timers.idle_timeout is not None and any(map(_is_activity, packets)):
            self.last_activity = time.monotonic()
        dtls = self.dtls
        if self.use_udp and dtls is not None:  # use_udp is set only while dtls is up
            c.udp_tx_packets += len(packets)
            if self.dtls_comp is not None:
                dtls.send([self._compressed(self.dtls_comp, p, 1) for p in packets])
            else:
                dtls.send([b"\x00" + p for p in packets])  # DTLS: 1 type byte + packet
            return
        if self.cstp_comp is not None:
            self._queue(self.rl.seal_many([self._compressed(self.cstp_comp, p, 8)
                                           for p in packets]))
            return
        pack = _FRAME_HDR.pack
        self._queue(self.rl.seal_many([pack(_MAGIC, len(p), 0, 0) + p for p in packets]))

    def _native_tx(self) -> bool:
        """``_tun_to_tls`` by the native core, when it can do it (no compression, an AEAD
        record layer); False: the caller runs the Python path."""
        assert fastpath is not None
        dtls = self.dtls
        c = self.counters
        if self.use_udp and dtls is not None:
            if self.dtls_comp is not None or dtls.native_rl() is None:
                return False
            count, nbytes, activity = dtls.send_from_tun(self.tun, BATCH, self.vnet_hdr)
            c.udp_tx_packets += count
        else:
            rl = self.rl
            if self.cstp_comp is not None or rl.native_write is None:
                return False
            (records, count, nbytes, activity, rl.write_seq,
             err) = fastpath.tun_to_tls(self.tun, rl.native_write, rl.native_mode,
                                        rl._wiv_bytes, rl.write_seq, BATCH, self.vnet_hdr)
            if records:
                self._queue(records)
            if err:
                raise OSError(err, os.strerror(err))
        if count:
            c.tx += nbytes
            c.tx_packets += count
            if self.tx_bucket is not None:
                now = time.monotonic()
                wait = self.tx_bucket.take(nbytes, now)
                if wait:
                    self.tx_paused_until = now + wait
            if activity and self.timers.idle_timeout is not None:
                self.last_activity = time.monotonic()
        return True

    def _compressed(self, comp: Compressor, packet: bytes | memoryview, header: int) -> bytes:
        """A packet with its DTLS (1-byte) or CSTP (8-byte) header, compressed only if that
        makes it smaller (docs/protocol.md 6.2)."""
        data: bytes | memoryview | None = comp.compress(bytes(packet))
        ptype = PacketType.COMPRESSED if data is not None else PacketType.DATA
        if data is None:
            data = packet
        else:
            self.counters.compressed_tx += 1
        if header == 1:
            return bytes((ptype,)) + data
        return _FRAME_HDR.pack(_MAGIC, len(data), ptype, 0) + data

    def _decompressed(self, comp: Compressor | None, payload: bytes) -> bytes | None:
        """The packet inside a compressed frame; None (packet dropped) if it is bad or
        nothing was negotiated on that channel."""
        c = self.counters
        if comp is None:
            c.bad_compressed += 1
            log.debug("compressed packet on a channel without compression: dropped")
            return None
        try:
            packet = comp.decompress(payload, self.max_packet)
        except DECOMPRESS_ERRORS as exc:
            c.bad_compressed += 1
            log.debug("bad compressed packet dropped: %s", exc)
            return None
        c.compressed_rx += 1
        return packet

    # --- receiving ----------------------------------------------------------------------------

    def _tls_to_tun(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        if not data:
            self.reason = "temporary"
            return
        rl = self.rl
        if fastpath is not None and rl.native_read is not None and not self.decoder.pending:
            data = self._native_rx(data)
            if not data:
                return
        self._handle_plain(rl.feed(data))

    def _native_rx(self, data: bytes) -> bytes:
        """The leading records that each hold one CSTP data frame, opened into the TUN by
        the native core; returns the rest (from the first record it left alone) for the
        Python record layer, which then sees the records in their order."""
        assert fastpath is not None
        rl = self.rl
        if rl._buf:  # a partial record from the last read comes first
            data = bytes(rl._buf) + data
            rl._buf.clear()
        (consumed, rl.read_seq, count, nbytes, activity,
         err) = fastpath.tls_to_tun(data, self.tun, rl.native_read, rl.native_mode,
                                    rl._riv_bytes, rl.read_seq, self.vnet_hdr)
        if count:
            c = self.counters
            self.last_rx = time.monotonic()
            c.rx += nbytes
            c.rx_packets += count
            self.use_udp = False  # the client fell back to TLS: follow it
            if activity and self.timers.idle_timeout is not None:
                self.last_activity = self.last_rx
        if err:
            self._tun_write_failed(OSError(err, os.strerror(err)))
        return data[consumed:] if consumed else data

    def _handle_plain(self, plains: list[bytes]) -> None:
        """Frames out of decrypted records. openconnect puts exactly one frame in each record,
        so that case skips the re-framing decoder; anything else goes through it."""
        if not plains:
            return
        self.last_rx = time.monotonic()
        c = self.counters
        decoder = self.decoder
        to_tun = self.to_tun
        for plain in plains:
            if (not decoder.pending and len(plain) > 8 and plain[6] == 0
                    and plain[:4] == _MAGIC and (plain[4] << 8 | plain[5]) == len(plain) - 8):
                payload = plain[8:]
                c.rx += len(payload)
                c.rx_packets += 1
                if self.use_udp:  # the client fell back to TLS: follow it
                    self.use_udp = False
                to_tun.append(payload)
                if self.timers.idle_timeout is not None and _is_activity(payload):
                    self.last_activity = self.last_rx
                continue
            for ptype, payload in decoder.feed(plain):
                self._frame(ptype, payload)
                if self.reason:
                    break
        self._write_tun()

    def _write_tun(self) -> None:
        """Write what this wakeup received; with a vnet-header TUN, runs of one TCP flow go
        in as single GSO packets (worker/gro.py)."""
        packets = self.to_tun
        if not packets:
            return
        self.to_tun = []
        if fastpath is not None:
            err = fastpath.write_tun(self.tun, packets, self.vnet_hdr)
            if err:
                self._tun_write_failed(OSError(err, os.strerror(err)))
            return
        writes = coalesce(packets) if self.vnet_hdr else packets
        write = os.write
        tun = self.tun
        for data in writes:
            try:
                write(tun, data)
            except OSError as exc:
                self._tun_write_failed(exc)

    @staticmethod
    def _tun_write_failed(exc: OSError) -> None:
        """A full queue or a packet the kernel refuses: drop this packet only."""
        if exc.errno not in (errno.EAGAIN, errno.EINVAL, errno.EMSGSIZE):
            raise exc

    def _frame(self, ptype: int, payload: bytes) -> None:
        if ptype == PacketType.COMPRESSED:
            packet = self._decompressed(self.cstp_comp, payload)
            if packet is None:
                return
            ptype, payload = PacketType.DATA, packet
        if ptype == PacketType.DATA:
            self.counters.rx += len(payload)
            self.counters.rx_packets += 1
            self.to_tun.append(payload)
            if self.timers.idle_timeout is not None and _is_activity(payload):
                self.last_activity = self.last_rx
        elif ptype == PacketType.DPD_REQ:
            self.send_control(PacketType.DPD_RESP, payload)
        elif ptype in (PacketType.KEEPALIVE, PacketType.DPD_RESP):
            pass
        elif ptype == PacketType.DISCONNECT:
            code = payload[0] if payload else BYE_RECONNECTING
            self.reason = "user" if code == BYE_USER_DISCONNECT else "temporary"
            log.info("client sent BYE (reason 0x%02x%s)", code,
                     f": {payload[1:].decode('ascii', 'replace')}" if len(payload) > 1 else "")
        else:
            log.debug("ignoring CSTP packet type %d", ptype)

    # --- DTLS ---------------------------------------------------------------------------------

    def _track_dtls(self) -> None:
        """Keep the poller on the DTLS sockets and start sending over DTLS the moment a
        handshake completes (as ocserv does)."""
        dtls = self.dtls
        wanted = {s.fileno(): s for s in dtls.sockets()} if dtls is not None else {}
        ep = self._ep
        for fd in list(self._udp):
            if fd not in wanted or self._udp[fd] is not wanted[fd]:
                del self._udp[fd]
                if ep is not None:
                    try:
                        ep.unregister(fd)
                    except OSError:
                        pass  # closed already
        for fd, sock in wanted.items():
            if fd not in self._udp:
                self._udp[fd] = sock
                if ep is not None:
                    ep.register(fd, self._masks[2])
        if dtls is not None and dtls.established:
            if dtls.rl is not self._dtls_rl:
                self.use_udp = True
                self.udp_last_rx = time.monotonic()
                self._dtls_rl = dtls.rl
                self._report()  # occtl shows the DTLS cipher at once
        else:
            self.use_udp = False
        self._dtls_rl = dtls.rl if dtls is not None else None

    def _udp_in(self, sock: socket.socket) -> None:
        dtls = self.dtls
        if dtls is None:  # its sockets are polled only while the channel exists
            return
        count = nbytes = 0
        activity = False
        try:
            if fastpath is not None:
                count, nbytes, activity, payloads = dtls.receive_to_tun(sock, self.tun,
                                                                        self.vnet_hdr)
            else:
                payloads = dtls.receive(sock)
        except DtlsClosed:
            log.info("client closed its DTLS session")
            dtls.close()
            payloads = []
        self._track_dtls()
        if not payloads and not count:
            return
        now = time.monotonic()
        self.last_rx = self.udp_last_rx = now
        self.use_udp = True
        to_tun = self.to_tun
        c = self.counters
        c.udp_rx_packets += len(payloads) + count
        if count:  # written to the TUN by the native core already
            c.rx += nbytes
            c.rx_packets += count
            if activity and self.timers.idle_timeout is not None:
                self.last_activity = now
        for p in payloads:
            ptype = p[0]
            if ptype == PacketType.COMPRESSED:
                packet = self._decompressed(self.dtls_comp, p[1:])
                if packet is None:
                    continue
                p = b"\x00" + packet
                ptype = 0
            if ptype == 0:
                c.rx += len(p) - 1
                c.rx_packets += 1
                packet = p[1:]
                to_tun.append(packet)
                if self.timers.idle_timeout is not None and _is_activity(packet):
                    self.last_activity = now
            elif ptype == PacketType.DPD_REQ:
                dtls.send([bytes((PacketType.DPD_RESP,)) + p[1:]])  # same length (5.6)
            elif ptype == PacketType.DISCONNECT:
                self._frame(ptype, p[1:])
        self._write_tun()

    def _dtls_socket(self, msg: ipc.DtlsSocket, fds: list[int]) -> None:
        """Main passed a socket connected to the client's (new) UDP address."""
        for fd in fds[1:]:
            os.close(fd)
        if self.dtls is None or not fds:
            if fds:
                os.close(fds[0])
            return
        self.dtls.new_socket(fds[0], bytes.fromhex(msg.first), msg.rebind)
        self._track_dtls()
        if msg.rebind and self.dtls.sock is not None:
            self._udp_in(self.dtls.sock)

    # --- control ------------------------------------------------------------------------------

    def _from_main(self) -> None:
        try:
            msg, fds = ipc.recv(self.main, accept=(ipc.DtlsSocket, ipc.Terminate))
        except (ipc.IpcError, OSError):
            self.reason = "server"
            return
        if isinstance(msg, ipc.DtlsSocket):
            self._dtls_socket(msg, fds)
            return
        for fd in fds:
            os.close(fd)
        if isinstance(msg, ipc.Terminate):
            log.info("terminated by the server: %s", msg.reason)
            if msg.send_bye:
                self.send_control(PacketType.DISCONNECT)
            self.reason = "server"

    def _shape(self, ep: select.epoll, now: float) -> float:
        """Arm or disarm the fds for backpressure and the bandwidth limits; returns how
        long the loop may sleep before a pause ends."""
        if self.rx_bucket is not None:
            rx = self.counters.rx
            if rx != self._rx_seen:
                wait = self.rx_bucket.take(rx - self._rx_seen, now)
                self._rx_seen = rx
                if wait:
                    self.rx_paused_until = now + wait
        tx_open = not self.out and now >= self.tx_paused_until
        rx_open = now >= self.rx_paused_until
        masks = (select.EPOLLIN if tx_open else 0,
                 (select.EPOLLIN if rx_open else 0) | (select.EPOLLOUT if self.out else 0),
                 select.EPOLLIN if rx_open else 0)
        if masks != self._masks:
            ep.modify(self.tun, masks[0])
            ep.modify(self.sock.fileno(), masks[1])
            for fd in self._udp:
                ep.modify(fd, masks[2])
            self._masks = masks
        pauses = [t - now for t in (self.tx_paused_until, self.rx_paused_until) if t > now]
        return min(pauses) if pauses else TICK

    _rx_seen = 0
    _masks = (select.EPOLLIN, select.EPOLLIN, select.EPOLLIN)

    def _check_timers(self, now: float) -> None:
        t = self.timers
        if self.use_udp and t.switch_to_tcp and now - self.udp_last_rx > t.switch_to_tcp:
            log.debug("no UDP traffic for %.0f s: sending over TLS", now - self.udp_last_rx)
            self.use_udp = False
        if t.session_deadline is not None and now >= t.session_deadline:
            log.info("session timeout reached")
            self.send_control(PacketType.DISCONNECT)
            self.reason = "session-timeout"
        elif t.idle_timeout is not None and now - self.last_activity >= t.idle_timeout:
            log.info("idle timeout reached")
            self.send_control(PacketType.DISCONNECT)
            self.reason = "idle"
        elif t.dpd > 0:
            silent = now - self.last_rx
            if silent >= 3 * t.dpd:
                log.info("peer silent for %.0f s: dead peer", silent)
                self.reason = "dpd"
            elif silent >= 2 * t.dpd and now - self.last_dpd_sent >= t.dpd:
                self.last_dpd_sent = now
                self.send_control(PacketType.DPD_REQ)

    def _report(self, final: bool = False) -> None:
        c = self.counters
        try:
            dtls = self.dtls
            ipc.send(self.main, ipc.WorkerStats(
                c.rx, c.tx, c.rx_packets, c.tx_packets, final=final, reason=self.reason,
                dtls_cipher=dtls.description if dtls is not None and dtls.established else "",
                udp_rx_packets=c.udp_rx_packets, udp_tx_packets=c.udp_tx_packets,
                compressed_rx=c.compressed_rx, compressed_tx=c.compressed_tx,
                channel="dtls" if self.use_udp else "tls",
                cstp_compression=self.cstp_comp.name if self.cstp_comp is not None else "",
                dtls_compression=self.dtls_comp.name if self.dtls_comp is not None else ""))
        except (OSError, ipc.IpcError):
            pass

    def run(self) -> str:
        """The event loop. Per wakeup it does only the I/O that is ready; timers and stats
        run at most every TICK seconds, because at high packet rates a wakeup may carry a
        single packet and any fixed per-wakeup work is paid per packet."""
        self.sock.setblocking(False)
        os.set_blocking(self.tun, False)
        ep = select.epoll()
        sock_fd = self.sock.fileno()
        tun_fd = self.tun
        ep.register(sock_fd, select.EPOLLIN)
        ep.register(tun_fd, select.EPOLLIN)
        ep.register(self.main.fileno(), select.EPOLLIN)
        self._ep = ep
        poll = ep.poll
        monotonic = time.monotonic
        tun_armed = True
        limited = self.rx_bucket is not None or self.tx_bucket is not None
        self._masks = (select.EPOLLIN, select.EPOLLIN, select.EPOLLIN)  # tun, tcp, udp
        next_tick = 0.0
        next_stats = monotonic() + STATS_INTERVAL
        timeout = TICK
        try:
            if self.pending_plain:
                self._handle_plain([self.pending_plain])
            while not self.reason:
                for fd, events in poll(timeout):
                    udp = self._udp.get(fd)
                    if udp is not None:
                        self._udp_in(udp)
                        # Writing to the TUN made the kernel answer at once (TCP ACKs):
                        # pick those up now rather than after another epoll round trip.
                        if tun_armed:
                            self._tun_to_tls()
                    elif fd == tun_fd:
                        self._tun_to_tls()
                    elif fd == sock_fd:
                        if events & select.EPOLLOUT:
                            self._flush()
                        if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                            self._tls_to_tun()
                            if tun_armed:
                                self._tun_to_tls()
                    else:
                        self._from_main()
                    if self.reason:
                        break
                if self.rl.pending:
                    self._queue(bytes(self.rl.pending))
                    self.rl.pending.clear()
                shape_wait = TICK
                if limited:
                    shape_wait = self._shape(ep, monotonic())
                    tun_armed = self._masks[0] != 0
                # backpressure: stop reading the TUN while TLS output is queued
                elif self.out:
                    if tun_armed:
                        ep.modify(tun_fd, 0)
                        ep.modify(sock_fd, select.EPOLLIN | select.EPOLLOUT)
                        tun_armed = False
                elif not tun_armed:
                    ep.modify(tun_fd, select.EPOLLIN)
                    ep.modify(sock_fd, select.EPOLLIN)
                    tun_armed = True
                now = monotonic()
                if now < next_tick:
                    timeout = min(next_tick - now, shape_wait)
                    continue
                next_tick = now + TICK
                timeout = shape_wait
                self._check_timers(now)
                if self.dtls is not None and self.dtls.hs is not None:
                    if now > self.dtls.hs_deadline:
                        self.dtls.on_handshake_timeout()  # abandons it
                        self._track_dtls()
                        continue
                    hs_timeout = self.dtls.handshake_timeout()
                    if hs_timeout is not None and hs_timeout <= 0:
                        self.dtls.on_handshake_timeout()
                        self._track_dtls()
                    elif hs_timeout is not None:
                        timeout = next_tick_at = min(TICK, hs_timeout)
                        next_tick = now + next_tick_at
                if now >= next_stats:
                    next_stats = now + STATS_INTERVAL
                    self._report()
        except TlsClosed:
            self.reason = self.reason or "temporary"
        except (TlsRecordError, CstpError, OSError) as exc:
            log.info("connection error: %s", exc)
            self.reason = "error"
        finally:
            self._ep = None
            ep.close()
            if self.dtls is not None:
                self.dtls.close()
        self._drain_output()
        self._report(final=True)
        return self.reason

    def _drain_output(self) -> None:
        """Best effort: let a final BYE reach the client before we close."""
        deadline = time.monotonic() + 1.0
        while self.out and time.monotonic() < deadline:
            try:
                select.select([], [self.sock], [], 0.2)
                self._flush()
            except OSError:
                break
