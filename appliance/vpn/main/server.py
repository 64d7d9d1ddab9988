"""The privileged main process: listeners, workers, sessions' leases and TUN devices, scripts.

It never parses client bytes (workers do) and never sees a password (the security module
does). A single-threaded selector loop, so that forking workers from it is safe; workers are
forked from this already-initialised process (docs/architecture.md, "Shared, frozen memory").
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import grp
import ipaddress
import logging
import os
import pwd
import selectors
import shlex
import signal
import socket
import subprocess
import time
import traceback
from typing import Any

from ...pki import load_cert, sha1_fingerprint_hex
from ...sdnotify import Notifier
from .. import ipc, unixpath
from ..auth.accounting import NullAccounting
from ..auth.radius.supconfig import radius_user_config
from ..config import OPTIONS, Config, ConfigError, load_config, load_user_config
from ..control import ControlServer, make_event
from ..protocol import cstp
from ..protocol.cstp import CstpError
from ..protocol.dtls.handshake import make_dtls_context
from ..protocol.dtls.record import DtlsError, peek_client_hello
from ..secmod.server import run_secmod
from ..worker.dialogue import run_worker
from ..worker.errors import Peer
from . import firewall
from .bans import BanSettings, BanTable
from .conn import Conn
from .ipv6 import Ipv6Leases, grant_ipv6, offered_lease, script_ipv6, tun_ipv6
from .leases import Ipv4LeasePool, LeaseError
from .management import Management, user_info
from .proxyintake import ProxyIntake
from .sandbox import apply_worker_sandbox
from .scripts import ScriptJob, format_route, script_env
from .supervise import RestartBudget
from .tun import configure_tun, open_tun, remove_tun, tun_index
from .udp import optional_sockopt, udp_socket_for

log = logging.getLogger(__name__)

LEASE_SLACK = 15  # as the cookie (docs/protocol.md 7.6)
SECMOD_TIMEOUT = 5.0
SCRIPT_TIMEOUT = 30.0
TERMINATE_GRACE = 3.0  # seconds a terminated worker has to report and exit
INVALIDATING_REASONS = {"user", "session-timeout", "server"}
# reloadable in ocserv, but here bound to state built at start (the lease pool, the DTLS
# context): changed values wait for a restart
RESTART_ONLY = {"ipv4-network", "ipv4-netmask", "ipv6-network", "ipv6-subnet-prefix",
                "predictable-ips",
                "dtls-psk", "use-occtl", "listen-proxy-proto"}


class WorkerFault(Exception):
    """A well-formed message that no honest worker sends in its state (main's own
    checks, beyond the types ipc.py checks)."""


class Main:
    def __init__(self, cfg: Config, config_path: str, pid_file: str | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.pid_file = pid_file or cfg.pid_file  # -p on the command line wins, as in ocserv
        self.notifier = Notifier(None)  # systemd's, once run() starts (appliance.sdnotify)
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}  # by pid
        self.by_chan: dict[int, Conn] = {}  # by channel fd
        self.lease_expiry: dict[str, float] = {}
        self.jobs: list[ScriptJob] = []  # disconnect scripts nobody waits for
        self.started = time.time()
        self.pid = os.getpid()
        self.mgmt = Management(self)
        self.control: ControlServer | None = None
        self.stopping = False
        self.exit_code = 0  # non-zero: systemd's Restart=on-failure should start us again
        self.secmod_restarts = RestartBudget()
        self.reload_requested = False
        if cfg.server_cert is None or cfg.ipv4_network is None:  # load_config checks the pool
            raise ConfigError("'server-cert' and 'ipv4-network' must be set")
        self.cert_sha1 = sha1_fingerprint_hex(load_cert(cfg.server_cert))
        self.pool = Ipv4LeasePool(cfg.ipv4_network, predictable=cfg.predictable_ips)
        # config-per-user/group may give a user another ipv4-network: one pool per network
        self.pools: dict[ipaddress.IPv4Network, Ipv4LeasePool] = {cfg.ipv4_network: self.pool}
        self.lease_pool: dict[str, Ipv4LeasePool] = {}  # session id -> the pool it leases from
        self.leases6 = Ipv6Leases.from_config(cfg)
        self.listeners: list[socket.socket] = []
        self.udp_sockets: list[socket.socket] = []
        self.by_app_id: dict[bytes, Conn] = {}
        self.dtls_ctx = make_dtls_context() if cfg.udp_port else None
        self.secmod_pid = 0
        self.secmod_chan: socket.socket | None = None
        self.secmod_events: socket.socket | None = None
        self.bans = BanTable(BanSettings.from_config(cfg))
        self.accept_paused_until = 0.0  # rate-limit-ms
        self.proxy_intake = ProxyIntake(self.sel, self._admit, _plain_ip) \
            if cfg.listen_proxy_proto else None  # restart-only: bound to the listeners
        # per instance, as ocserv derives its own: two servers sharing socket-file coexist
        self.secmod_path = f"{cfg.socket_file or '/run/ocgate-socket'}.{self.pid:x}.sec"
        self.worker_ids = worker_identity(cfg)  # resolved here: a chrooted worker has no /etc
        self.acct = accounting_for(cfg)
        self._wake_r, self._wake_w = socket.socketpair()

    # --- start-up -----------------------------------------------------------------------------

    def _listen(self) -> None:
        hosts = [self.cfg.listen_host] if self.cfg.listen_host else ["::"]
        for host in hosts:
            for family, _, _, _, addr in socket.getaddrinfo(
                    host, self.cfg.tcp_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
                sock = socket.socket(family, socket.SOCK_STREAM)
                optional_sockopt(sock, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1,
                                 "SO_REUSEADDR")
                if family == socket.AF_INET6 and host == "::":
                    optional_sockopt(sock, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0,
                                     "IPV6_V6ONLY")
                sock.bind(addr)
                sock.listen(1024)
                sock.setblocking(False)
                self.listeners.append(sock)
                self.sel.register(sock, selectors.EVENT_READ, self._accept)
                log.info("listening on TCP %s port %d", addr[0], addr[1])
                break
        if not self.cfg.udp_port:
            return
        for host in hosts:
            for family, _, _, _, addr in socket.getaddrinfo(
                    host, self.cfg.udp_port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                optional_sockopt(sock, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1,
                                 "SO_REUSEADDR")
                optional_sockopt(sock, socket.SOL_SOCKET, socket.SO_REUSEPORT, 1,
                                 "SO_REUSEPORT")
                if family == socket.AF_INET6 and host == "::":
                    optional_sockopt(sock, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0,
                                     "IPV6_V6ONLY")
                sock.bind(addr)
                sock.setblocking(False)
                self.udp_sockets.append(sock)
                self.sel.register(sock, selectors.EVENT_READ, self._udp_readable)
                log.info("listening on UDP %s port %d", addr[0], addr[1])
                break

    def _start_secmod(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ev_parent, ev_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the security module
            code = 0
            try:
                parent.close()
                ev_parent.close()
                _reset_signals()
                self._close_in_child()  # a restarted sec-mod must not hold workers' fds
                # what it inherited stays shared with main: the collector never touches it
                # (else each full collection copies those pages; the soak saw +10 % USS)
                gc.freeze()
                run_secmod(self.cfg, self.secmod_path, child, ev_child)
            except BaseException:  # noqa: BLE001 - the child must never return into main
                log.exception("sec-mod failed")
                code = 1
            os._exit(code)
        child.close()
        ev_child.close()
        self.secmod_pid = pid
        self.secmod_chan = parent
        self.secmod_events = ev_parent
        ev_parent.setblocking(False)
        self.sel.register(ev_parent, selectors.EVENT_READ, self._secmod_event)
        # wait until it listens, so the first worker can connect
        deadline = time.monotonic() + 10
        while not os.path.exists(self.secmod_path):
            if time.monotonic() > deadline:
                raise RuntimeError("the security module did not start")
            time.sleep(0.01)

    def _signals(self) -> None:
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self._wake_r.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeups)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        elif signum == signal.SIGHUP:
            self.reload_requested = True

    def _drain_wakeups(self, sock: socket.socket) -> None:
        try:
            while sock.recv(4096):
                pass
        except BlockingIOError:
            pass

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        # before the first fork: children must not inherit NOTIFY_SOCKET
        self.notifier = Notifier.from_environ(unset_environment=True)
        self._listen()
        gc.freeze()  # main's collector must not copy the pages it shares with the sec-mod
        self._start_secmod()
        self.acct.attach(self.sel)  # after the sec-mod fork: only workers must drop it
        if self.cfg.use_occtl and self.cfg.occtl_socket_file:
            # after the sec-mod fork, so that only workers need to drop it
            self.control = ControlServer(self.cfg.occtl_socket_file, self.mgmt)
            self.control.register(self.sel)
        self._signals()
        if self.pid_file:
            with open(self.pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        gc.collect()
        gc.freeze()  # workers share what is already here instead of copying it on write
        log.info("OCGate VPN server started (pid %d)", os.getpid())
        self.notifier.ready(f"listening on port {self.cfg.tcp_port}")
        next_sweep = time.monotonic() + 1.0
        try:
            while not self.stopping:
                timeout = 1.0
                if self.accept_paused_until:
                    timeout = max(0.0, min(timeout, self.accept_paused_until - time.monotonic()))
                for key, _ in self.sel.select(timeout=timeout):
                    key.data(key.fileobj)
                if self.accept_paused_until and time.monotonic() >= self.accept_paused_until:
                    self._resume_accepting()
                self._reap()
                if self.reload_requested:
                    self.reload_requested = False
                    self.reload()
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + 1.0
                    self._sweep_leases(now)
                    self._poll_jobs(now)
                    self._kill_stragglers(now)
                    self.acct.tick(now)
                    if self.control is not None:
                        self.control.sweep()
                    if self.proxy_intake is not None:
                        self.proxy_intake.sweep(now)
        finally:
            self.shutdown()
        return self.exit_code

    def reload(self) -> str:
        """SIGHUP / occtl reload: new connections get the new settings, live sessions keep
        theirs; options that only a restart can apply are named, not half-applied."""
        self.notifier.reloading()
        try:
            return self._reload()
        finally:
            self.notifier.ready()

    def _reload(self) -> str:
        try:
            cfg = load_config(self.config_path)
        except (ConfigError, OSError) as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return f"reload failed: {exc}"
        for warning in cfg.warnings:
            log.warning("%s", warning)
        # (name, attribute) of the options whose new value waits for a restart; ignored
        # options feed no attribute
        restart = [(spec.name, attr) for spec in OPTIONS.values()
                   if (attr := spec.attr) is not None
                   and (not spec.reloadable or spec.name in RESTART_ONLY)
                   and getattr(cfg, attr, None) != getattr(self.cfg, attr, None)]
        for _name, attr in restart:
            setattr(cfg, attr, getattr(self.cfg, attr))
        self.cfg = cfg
        self.bans.settings = BanSettings.from_config(cfg)
        message = f"configuration reloaded from {self.config_path}"
        if restart:
            message += "; needs a restart to change: " + ", ".join(n for n, _a in restart)
        log.info("%s", message)
        return message

    # --- workers ------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            if self.proxy_intake is not None:  # listen-proxy-proto (main/proxyintake.py):
                self.proxy_intake.add(sock, _plain_ip(addr[0]), time.monotonic())
                continue  # admitted once its header names the real client
            local = sock.getsockname()
            self._admit(sock, _plain_ip(addr[0]), addr[1], _plain_ip(local[0]), local[1])
            if self.accept_paused_until:
                return

    def _admit(self, sock: socket.socket, remote_ip: str, remote_port: int, local_ip: str,
               local_port: int) -> None:
        """Bans, ban points, max-clients and rate-limit-ms for the client's address."""
        now = time.monotonic()
        if self.bans.banned(remote_ip, now):
            log.debug("refusing %s: banned", remote_ip)
            sock.close()
            return
        if self.bans.add(remote_ip, self.cfg.ban_points_connection, now):
            log.info("banning %s: too many connections", remote_ip)
        if self.cfg.max_clients and sum(
                1 for c in self.conns.values() if c.state != "closing") >= self.cfg.max_clients:
            log.info("refusing %s: max-clients (%d) reached", remote_ip, self.cfg.max_clients)
            sock.close()
            return
        self._fork_worker(sock, remote_ip, remote_port, local_ip, local_port)
        if self.cfg.rate_limit_ms and not self.accept_paused_until:
            self._pause_accepting(now + self.cfg.rate_limit_ms / 1000)

    def _pause_accepting(self, until: float) -> None:
        """rate-limit-ms: leave further connections in the backlog until ``until``."""
        self.accept_paused_until = until
        for listener in self.listeners:
            self.sel.unregister(listener)

    def _resume_accepting(self) -> None:
        self.accept_paused_until = 0.0
        for listener in self.listeners:
            self.sel.register(listener, selectors.EVENT_READ, self._accept)

    def _secmod_event(self, chan: socket.socket) -> None:
        """The sec-mod's notifications, all that are queued: a worker's ban points must be
        charged while main still knows that worker (before the reap of this loop turn)."""
        for _ in range(256):
            try:
                msg, fds = ipc.recv(chan, accept=ipc.SECMOD_EVENTS)
            except BlockingIOError:
                return
            except ipc.BadMessage as exc:
                log.error("the security module sent a bad event (%s)", exc)
                continue
            except (ipc.IpcError, OSError):
                self.sel.unregister(chan)
                return
            for fd in fds:
                os.close(fd)
            self._on_secmod_event(msg)

    def _on_secmod_event(self, msg: object) -> None:
        if isinstance(msg, ipc.BanPoints):
            # the worker's claim of its client's address is not taken: main knows it
            conn = self.conns.get(msg.pid)
            if conn is None:
                log.debug("ban points for worker %d, which is gone", msg.pid)
                return
            if self.bans.add(conn.remote_ip, msg.points, time.monotonic()):
                log.info("banning %s for %d s: %s", conn.remote_ip,
                         self.bans.settings.ban_time, msg.reason)
        elif isinstance(msg, ipc.SessionRevoked):  # logout while a tunnel is still up
            for conn in [c for c in self.conns.values() if c.sid == msg.sid
                         and c.state in ("connecting", "connected")]:
                self.terminate(conn, "user logged out", invalidate=True)
        elif isinstance(msg, ipc.BadWorker):
            conn = self.conns.get(msg.pid)
            if conn is not None and not conn.bad:
                self._bad_worker(conn, f"to the sec-mod: {msg.reason}")

    def _fork_worker(self, sock: socket.socket, remote_ip: str, remote_port: int,
                     local_ip: str, local_port: int) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                parent.close()
                self._close_in_child()
                _reset_signals()
                secmod = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                unixpath.connect(secmod, self.secmod_path)
                enter_chroot(self.cfg.chroot_dir)
                drop_privileges(self.worker_ids)
                apply_worker_sandbox(self.cfg)
                code = run_worker(self.cfg, sock, Peer(remote_ip, remote_port, local_ip,
                                                       local_port),
                                  child, secmod, self.cert_sha1, self.dtls_ctx)
            except BaseException:  # noqa: BLE001 - the child must never return into main
                log.exception("worker failed")
            os._exit(code)
        sock.close()
        child.close()
        parent.setblocking(False)
        conn = Conn(pid=pid, chan=parent, remote_ip=remote_ip, local_ip=local_ip,
                    local_port=local_port)
        self.conns[pid] = conn
        self.by_chan[parent.fileno()] = conn
        self.sel.register(parent, selectors.EVENT_READ, self._from_worker)
        log.debug("worker %d serves %s", pid, remote_ip)

    def _close_in_child(self) -> None:
        if self.control is not None:
            self.control.close_in_child()
        if self.proxy_intake is not None:
            self.proxy_intake.close_in_child()
        for sock in self.listeners + self.udp_sockets:
            sock.close()
        for conn in self.conns.values():
            conn.chan.close()
            if conn.tun_fd >= 0:
                os.close(conn.tun_fd)
        if self.secmod_chan is not None:
            self.secmod_chan.close()
        if self.secmod_events is not None:
            self.secmod_events.close()
        self._wake_r.close()
        self._wake_w.close()
        self.acct.close_in_child()
        self.sel.close()

    def _from_worker(self, chan: socket.socket) -> None:
        """One message from a worker. Whatever it sends, main goes on: a message that is
        not one a worker may send, or one that makes no sense in the worker's state, ends
        that worker's session (issue 15)."""
        conn = self.by_chan.get(chan.fileno())
        if conn is None:
            return
        try:
            msg, fds = ipc.recv(chan, accept=ipc.WORKER_TO_MAIN)
        except ipc.BadMessage as exc:
            self._bad_worker(conn, str(exc))
            return
        except (ipc.IpcError, OSError):
            self._worker_gone(conn)
            return
        for fd in fds:
            os.close(fd)
        try:
            self._worker_message(conn, msg)
        except WorkerFault as exc:
            self._bad_worker(conn, str(exc))
        except Exception as exc:  # noqa: BLE001 - a worker's message must never end main
            # where it failed, not the exception's text: that may quote the worker's values
            log.error("handling %s from worker %d failed (%s), at:\n%s", type(msg).__name__,
                      conn.pid, type(exc).__name__, "".join(traceback.format_tb(
                          exc.__traceback__)).rstrip())
            self._bad_worker(conn, "its message could not be handled", logged=True)

    def _worker_message(self, conn: Conn, msg: object) -> None:
        if isinstance(msg, ipc.ConnectRequest):
            if conn.state == "closing":
                return
            if conn.state != "auth":
                raise WorkerFault(f"ConnectRequest while {conn.state}")
            self._connect(conn, msg)
        elif isinstance(msg, ipc.WorkerStats):
            if conn.state == "closing":
                return
            if conn.state not in ("connected", "terminating"):
                raise WorkerFault(f"WorkerStats while {conn.state}")
            conn.rx, conn.tx = msg.rx, msg.tx
            self.acct.stats(conn, msg)
            conn.dtls_cipher = msg.dtls_cipher
            conn.compressed = (msg.compressed_rx, msg.compressed_tx)
            conn.compression = (msg.cstp_compression, msg.dtls_compression)
            if msg.final:
                conn.reason = msg.reason

    def _bad_worker(self, conn: Conn, why: str, logged: bool = False) -> None:
        """A worker sent what no honest worker sends: log it once (its pid, what was wrong,
        never a value), kill it and end its session as the server's doing, which
        invalidates the cookie and so releases the address lease at once (unless a newer
        connection took the session over, or the server already ended it)."""
        if conn.bad:
            return
        conn.bad = True
        if not logged:
            log.warning("worker %d sent a bad message %s; ending its session", conn.pid,
                        why if why.startswith("to the sec-mod") else f"to main ({why})")
        if self.conns.get(conn.pid) is conn:  # not yet reaped: the pid is still its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(conn.pid, signal.SIGKILL)
        if conn.state in ("connecting", "connected") and not conn.end_reason:
            # a session another connection took over stays that one's (lease and cookie)
            shared = any(c is not conn and c.sid == conn.sid and c.state in (
                "connecting", "connected") for c in self.conns.values())
            conn.end_reason = "temporary" if shared else "server"
        self._worker_gone(conn)

    def _worker_gone(self, conn: Conn) -> None:
        """The worker's channel closed: its connection is over."""
        try:
            self.sel.unregister(conn.chan)
        except (KeyError, ValueError):
            pass
        self.by_chan.pop(conn.chan.fileno(), None)
        conn.chan.close()
        if conn.state in ("connecting", "connected", "terminating"):
            self._end_session(conn, conn.reason or "error")
        conn.state = "closing"

    def _reap(self) -> None:
        for pid in list(self.conns):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                conn = self.conns.pop(pid)
                # its last report (final counters, why it ended) may still be queued: a
                # logout read as "error" would keep the cookie and lease (soak, issue #11)
                for _ in range(32):
                    if conn.chan.fileno() < 0:
                        break
                    self._from_worker(conn.chan)
                if conn.chan.fileno() >= 0:
                    self._worker_gone(conn)
                if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS:
                    log.error("worker %d killed by the seccomp filter (syscall not allowed)",
                              pid)
                elif os.WIFSIGNALED(status) and not conn.bad:
                    log.warning("worker %d killed by signal %d", pid, os.WTERMSIG(status))
        if self.secmod_pid:
            try:
                done, _ = os.waitpid(self.secmod_pid, os.WNOHANG)
            except ChildProcessError:
                done = self.secmod_pid
            if done:
                self._secmod_died()

    def _secmod_died(self) -> None:
        """Replace a crashed sec-mod so that live tunnels stay up (their cookies die with
        it: a client that reconnects logs in again); give up with an error, for the
        service manager to restart us, if it keeps dying (main/supervise.py)."""
        self.secmod_pid = 0
        for sock in (self.secmod_chan, self.secmod_events):
            if sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(sock)
                sock.close()
        self.secmod_chan = self.secmod_events = None
        if self.stopping or not self.secmod_restarts.allow(time.monotonic()):
            log.error("the security module exited; stopping with an error so that the "
                      "service manager restarts us")
            self.exit_code, self.stopping = 1, True
            return
        log.error("the security module exited; starting a new one (sessions stay up, "
                  "cookies issued before are void)")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.secmod_path)
        try:
            self._start_secmod()
        except (OSError, RuntimeError) as exc:
            log.error("cannot restart the security module (%s); stopping", exc)
            self.exit_code, self.stopping = 1, True

    # --- UDP ----------------------------------------------------------------------------------

    def _udp_readable(self, sock: socket.socket) -> None:
        """Datagrams nobody's connected socket claimed: new DTLS sessions and roaming peers.

        A ClientHello is routed by the App-ID in its session id (docs/protocol.md 5.7); anything
        else from an unknown address goes to the one session of that client IP, whose worker
        accepts it only if it decrypts (NAT rebinding).
        """
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("UDP receive: %s", exc)
                return
            try:
                hello = peek_client_hello(data)
            except DtlsError:
                continue
            now = time.monotonic()
            if hello is not None:
                if hello.zero_random:
                    continue
                conn = self.by_app_id.get(hello.app_id)
                rebind = False
            else:
                ip = _plain_ip(addr[0])
                matches = [c for c in self.conns.values()
                           if c.state == "connected" and c.app_id and c.remote_ip == ip]
                conn = matches[0] if len(matches) == 1 else None
                rebind = True
                if conn is not None and now - conn.udp_forwarded_at < 3.0:
                    continue  # ocserv's rate limit for re-forwarding one client
            if conn is None or conn.state not in ("connecting", "connected"):
                continue
            if hello is not None and now - conn.udp_forwarded_at < 0.5:
                continue  # the client retransmits its hello; one socket is enough
            conn.udp_forwarded_at = now
            local = sock.getsockname()
            bind_ip = conn.local_ip if sock.family == socket.AF_INET else (
                "::ffff:" + conn.local_ip if "." in conn.local_ip else conn.local_ip)
            try:
                fd = udp_socket_for((bind_ip, local[1]), addr, sock.family,
                                    self.cfg.try_mtu_discovery)
            except OSError as exc:
                log.warning("cannot open a UDP socket for %s: %s", addr[0], exc)
                continue
            try:
                ipc.send(conn.chan, ipc.DtlsSocket(data.hex(), rebind), [fd])
            except (OSError, ipc.IpcError):
                pass
            finally:
                os.close(fd)

    # --- the security module --------------------------------------------------------------

    def secmod_call(self, msg: object) -> object | None:
        """A request to the security module; None (logged) if it does not answer."""
        if self.secmod_chan is None:
            return None
        try:
            return ipc.call(self.secmod_chan, msg, SECMOD_TIMEOUT)
        except ipc.IpcError as exc:
            log.error("security module did not answer %s: %s", type(msg).__name__, exc)
            return None
        finally:
            self.secmod_chan.settimeout(None)

    def auth_failures(self) -> int:
        reply = self.secmod_call(ipc.SessionsQuery())
        return reply.auth_failures if isinstance(reply, ipc.SessionsList) else 0

    # --- CONNECT ------------------------------------------------------------------------------

    def _deny(self, conn: Conn, status: int, reason: str) -> None:
        log.info("CONNECT from %s refused: %s", conn.remote_ip, reason)
        try:
            ipc.send(conn.chan, ipc.ConnectGrant(ok=False, status=status, reason=reason))
        except (OSError, ipc.IpcError):
            pass

    def _connect(self, conn: Conn, req: ipc.ConnectRequest) -> None:
        cfg = self.cfg
        app_id = bytes.fromhex(req.dtls_app_id)
        if app_id:  # the worker's own random 32 bytes; another session's is a hijack
            holder = self.by_app_id.get(app_id)
            if len(app_id) != 32 or (holder is not None and holder is not conn):
                raise WorkerFault("ConnectRequest with an unusable DTLS App-ID")
        # the worker's word for the client's address is not needed: main accepted it
        info = self.secmod_call(ipc.SessionOpen(req.cookie, conn.remote_ip))
        if info is None:
            self._deny(conn, 503, "security module unavailable")
            return
        if not isinstance(info, ipc.SessionInfo) or not info.ok:
            self._deny(conn, 401, "cookie is not acceptable")
            return
        conn.sid, conn.username, conn.groupname = info.sid, info.username, info.groupname
        conn.radius = info.extra
        conn.hostname, conn.user_agent = req.hostname, req.user_agent
        conn.tls_description = req.tls_description
        conn.session_started = info.started
        conn.state = "connecting"
        for other in list(self.conns.values()):
            if other is not conn and other.sid == info.sid and other.state in (
                    "connecting", "connected"):
                log.info("session %s of '%s' taken over by a new connection from %s",
                         info.sid[:8], info.username, conn.remote_ip)
                self.terminate(other, "session taken over", invalidate=False)
        if cfg.max_same_clients and sum(
                1 for c in self.conns.values() if c is not conn and c.username == info.username
                and c.state in ("connecting", "connected")) >= cfg.max_same_clients:
            self._refuse_session(conn, f"max-same-clients ({cfg.max_same_clients}) reached")
            return
        try:
            user = radius_user_config(info.extra) or load_user_config(
                cfg, info.username, info.groupname or None)
        except (ConfigError, OSError) as exc:
            log.error("per-user configuration of '%s': %s", info.username, exc)
            self._refuse_session(conn, "per-user configuration error", status=503)
            return
        mobile = req.platform.lower().startswith(("android", "apple-ios"))
        settings = effective_settings(cfg, user, info.started, time.time(), mobile=mobile)
        explicit = getattr(user, "explicit_ipv4", None)
        pool = self._pool_for(getattr(user, "ipv4_network", None), info.sid)
        try:
            ipv4 = pool.acquire(info.sid, info.username, explicit)
            lease6 = self.leases6.acquire(info.sid, info.username, user)
        except LeaseError as exc:
            self._refuse_session(conn, f"no IP address available: {exc}")
            return
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
        if app_id:
            # registered before the grant: the client's ClientHello may follow the CONNECT
            # response immediately (docs/protocol.md 11, item 22)
            conn.app_id = app_id
            self.by_app_id[conn.app_id] = conn
        try:
            fd, device = open_tun(f"{cfg.device}%d", vnet_hdr=True)  # for worker/gro.py
            settings = dataclasses.replace(settings, base_mtu=base_mtu, mtu=mtu,
                                           vnet_hdr=True)
            configure_tun(device, local=pool.local_address, peer=ipv4, mtu=mtu,
                          **tun_ipv6(conn.lease6))
        except OSError as exc:
            log.error("cannot create a TUN device: %s", exc)
            self._refuse_session(conn, "TUN device creation failed", status=503)
            return
        conn.tun_fd, conn.device, conn.ipv4, conn.mtu = fd, device, str(ipv4), mtu
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
        conn.ipv4_local = str(pool.local_address)
        conn.iroutes = [str(r) for r in getattr(user, "iroute", None) or []]
        conn.routes, conn.no_routes = settings.routes, settings.no_routes
        conn.dns = settings.dns
        conn.settings = settings
        conn.pending_grant = ipc.ConnectGrant(
            ok=True, status=200, sid=info.sid, username=info.username,
            groupname=info.groupname, device=device, ipv4=str(ipv4),
            ipv4_local=str(pool.local_address),
            ipv4_netmask=str(pool.netmask), session_started=info.started,
            **grant_ipv6(lease6, conn.lease6),
            settings=settings)
        if cfg.connect_script:
            conn.script = ScriptJob(cfg.connect_script, self._script_env(conn, "connect"),
                                    timeout=SCRIPT_TIMEOUT)
            self.sel.register(conn.script, selectors.EVENT_READ,
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
        self.sel.unregister(job)
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
        self._iroutes(conn, self.cfg.route_add_cmd or "ip route add %{R} dev %{D}")
        log.info("'%s' connected from %s: %s on %s (session %s)", conn.username,
                 conn.remote_ip, conn.ipv4, conn.device, conn.sid[:8])
        if self.control is not None:
            self.control.publish_event(make_event("connect", user_info(self, conn)))

    def _pool_for(self, network: object, sid: str) -> Ipv4LeasePool:
        """The pool of a per-user ``ipv4-network`` (kept across reconnects of a session)."""
        if sid in self.lease_pool:
            return self.lease_pool[sid]
        if not network:
            return self.pool
        net = ipaddress.IPv4Network(str(network), strict=False)
        if net not in self.pools:
            self.pools[net] = Ipv4LeasePool(net, predictable=self.cfg.predictable_ips)
        return self.pools[net]

    def _iroutes(self, conn: Conn, template: str) -> None:
        """iroute: networks behind this client, routed to its TUN by route-add-cmd (main
        runs it as root; the default is ocserv's ``ip route add %{R} dev %{D}``)."""
        for route in conn.iroutes:
            net = ipaddress.ip_network(route, strict=False)
            cmd = (template.replace("%{RI}", str(net)).replace("%{R}", format_route(net))
                   .replace("%{D}", conn.device))
            try:
                done = subprocess.run(shlex.split(cmd), timeout=5, capture_output=True,
                                      text=True, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.error("iroute command %r failed: %s", cmd, exc)
                continue
            if done.returncode != 0:
                log.error("iroute command %r failed: %s", cmd, done.stderr.strip())

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
            if conn.device:
                try:
                    remove_tun(conn.device, index=conn.ifindex)
                except OSError as exc:
                    log.debug("removing %s: %s", conn.device, exc)
            conn.end_reason = "server" if invalidate else "temporary"
            conn.kill_at = time.monotonic() + TERMINATE_GRACE
            conn.state = "terminating"

    def _end_session(self, conn: Conn, reason: str) -> None:
        if conn.end_reason:  # the server ended it: that decides, not what the worker saw
            reason = conn.end_reason
        self._teardown(conn, invalidate=reason in INVALIDATING_REASONS and not
                       self.cfg.persistent_cookies,
                       run_disconnect=conn.state in ("connected", "terminating"), reason=reason)

    def _teardown(self, conn: Conn, *, invalidate: bool, run_disconnect: bool,
                  reason: str = "") -> None:
        if conn.script is not None:  # a connect-script still running: let it finish alone
            self.sel.unregister(conn.script)
            self.jobs.append(conn.script)
            conn.script = None
        if conn.tun_fd >= 0:
            os.close(conn.tun_fd)
            conn.tun_fd = -1
        if conn.app_id and self.by_app_id.get(conn.app_id) is conn:
            del self.by_app_id[conn.app_id]
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
        if run_disconnect and self.cfg.disconnect_script:
            duration = int(time.time() - conn.connected_at) if conn.connected_at else 0
            env = self._script_env(conn, "disconnect", (conn.rx, conn.tx, duration))
            self.jobs.append(ScriptJob(self.cfg.disconnect_script, env, timeout=SCRIPT_TIMEOUT))
        if run_disconnect:
            log.info("'%s' disconnected (%s): session %s, rx %d tx %d bytes, compressed "
                     "packets rx %d tx %d", conn.username, reason or "?", conn.sid[:8],
                     conn.rx, conn.tx, *conn.compressed)
            self.mgmt.stats.session_ended(conn, reason)
            self.acct.stopped(conn, reason)
            if self.control is not None:
                self.control.publish_event(make_event("disconnect", user_info(self, conn),
                                                      reason))
        if conn.sid:
            self._close_session(conn.sid, invalidate, conn.rx, conn.tx)
        conn.device = ""
        conn.state = "closing"

    def _close_session(self, sid: str, invalidate: bool, rx: int = 0, tx: int = 0) -> None:
        self.secmod_call(ipc.SessionClose(sid, invalidate, rx, tx))
        still_used = any(c.sid == sid and c.state in ("connecting", "connected")
                         for c in self.conns.values() if c.state != "closing")
        if invalidate:
            self._release(sid)
            self.lease_expiry.pop(sid, None)
        elif not still_used:
            self.lease_expiry[sid] = time.monotonic() + self.cfg.cookie_timeout + LEASE_SLACK

    def _sweep_leases(self, now: float) -> None:
        for sid, expiry in list(self.lease_expiry.items()):
            if expiry <= now:
                del self.lease_expiry[sid]
                if not any(c.sid == sid and c.state in ("connecting", "connected")
                           for c in self.conns.values()):
                    self._release(sid)

    def _release(self, sid: str) -> None:
        self.lease_pool.pop(sid, self.pool).release(sid)
        self.leases6.release(sid)

    def _kill_stragglers(self, now: float) -> None:
        for conn in self.conns.values():
            if conn.state == "terminating" and conn.kill_at and now >= conn.kill_at:
                log.warning("worker %d did not exit after termination; killing it", conn.pid)
                conn.kill_at = 0.0
                try:
                    os.kill(conn.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _poll_jobs(self, now: float) -> None:
        running = []
        for job in self.jobs:
            if job.poll(now) is None:
                running.append(job)
            else:
                job.close()
        self.jobs = running
        for conn in list(self.conns.values()):
            if conn.script is not None and conn.script.poll(now) is not None:
                self._connect_script_done(conn)

    def _script_env(self, conn: Conn, reason: str,
                    stats: tuple[int, int, int] | None = None) -> dict[str, str]:
        return script_env(
            reason=reason, username=conn.username, groupname=conn.groupname,
            hostname=conn.hostname, device=conn.device, user_agent=conn.user_agent,
            device_type="", platform="", ip_real=conn.remote_ip, ip_real_local=conn.local_ip,
            ip_local=conn.ipv4_local, ip_remote=conn.ipv4, worker_id=conn.pid,
            **script_ipv6(conn.lease6),
            routes=conn.routes, no_routes=conn.no_routes, dns=conn.dns, stats=stats)

    # --- shutdown -----------------------------------------------------------------------------

    def shutdown(self) -> None:
        log.info("shutting down")
        self.notifier.stopping()
        for conn in list(self.conns.values()):
            if conn.state in ("connecting", "connected"):
                self.terminate(conn, "server shutdown", invalidate=True)
            else:
                try:
                    os.kill(conn.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + TERMINATE_GRACE
        while self.conns and time.monotonic() < deadline:
            for key, _ in self.sel.select(timeout=0.05):
                if key.data == self._from_worker:
                    key.data(key.fileobj)
            self._reap()
        for pid in list(self.conns):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for job in self.jobs:
            job.wait(2.0)
        if self.secmod_pid:
            try:
                os.kill(self.secmod_pid, signal.SIGTERM)
                os.waitpid(self.secmod_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        if self.control is not None:
            self.control.close()
        for path in (self.secmod_path, self.pid_file):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass


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
    if cfg.acct is None:
        return NullAccounting()
    from ..auth.radius.acct import make_accounting  # imports pyrad

    return make_accounting(cfg)


def worker_identity(cfg: Config) -> tuple[int, int] | None:
    """The uid and gid workers run as: run-as-user/run-as-group, nobody and its group when
    unset. None when the server is not root (it cannot change ids; workers keep its own).

    Looked up once at start-up, in the full filesystem: an unknown user stops the server
    here, and a worker inside chroot-dir needs no /etc/passwd.
    """
    if os.getuid() != 0:
        if cfg.chroot_dir:
            raise SystemExit(f"chroot-dir = {cfg.chroot_dir} needs the server to start as root")
        return None
    user = cfg.run_as_user or "nobody"
    try:
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(cfg.run_as_group).gr_gid if cfg.run_as_group else pw.pw_gid
    except KeyError as exc:
        raise SystemExit(f"run-as-user/run-as-group: no such user or group {exc}") from None
    return pw.pw_uid, gid


def enter_chroot(directory: str | None) -> None:
    """chroot-dir, as ocserv does it: the worker (which parses everything a client sends)
    sees only that directory. Everything it needs is already open or imported: the sec-mod
    socket is connected, the modules are loaded by main before the fork."""
    if directory:
        os.chroot(directory)
        os.chdir("/")


def drop_privileges(ids: tuple[int, int] | None) -> None:
    """Workers run as the ids :func:`worker_identity` found, with no supplementary groups."""
    if ids is None:
        return
    uid, gid = ids
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _plain_ip(addr: str) -> str:
    """IPv4-mapped IPv6 addresses (dual-stack listener) shown as IPv4."""
    ip = ipaddress.ip_address(addr.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)
