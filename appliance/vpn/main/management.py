"""What occtl and the web UI see of the running server: main's state as control records.

Kept apart from server.py so that the event loop stays about processes and sockets; this
module only reads main's tables (and asks the security module for its sessions).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from .. import ipc
from ..control import BanInfo, SessionInfo, StatusInfo, UserInfo
from .bans import BanTable
from .conn import Conn
from .ipv6 import occtl_ipv6
from .scripts import format_route

log = logging.getLogger(__name__)

LIVE_STATES = ("connected", "connecting")


class MainView(Protocol):
    """The part of main (server.py's ``Main``) that management reads and drives; typed as
    a Protocol so this module does not import the server loop (no cycle)."""

    pid: int
    secmod_pid: int
    started: float
    conns: dict[int, Conn]
    bans: BanTable
    stopping: bool

    def auth_failures(self) -> int: ...

    def secmod_call(self, msg: object) -> object | None: ...

    def terminate(self, conn: Conn, reason: str, invalidate: bool) -> None: ...

    def reload(self) -> str: ...


@dataclass
class ServerStats:
    """Counters ocserv's ``show status`` reports, kept since the last reset."""

    last_reset: float = field(default_factory=time.time)
    sessions_handled: int = 0
    timed_out: int = 0
    timed_out_idle: int = 0
    closed_error: int = 0
    session_time_total: float = 0.0
    session_time_max: float = 0.0
    rx: int = 0
    tx: int = 0
    min_mtu: int = 0
    max_mtu: int = 0

    def session_ended(self, conn: Conn, reason: str) -> None:
        self.sessions_handled += 1
        self.rx += conn.rx
        self.tx += conn.tx
        if reason in ("dpd", "session-timeout"):
            self.timed_out += 1
        elif reason == "idle":
            self.timed_out_idle += 1
        elif reason == "error":
            self.closed_error += 1
        if conn.connected_at:
            duration = time.time() - conn.connected_at
            self.session_time_total += duration
            self.session_time_max = max(self.session_time_max, duration)
        if conn.mtu:
            self.min_mtu = min(self.min_mtu or conn.mtu, conn.mtu)
            self.max_mtu = max(self.max_mtu, conn.mtu)


def user_info(conn: Conn) -> UserInfo:
    s = conn.settings
    return UserInfo(
        id=conn.pid, username=conn.username, groupname=conn.groupname, vhost=conn.vhost,
        state="connected" if conn.state == "connected" else "pre-auth",
        device=conn.device, mtu=conn.mtu, remote_ip=conn.remote_ip, local_ip=conn.local_ip,
        ipv4=conn.ipv4, ptp_ipv4=conn.ipv4_local, **occtl_ipv6(conn.lease6),
        user_agent=conn.user_agent, rx=conn.rx, tx=conn.tx, connected_at=conn.connected_at,
        session_started_at=conn.session_started, dpd=s.dpd,
        keepalive=s.keepalive, hostname=conn.hostname,
        full_session_id=conn.sid, tls_ciphersuite=conn.tls_description,
        dtls_cipher=conn.dtls_cipher, cstp_compression=conn.compression[0],
        dtls_compression=conn.compression[1], dns=list(s.dns), nbns=list(s.nbns),
        split_dns=list(s.split_dns),
        routes=[format_route(r) for r in s.routes],
        no_routes=[format_route(r) for r in s.no_routes],
        iroutes=[format_route(r) for r in conn.iroutes],
        limit_rx=s.rx_per_sec, limit_tx=s.tx_per_sec,
        restrict_to_routes=s.restrict_routes,
        restrict_to_ports=[p.strip() for p in s.restrict_ports.split(",") if p.strip()])


class Management:
    """The ControlProvider (control/protocol.py) for main."""

    def __init__(self, main: MainView) -> None:
        self.main = main
        self.stats = ServerStats()

    def status(self) -> StatusInfo:
        m = self.main
        st = self.stats
        live = [c for c in m.conns.values() if c.state == "connected"]
        handled = st.sessions_handled
        return StatusInfo(
            server_pid=m.pid, secmod_pid=m.secmod_pid, up_since=m.started,
            active_sessions=len(live), total_sessions=len(live) + handled,
            total_auth_failures=m.auth_failures(), last_reset=st.last_reset,
            sessions_handled=handled, timed_out_sessions=st.timed_out,
            timed_out_idle_sessions=st.timed_out_idle, closed_error_sessions=st.closed_error,
            auth_failures=m.auth_failures(),
            avg_session_time=int(st.session_time_total / handled) if handled else 0,
            max_session_time=int(st.session_time_max), min_mtu=st.min_mtu,
            max_mtu=st.max_mtu, rx=st.rx + sum(c.rx for c in live),
            tx=st.tx + sum(c.tx for c in live),
            # the addresses `show ip bans` lists (ocserv 1.1.6 prints 0 here even then)
            banned_ips=sum(1 for _ip, _score, until in m.bans.points(time.monotonic())
                           if until is not None))

    def users(self) -> list[UserInfo]:
        m = self.main
        return [user_info(c) for c in sorted(m.conns.values(), key=lambda c: c.pid)
                if c.state == "connected"]

    def sessions(self) -> list[SessionInfo]:
        reply = self.main.secmod_call(ipc.SessionsQuery())
        if not isinstance(reply, ipc.SessionsList):
            return []
        return [SessionInfo(full_session_id=s.sid, username=s.username,
                            groupname=s.groupname, vhost=s.vhost or "default",
                            remote_ip=s.remote_ip,
                            created=s.created, expires=s.expires, in_use=s.in_use,
                            session_is_open=s.in_use > 0, tls_auth_ok=True)
                for s in reply.sessions]

    def bans(self) -> list[BanInfo]:
        now_mono, now = time.monotonic(), time.time()
        return [BanInfo(ip=ip, score=score,
                        expires=None if until is None else now + (until - now_mono))
                for ip, score, until in self.main.bans.points(now_mono)]

    def unban(self, ip: str) -> bool:
        return self.main.bans.unban(ip)

    def disconnect_user(self, name: str) -> int:
        conns = [c for c in self.main.conns.values()
                 if c.username == name and c.state in LIVE_STATES]
        for conn in conns:
            self.main.terminate(conn, "disconnected by the administrator", invalidate=True)
        return len(conns)

    def disconnect_id(self, id: int) -> bool:
        conn = self.main.conns.get(id)
        if conn is None or conn.state not in LIVE_STATES:
            return False
        self.main.terminate(conn, "disconnected by the administrator", invalidate=True)
        return True

    def reload(self) -> str:
        return self.main.reload()

    def stop(self) -> None:
        log.info("stop requested over the control socket")
        self.main.stopping = True
