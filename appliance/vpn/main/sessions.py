"""Sessions in main: CONNECT admission (cookie, leases, TUN, firewall, connect-script,
grant) and teardown (TUN, firewall, disconnect-script, cookie and lease release).

Apart from server.py, whose loop is about processes and sockets: this module decides what a
worker's CONNECT gets and undoes it when the connection ends. It reads the loop's state
through :class:`SessionHost`, so it does not import the server (no cycle).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import selectors
import time
from typing import Any, Protocol

from .. import ipc
from ..auth.accounting import NullAccounting
from ..auth.radius.supconfig import radius_user_config
from ..config import Config, ConfigError, load_user_config
from ..control import ControlServer, make_event
from ..protocol import cstp
from ..protocol.cstp import CstpError
from . import firewall, iroutes
from .conn import Conn, WorkerFault
from .ipv6 import Ipv6Leases, grant_ipv6, offered_lease, script_ipv6, tun_ipv6
from .leases import Ipv4LeasePool, LeaseError
from .management import Management, user_info
from .scripts import ScriptJob, script_env
from .tun import configure_tun, open_tun, remove_tun, tun_index

log = logging.getLogger(__name__)

LEASE_SLACK = 15  # as the cookie (docs/protocol.md 7.6)
SCRIPT_TIMEOUT = 30.0
TERMINATE_GRACE = 3.0  # seconds a terminated worker has to report and exit
INVALIDATING_REASONS = {"user", "session-timeout", "server"}


class SessionHost(Protocol):
    """What sessions need of the server loop (server.py's ``Main``)."""

    cfg: Config
    sel: selectors.BaseSelector
    conns: dict[int, Conn]
    control: ControlServer | None
    mgmt: Management

    def secmod_call(self, msg: object) -> object | None: ...


class Sessions:
    """Every session's addresses and devices, and the scripts run for them."""

    def __init__(self, host: SessionHost) -> None:
        cfg = host.cfg
        self.host = host
        # None for an IPv6-only server (ipv6-network without ipv4-network), as ocserv allows
        self.pool = Ipv4LeasePool(cfg.ipv4_network, predictable=cfg.predictable_ips) \
            if cfg.ipv4_network is not None else None
        # config-per-user/group may give a user another ipv4-network: one pool per network
        self.pools: dict[ipaddress.IPv4Network, Ipv4LeasePool] = {}
        if cfg.ipv4_network is not None and self.pool is not None:
            self.pools[cfg.ipv4_network] = self.pool
        self.lease_pool: dict[str, Ipv4LeasePool] = {}  # session id -> the pool it leases from
        self.lease_expiry: dict[str, float] = {}
        self.leases6 = Ipv6Leases.from_config(cfg)
        self.by_app_id: dict[bytes, Conn] = {}
        self.jobs: list[ScriptJob] = []  # disconnect scripts nobody waits for
        self.acct = accounting_for(cfg)

    # --- CONNECT ------------------------------------------------------------------------------

    def _deny(self, conn: Conn, status: int, reason: str) -> None:
        log.info("CONNECT from %s refused: %s", conn.remote_ip, reason)
        try:
            ipc.send(conn.chan, ipc.ConnectGrant(ok=False, status=status, reason=reason))
        except (OSError, ipc.IpcError):
            pass

    def connect(self, conn: Conn, req: ipc.ConnectRequest) -> None:
        cfg = self.host.cfg
        app_id = bytes.fromhex(req.dtls_app_id)
        if app_id:  # the worker's own random 32 bytes; another session's is a hijack
            holder = self.by_app_id.get(app_id)
            if len(app_id) != 32 or (holder is not None and holder is not conn):
                raise WorkerFault("ConnectRequest with an unusable DTLS App-ID")
        # the worker's word for the client's address is not needed: main accepted it
        info = self.host.secmod_call(ipc.SessionOpen(req.cookie, conn.remote_ip))
        if info is None:
            self._deny(conn, 503, "security module unavailable")
            return
        if not isinstance(info, ipc.SessionInfo) or not info.ok:
            self._deny(conn, 401, "cookie is not acceptable")
            return
        conn.sid, conn.username, conn.groupname = info.sid, info.username, info.groupname
        # the host the session logged in to serves it (ocserv: the sec-mod's word on the
        # cookie, not this connection's SNI): its per-user dirs, pool, DNS and routes
        cfg = self.host.cfg.vhost(info.vhost)
        conn.vhost = cfg.label
        conn.radius = info.extra
        conn.hostname, conn.user_agent = req.hostname, req.user_agent
        # the scripts see what the login request named, as in ocserv (docs/protocol.md 8.3)
        conn.device_type, conn.platform = info.device_type, info.platform
        conn.tls_description = req.tls_description
        conn.session_started = info.started
        conn.state = "connecting"
        for other in list(self.host.conns.values()):
            if other is not conn and other.sid == info.sid and other.state in (
                    "connecting", "connected"):
                log.info("session %s of '%s' taken over by a new connection from %s",
                         info.sid[:8], info.username, conn.remote_ip)
                self.terminate(other, "session taken over", invalidate=False)
        try:
            user = radius_user_config(info.extra) or load_user_config(
                cfg, info.username, info.groupname or None)
        except (ConfigError, OSError) as exc:
            log.error("per-user configuration of '%s': %s", info.username, exc)
            self._refuse_session(conn, "per-user configuration error", status=503)
            return
        # the user file's value, else the group file's, else the global one; 0 = no limit
        limit = user_setting(cfg, user, "max_same_clients")
        if limit and sum(
                1 for c in self.host.conns.values() if c is not conn and c.username == info.username
                and c.state in ("connecting", "connected")) >= limit:
            self._refuse_session(conn, f"max-same-clients ({limit}) reached")
            return
        # mobile-dpd / mobile-idle-timeout follow the CONNECT's own platform header: ocserv
        # 1.1.6 decides so (a cookie from an android login used by linux-64 gets dpd)
        mobile = req.platform.lower().startswith(("android", "apple-ios"))
        settings = effective_settings(cfg, user, info.started, time.time(), mobile=mobile)
        explicit = getattr(user, "explicit_ipv4", None)
        own_pool = cfg.ipv4_network if cfg is not self.host.cfg else None
        pool = self._pool_for(getattr(user, "ipv4_network", None) or own_pool, info.sid,
                              cfg.predictable_ips)
        try:
            ipv4 = pool.acquire(info.sid, info.username, explicit) if pool else None
            # a virtual host has no IPv6 pool (config/vhost.py refuses one in a section)
            lease6 = self.leases6.acquire(info.sid, info.username, user) \
                if cfg is self.host.cfg else None
        except LeaseError as exc:
            self._refuse_session(conn, f"no IP address available: {exc}")
            return
        if pool is not None:
            self.lease_pool[info.sid] = pool
        self.lease_expiry.pop(info.sid, None)
        try:
            base_mtu, mtu = cstp.compute_mtu(
                base_mtu=req.base_mtu, requested_mtu=req.requested_mtu,
                link_mtu=user_setting(cfg, user, "mtu"), tcp_pmtu=req.tcp_pmtu,
                peer_is_ipv6=req.peer_ipv6, have_ipv6_pool=lease6 is not None,
                dtls_overhead=(req.dtls_overhead or cstp.dtls_crypto_overhead("AES-256-GCM"))
                if app_id else 0)
        except CstpError as exc:
            log.error("CONNECT of '%s': %s", info.username, exc)
            self._refuse_session(conn, "no usable MTU", status=503)
            return
        conn.lease6 = offered_lease(lease6, mtu, info.username)
        if ipv4 is None and conn.lease6 is None:  # IPv6-only, and the MTU is below 1280
            self._refuse_session(conn, "no IP address available: no IPv4 pool, and no IPv6 "
                                 f"below an MTU of 1280 (MTU {mtu})", status=503)
            return
        if app_id:
            # registered before the grant: the client's ClientHello may follow the CONNECT
            # response immediately (docs/protocol.md 11, item 22)
            conn.app_id = app_id
            self.by_app_id[conn.app_id] = conn
        try:
            fd, device = open_tun(f"{cfg.device}%d", vnet_hdr=True)  # for worker/gro.py
            settings = dataclasses.replace(settings, base_mtu=base_mtu, mtu=mtu,
                                           vnet_hdr=True)
            configure_tun(device, local=pool.local_address if pool else None, peer=ipv4, mtu=mtu,
                          **tun_ipv6(conn.lease6))
        except OSError as exc:
            log.error("cannot create a TUN device: %s", exc)
            self._refuse_session(conn, "TUN device creation failed", status=503)
            return
        conn.tun_fd, conn.device, conn.ipv4, conn.mtu = fd, device, str(ipv4 or ""), mtu
        conn.ifindex = tun_index(device)
        try:
            restrict(device, settings)
        except firewall.FirewallError as exc:
            log.error("cannot restrict '%s': %s", info.username, exc)
            os.close(fd)
            remove_tun(device)
            self._refuse_session(conn, "firewall restrictions failed", status=503)
            return
        conn.restricted = bool(settings.restrict_routes or settings.restrict_ports)
        conn.ipv4_local = str(pool.local_address) if pool and ipv4 else ""
        conn.iroutes = [str(r) for r in getattr(user, "iroute", None) or []]
        conn.routes, conn.no_routes = settings.routes, settings.no_routes
        conn.dns = settings.dns
        conn.settings = settings
        conn.pending_grant = ipc.ConnectGrant(
            ok=True, status=200, sid=info.sid, username=info.username,
            groupname=info.groupname, device=device, ipv4=conn.ipv4,
            ipv4_local=conn.ipv4_local,
            ipv4_netmask=str(pool.netmask) if pool and ipv4 else "",
            session_started=info.started,
            **grant_ipv6(lease6, conn.lease6),
            settings=settings)
        if cfg.connect_script:
            conn.script = ScriptJob(cfg.connect_script, self._script_env(conn, "connect"),
                                    timeout=SCRIPT_TIMEOUT)
            self.host.sel.register(conn.script, selectors.EVENT_READ,
                              lambda _job, c=conn: self._connect_script_done(c))
        else:
            self._grant(conn)

    def _connect_script_done(self, conn: Conn) -> None:
        job = conn.script
        if job is None:
            return
        code = job.poll(time.monotonic())
        if code is None:
            return
        self.host.sel.unregister(job)
        job.close()
        conn.script = None
        if conn.state != "connecting":
            return
        if code != 0:
            log.info("connect-script refused '%s' (exit %d)", conn.username, code)
            self._teardown(conn, invalidate=False, run_disconnect=False)
            self._deny(conn, 401, "connect-script failed")
            return
        self._grant(conn)

    def _grant(self, conn: Conn) -> None:
        grant = conn.pending_grant
        assert grant is not None
        cfg = self.host.cfg
        if conn.iroutes:
            if not iroutes.apply(cfg.route_add_cmd, cfg.route_del_cmd, conn.iroutes,
                                 conn.device):
                log.error("could not apply the iroutes of '%s'; denying access", conn.username)
                conn.pending_grant = None
                self._teardown(conn, invalidate=False, run_disconnect=False)
                self._deny(conn, 503, "iroutes could not be applied")
                return
            conn.iroutes_applied = True
        try:
            ipc.send(conn.chan, grant, [conn.tun_fd])
        except OSError as exc:
            log.info("worker %d went away before its grant: %s", conn.pid, exc)
        except ipc.IpcError as exc:  # our own settings out of bounds: a bug, not the user's
            log.error("cannot grant the session of '%s': %s", conn.username, exc)
            conn.pending_grant = None
            self._teardown(conn, invalidate=False, run_disconnect=False)
            self._deny(conn, 503, "session settings out of bounds")
            return
        os.close(conn.tun_fd)
        conn.tun_fd = -1
        conn.pending_grant = None
        conn.state = "connected"
        conn.connected_at = time.time()
        self.acct.started(conn)
        log.info("'%s' connected from %s: %s on %s (session %s)", conn.username,
                 conn.remote_ip, conn.ipv4, conn.device, conn.sid[:8])
        if self.host.control is not None:
            self.host.control.publish_event(make_event("connect", user_info(conn)))

    def _pool_for(self, network: object, sid: str,
                  predictable: bool = True) -> Ipv4LeasePool | None:
        """The pool of a per-user ``ipv4-network`` (kept across reconnects of a session);
        None when neither the user nor the server has an IPv4 pool."""
        if sid in self.lease_pool:
            return self.lease_pool[sid]
        if not network:
            return self.pool
        net = ipaddress.IPv4Network(str(network), strict=False)
        if net not in self.pools:
            self.pools[net] = Ipv4LeasePool(net, predictable=predictable)
        return self.pools[net]

    def _remove_iroutes(self, conn: Conn) -> None:
        """route-del-cmd for the routes route-add-cmd set, while the TUN still exists."""
        if conn.iroutes_applied:
            conn.iroutes_applied = False
            iroutes.remove(self.host.cfg.route_del_cmd, conn.iroutes, conn.device)

    def _refuse_session(self, conn: Conn, reason: str, status: int = 401) -> None:
        self._close_session(conn.sid, invalidate=False)
        conn.state = "auth"
        conn.sid = ""
        self._deny(conn, status, reason)

    def terminate(self, conn: Conn, reason: str, invalidate: bool) -> None:
        """End a live connection (takeover, admin kick, shutdown).

        Its TUN goes at once (a takeover reuses the address), but the session is closed
        and the disconnect-script run only when the worker's final counters arrive.
        """
        try:
            ipc.send(conn.chan, ipc.Terminate(reason))
        except (OSError, ipc.IpcError):
            pass
        if conn.state in ("connecting", "connected"):
            self._remove_iroutes(conn)
            if conn.device:
                try:
                    remove_tun(conn.device, index=conn.ifindex)
                except OSError as exc:
                    log.debug("removing %s: %s", conn.device, exc)
            conn.end_reason = "server" if invalidate else "temporary"
            conn.kill_at = time.monotonic() + TERMINATE_GRACE
            conn.state = "terminating"

    def end(self, conn: Conn, reason: str) -> None:
        if conn.end_reason:  # the server ended it: that decides, not what the worker saw
            reason = conn.end_reason
        self._teardown(conn, invalidate=reason in INVALIDATING_REASONS and not
                       self.host.cfg.persistent_cookies,
                       run_disconnect=conn.state in ("connected", "terminating"), reason=reason)

    def _teardown(self, conn: Conn, *, invalidate: bool, run_disconnect: bool,
                  reason: str = "") -> None:
        if conn.script is not None:  # a connect-script still running: let it finish alone
            self.host.sel.unregister(conn.script)
            self.jobs.append(conn.script)
            conn.script = None
        if conn.tun_fd >= 0:
            os.close(conn.tun_fd)
            conn.tun_fd = -1
        if conn.app_id and self.by_app_id.get(conn.app_id) is conn:
            del self.by_app_id[conn.app_id]
        self._remove_iroutes(conn)
        if conn.device:
            try:
                remove_tun(conn.device, index=conn.ifindex)
            except OSError as exc:
                log.debug("removing %s: %s", conn.device, exc)
        if conn.restricted:
            conn.restricted = False
            try:
                firewall.apply(firewall.removal(conn.device))
            except firewall.FirewallError as exc:
                log.error("removing the firewall rules of %s: %s", conn.device, exc)
        if run_disconnect and self.host.cfg.disconnect_script:
            duration = int(time.time() - conn.connected_at) if conn.connected_at else 0
            env = self._script_env(conn, "disconnect", (conn.rx, conn.tx, duration))
            self.jobs.append(ScriptJob(self.host.cfg.disconnect_script, env,
                                       timeout=SCRIPT_TIMEOUT))
        if run_disconnect:
            log.info("'%s' disconnected (%s): session %s, rx %d tx %d bytes, compressed "
                     "packets rx %d tx %d", conn.username, reason or "?", conn.sid[:8],
                     conn.rx, conn.tx, *conn.compressed)
            self.host.mgmt.stats.session_ended(conn, reason)
            self.acct.stopped(conn, reason)
            if self.host.control is not None:
                self.host.control.publish_event(make_event("disconnect", user_info(conn),
                                                      reason))
        if conn.sid:
            self._close_session(conn.sid, invalidate, conn.rx, conn.tx)
        conn.device = ""
        conn.state = "closing"

    def _close_session(self, sid: str, invalidate: bool, rx: int = 0, tx: int = 0) -> None:
        self.host.secmod_call(ipc.SessionClose(sid, invalidate, rx, tx))
        still_used = any(c.sid == sid and c.state in ("connecting", "connected")
                         for c in self.host.conns.values() if c.state != "closing")
        if invalidate:
            self._release(sid)
            self.lease_expiry.pop(sid, None)
        elif not still_used:
            self.lease_expiry[sid] = time.monotonic() + self.host.cfg.cookie_timeout + LEASE_SLACK

    def sweep_leases(self, now: float) -> None:
        for sid, expiry in list(self.lease_expiry.items()):
            if expiry <= now:
                del self.lease_expiry[sid]
                if not any(c.sid == sid and c.state in ("connecting", "connected")
                           for c in self.host.conns.values()):
                    self._release(sid)

    def _release(self, sid: str) -> None:
        pool = self.lease_pool.pop(sid, None)
        if pool is not None:
            pool.release(sid)
        self.leases6.release(sid)

    def poll_jobs(self, now: float) -> None:
        running = []
        for job in self.jobs:
            if job.poll(now) is None:
                running.append(job)
            else:
                job.close()
        self.jobs = running
        for conn in list(self.host.conns.values()):
            if conn.script is not None and conn.script.poll(now) is not None:
                self._connect_script_done(conn)

    def _script_env(self, conn: Conn, reason: str,
                    stats: tuple[int, int, int] | None = None) -> dict[str, str]:
        return script_env(
            reason=reason, username=conn.username, groupname=conn.groupname,
            hostname=conn.hostname, device=conn.device, user_agent=conn.user_agent,
            device_type=conn.device_type, platform=conn.platform, vhost=conn.vhost,
            ip_real=conn.remote_ip, ip_real_local=conn.local_ip,
            ip_local=conn.ipv4_local or None, ip_remote=conn.ipv4 or None, worker_id=conn.pid,
            **script_ipv6(conn.lease6),
            routes=conn.routes, no_routes=conn.no_routes, dns=conn.dns, stats=stats)



def user_setting(cfg: Config, user: object, name: str) -> Any:
    """A config-per-user/group value (or RADIUS's), else the global option."""
    value = getattr(user, name, None)
    return getattr(cfg, name) if value in (None, []) else value


def effective_settings(cfg: Config, user: object, session_started: float,
                       now: float, mobile: bool = False) -> ipc.SessionSettings:
    """Global options overridden by config-per-user/group values (lists replace lists).

    Mobile clients (X-AnyConnect-Identifier-Platform android/apple-ios) get mobile-dpd and
    mobile-idle-timeout instead, as with ocserv (docs/protocol.md 7.2, 7.3). The MTUs are
    main's to compute at CONNECT (``user_setting(cfg, user, "mtu")`` is the link MTU).
    """

    def pick(name: str) -> Any:
        return user_setting(cfg, user, name)

    routes = pick("route")
    no_routes = pick("no_route")
    session_timeout = pick("session_timeout")
    remaining = None
    if session_timeout:
        remaining = max(0, int(session_timeout - (now - session_started)))
    # only an IPv4 default route means full tunnel (ocserv); ::/0 is sent as an IPv6 route
    full = not routes or any(r.prefixlen == 0 and r.version == 4 for r in routes)
    return ipc.SessionSettings(
        dns=[str(d) for d in pick("dns")],
        nbns=[str(d) for d in pick("nbns")],
        split_dns=list(pick("split_dns")),
        default_domain=cfg.default_domain,
        routes=[] if full else [str(r) for r in routes],
        no_routes=[str(r) for r in no_routes],
        tunnel_all_dns=True if full else bool(pick("tunnel_all_dns")),
        keepalive=pick("keepalive"),
        dpd=(pick("mobile_dpd") or pick("dpd")) if mobile else pick("dpd"),
        idle_timeout=(pick("mobile_idle_timeout") or pick("idle_timeout")) if mobile
        else pick("idle_timeout"),
        session_timeout=session_timeout,
        session_remaining=remaining,
        rekey_time=cfg.rekey_time,
        rekey_method="new-tunnel",  # our record layer cannot renegotiate TLS 1.2
        banner=cfg.banner,
        switch_to_tcp=cfg.switch_to_tcp_timeout,
        restrict_routes=bool(pick("restrict_user_to_routes")),
        restrict_ports=pick("restrict_user_to_ports") or "",
        rx_per_sec=pick("rx_data_per_sec") or 0,
        tx_per_sec=pick("tx_data_per_sec") or 0,
    )


def restrict(device: str, settings: ipc.SessionSettings) -> None:
    """restrict-user-to-routes/ports through the host firewall (main/firewall.py)."""
    ports = settings.restrict_ports
    firewall.apply(firewall.ruleset(
        device, settings.routes, settings.dns, settings.restrict_routes,
        firewall.parse_ports(ports) if ports else None))


def accounting_for(cfg: Config) -> NullAccounting:
    """The accounting hooks main calls: no-ops without an ``acct`` line.  RADIUS accounting
    is imported only when configured, so a server without it never loads pyrad."""
    if cfg.acct is None or cfg.acct.name != "radius":  # acct = pam: the sec-mod's
        return NullAccounting()
    from ..auth.radius.acct import make_accounting  # imports pyrad

    return make_accounting(cfg)
