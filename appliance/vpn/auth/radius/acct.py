"""RADIUS accounting (``acct = radius[config=...]``): Start, Interim-Update and Stop
records for every session, sent from main's own selector loop.

main forks the workers, so it must not run threads; this is a small UDP client that main
polls: requests are resent from its 1 s sweep, fail over to the next server, and are
dropped (and logged) after the last try, so a dead accounting server never blocks or
grows main.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pyrad import packet as rpacket

from ..accounting import NullAccounting
from .auth import SERVICE_FRAMED, dictionary
from .conf import DEFAULT_RADCLI, RadiusConf, RadiusConfError, RadiusServer, load_radius_conf
from .supconfig import SessionAttrs

log = logging.getLogger(__name__)

MAX_ACCT_BACKLOG = 4096

# WorkerStats/Conn end reasons (ipc.py) -> Acct-Terminate-Cause, as ocserv maps its
# discon_reason values
TERMINATE_CAUSES = {
    "user": "User-Request",
    "idle": "Idle-Timeout",
    "session-timeout": "Session-Timeout",
    "dpd": "Lost-Carrier",
    "temporary": "Lost-Carrier",
    "server": "Admin-Reset",
    "error": "NAS-Error",
}



# --------------------------------------------------------------------------- accounting


@dataclass
class AcctSession:
    """One connected session as accounting sees it (main's Conn is not ours to extend)."""

    sid: str
    username: str
    remote_ip: str
    framed_ip: str
    classes: list[bytes]
    started: float  # wall clock, for Acct-Session-Time
    interval: int  # seconds between Interim-Updates; 0 = none
    next_interim: float  # monotonic
    rx: int = 0
    tx: int = 0
    rx_packets: int = 0
    tx_packets: int = 0


def build_acct_request(server: RadiusServer, nas_identifier: str, nas_ip: str,
                       session: AcctSession, status: str, now: float,
                       cause: str | None = None) -> rpacket.AcctPacket:
    """Accounting-Request as ocserv's acct/radius.c: Input = from the client (our rx)."""
    pkt = rpacket.AcctPacket(code=rpacket.AccountingRequest, secret=server.secret,
                             dict=dictionary())
    pkt["Acct-Status-Type"] = status
    pkt["User-Name"] = session.username
    pkt["Acct-Session-Id"] = session.sid
    pkt["Service-Type"] = SERVICE_FRAMED
    pkt["Framed-Protocol"] = "PPP"
    pkt["Calling-Station-Id"] = session.remote_ip
    if nas_identifier:
        pkt["NAS-Identifier"] = nas_identifier
    if nas_ip:
        pkt["NAS-IPv6-Address" if ":" in nas_ip else "NAS-IP-Address"] = nas_ip
    if session.framed_ip:
        pkt["Framed-IP-Address"] = session.framed_ip
    for value in session.classes:
        pkt.AddAttribute("Class", value)
    pkt["Acct-Authentic"] = "RADIUS"
    pkt["NAS-Port-Type"] = "Virtual"
    pkt["Event-Timestamp"] = int(now)
    if status != "Start":
        pkt["Acct-Session-Time"] = max(0, int(now - session.started))
        pkt["Acct-Input-Octets"] = session.rx & 0xFFFFFFFF
        pkt["Acct-Output-Octets"] = session.tx & 0xFFFFFFFF
        pkt["Acct-Input-Gigawords"] = (session.rx >> 32) & 0xFFFFFFFF
        pkt["Acct-Output-Gigawords"] = (session.tx >> 32) & 0xFFFFFFFF
        pkt["Acct-Input-Packets"] = session.rx_packets & 0xFFFFFFFF
        pkt["Acct-Output-Packets"] = session.tx_packets & 0xFFFFFFFF
    if cause is not None:
        pkt["Acct-Terminate-Cause"] = cause
    return pkt


@dataclass
class _Pending:
    pkt: rpacket.AcctPacket
    raw: bytes
    server: int  # index into acct_servers
    sent: int  # sends to that server so far
    deadline: float
    what: str  # for the log


class RadiusAccounting(NullAccounting):
    """acct = radius[config=FILE]: a small UDP client inside main's selector loop.

    Requests are retransmitted from ``tick`` (main's 1 s sweep) and fail over through the
    acctservers; main never waits for a RADIUS server.
    """

    def __init__(self, conf: RadiusConf, default_interval: int | None,
                 nas_identifier: str = "") -> None:
        if not conf.acct_servers:
            raise RadiusConfError("the RADIUS configuration has no 'acctserver'")
        self.conf = conf
        self.default_interval = default_interval or 0
        self.nas_identifier = nas_identifier or conf.nas_identifier
        self.sessions: dict[int, AcctSession] = {}  # by worker pid
        self.pending: dict[int, _Pending] = {}  # by RADIUS id
        self.backlog: deque[_Pending] = deque()
        self.sock: socket.socket | None = None
        self._next_id = int.from_bytes(os.urandom(1), "big")
        self.replies = 0  # Accounting-Responses received, for tests and the log
        self.lost = 0

    # --- main's hooks -----------------------------------------------------------------

    def attach(self, sel: Any) -> None:
        import selectors

        family = socket.AF_INET6 if ":" in self.conf.acct_servers[0].host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        sel.register(self.sock, selectors.EVENT_READ, self._readable)

    def close_in_child(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def started(self, conn: Any) -> None:
        attrs = SessionAttrs.from_wire(getattr(conn, "radius", None)) or SessionAttrs()
        interval = attrs.interim_interval or self.default_interval
        session = AcctSession(
            sid=conn.sid, username=conn.username, remote_ip=conn.remote_ip,
            framed_ip=conn.ipv4, classes=[bytes.fromhex(c) for c in attrs.classes],
            started=time.time(), interval=interval,
            next_interim=time.monotonic() + interval if interval else 0.0)
        self.sessions[conn.pid] = session
        self._send(session, "Start")

    def stats(self, conn: Any, msg: Any) -> None:
        session = self.sessions.get(conn.pid)
        if session is not None:
            session.rx, session.tx = msg.rx, msg.tx
            session.rx_packets, session.tx_packets = msg.rx_packets, msg.tx_packets

    def stopped(self, conn: Any, reason: str) -> None:
        session = self.sessions.pop(conn.pid, None)
        if session is None:
            return
        session.rx, session.tx = max(session.rx, conn.rx), max(session.tx, conn.tx)
        self._send(session, "Stop", TERMINATE_CAUSES.get(reason, "User-Request"))

    def tick(self, now: float) -> None:
        for session in self.sessions.values():
            if session.interval and now >= session.next_interim:
                session.next_interim = now + session.interval
                self._send(session, "Interim-Update")
        self._retransmit(now)

    # --- the UDP client -----------------------------------------------------------------

    def _send(self, session: AcctSession, status: str, cause: str | None = None) -> None:
        what = f"{status} of session {session.sid[:8]}"
        item = _Pending(self._packet(session, status, cause, 0), b"", 0, 0, 0.0, what)
        if len(self.pending) >= 256:
            if len(self.backlog) >= MAX_ACCT_BACKLOG:
                dropped = self.backlog.popleft()
                self.lost += 1
                log.error("RADIUS accounting backlog full; dropped %s", dropped.what)
            self.backlog.append(item)
            return
        self._transmit(item)
        log.debug("RADIUS accounting %s for '%s' sent", what, session.username)

    def _packet(self, session: AcctSession, status: str, cause: str | None,
                server: int) -> rpacket.AcctPacket:
        return build_acct_request(self.conf.acct_servers[server], self.nas_identifier,
                                  self.conf.nas_ip, session, status, time.time(), cause)

    def _free_id(self) -> int:
        for _ in range(256):
            self._next_id = (self._next_id + 1) % 256
            if self._next_id not in self.pending:
                return self._next_id
        raise RuntimeError("no free RADIUS id")  # callers check len(pending) first

    def _transmit(self, item: _Pending) -> None:
        """(Re)send ``item`` to its current server; a new server means a new encoding."""
        if item.sent == 0:
            item.pkt.id = self._free_id()
            if item.server:  # failing over: same attributes under the next server's secret
                item.pkt.secret = self.conf.acct_servers[item.server].secret
            item.raw = item.pkt.RequestPacket()
            self.pending[item.pkt.id] = item
        server = self.conf.acct_servers[item.server]
        item.sent += 1
        item.deadline = time.monotonic() + self.conf.timeout
        if self.sock is None:
            return
        try:
            self.sock.sendto(item.raw, (server.host, server.port))
        except OSError as exc:
            log.warning("RADIUS accounting to %s:%d: %s", server.host, server.port, exc)

    def _retransmit(self, now: float) -> None:
        for rid, item in list(self.pending.items()):
            if now < item.deadline:
                continue
            if item.sent < self.conf.retries:
                self._transmit(item)
                continue
            del self.pending[rid]
            if item.server + 1 < len(self.conf.acct_servers):
                item.server += 1
                item.sent = 0
                self._transmit(item)
                continue
            self.lost += 1
            log.error("RADIUS accounting %s lost: no acctserver answered", item.what)
        while self.backlog and len(self.pending) < 256:
            self._transmit(self.backlog.popleft())

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("RADIUS accounting receive: %s", exc)
                return
            if len(data) < 20:
                continue
            item = self.pending.get(data[1])
            if item is None:
                continue
            try:
                reply = item.pkt.CreateReply(packet=data)
            except rpacket.PacketError:
                continue
            if reply.code != rpacket.AccountingResponse or not item.pkt.VerifyReply(reply,
                                                                                    data):
                log.warning("RADIUS accounting reply for %s failed verification", item.what)
                continue
            del self.pending[item.pkt.id]
            self.replies += 1


def make_accounting(cfg: Any) -> NullAccounting:
    """The accounting hooks main calls: RADIUS when ``acct = radius[...]``, else no-ops."""
    method = getattr(cfg, "acct", None)
    if method is None:
        return NullAccounting()
    if method.name != "radius":
        log.warning("acct = %s is not supported; no accounting", method.name)
        return NullAccounting()
    conf = load_radius_conf(method.params.get("config") or DEFAULT_RADCLI)
    auth_params: dict[str, str] = next(
        (m.params for m in getattr(cfg, "auth", []) if m.name == "radius"), {})
    nas_identifier = method.params.get("nas-identifier") or auth_params.get("nas-identifier")
    return RadiusAccounting(conf, getattr(cfg, "stats_report_time", None),
                            nas_identifier=nas_identifier or "")
