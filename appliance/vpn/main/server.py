"""The privileged main process: listeners, workers, sessions' leases and TUN devices, scripts.

It never parses client bytes (workers do) and never sees a password (the security module
does). A single-threaded selector loop, so that forking workers from it is safe; workers are
forked from this already-initialised process (docs/architecture.md, "Shared, frozen memory").
"""

from __future__ import annotations

import contextlib
import gc
import grp
import ipaddress
import logging
import os
import pwd
import selectors
import signal
import socket
import time
import traceback
from typing import NoReturn

from ...pki import load_cert, sha1_fingerprint_hex
from ...sdnotify import Notifier
from .. import ipc, unixpath
from ..config import OPTIONS, Config, ConfigError, load_config
from ..control import ControlServer
from ..protocol.dtls.handshake import make_dtls_context
from ..protocol.dtls.record import DtlsError, peek_client_hello
from ..secmod.server import run_secmod
from ..worker.dialogue import run_worker
from ..worker.errors import Peer
from .bans import BanSettings, BanTable
from .conn import Conn, WorkerFault
from .management import Management
from .netns import ListenNamespace
from .prewarm import prewarm
from .proxyintake import ProxyIntake
from .sandbox import CompiledFilter, apply_worker_sandbox, compile_worker_filter
from .sessions import TERMINATE_GRACE, Sessions
from .supervise import RestartBudget
from .udp import optional_sockopt, udp_socket_for
from .zygote import Zygote

log = logging.getLogger(__name__)

SECMOD_TIMEOUT = 5.0
# reloadable in ocserv, but here bound to state built at start (the lease pool, the DTLS
# context): changed values wait for a restart
RESTART_ONLY = {"ipv4-network", "ipv4-netmask", "ipv6-network", "ipv6-subnet-prefix",
                "predictable-ips",
                "dtls-psk", "use-occtl", "listen-proxy-proto"}


class Main:
    def __init__(self, cfg: Config, config_path: str, pid_file: str | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.pid_file = pid_file or cfg.pid_file  # -p on the command line wins, as in ocserv
        self.notifier = Notifier(None)  # systemd's, once run() starts (appliance.sdnotify)
        self.sel: selectors.BaseSelector = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}  # by pid
        self.by_chan: dict[int, Conn] = {}  # by channel fd
        self.started = time.time()
        self.pid = os.getpid()
        self.mgmt = Management(self)
        self.control: ControlServer | None = None
        self.stopping = False
        self.exit_code = 0  # non-zero: systemd's Restart=on-failure should start us again
        self.secmod_restarts = RestartBudget()
        self.reload_requested = False
        if cfg.server_cert is None:
            raise ConfigError("'server-cert' must be set")
        self.cert_sha1 = sha1_fingerprint_hex(load_cert(cfg.server_cert))
        self.listeners: list[socket.socket] = []
        self.udp_sockets: list[socket.socket] = []
        self.dtls_ctx = make_dtls_context() if cfg.udp_port else None
        self.listen_ns = ListenNamespace(cfg.listen_netns)  # before any fork or drop
        self.secmod_pid = 0
        self.worker_filter: CompiledFilter | None = None  # compiled in run()
        self.zygote: Zygote | None = None  # forks the workers (zygote.py); None: main does
        self.zygote_restarts = RestartBudget()
        self.secmod_chan: socket.socket | None = None
        self.secmod_events: socket.socket | None = None
        self.bans = BanTable(BanSettings.from_config(cfg))
        self.accept_paused_until = 0.0  # rate-limit-ms
        self.proxy_intake = ProxyIntake(self.sel, self._admit, _plain_ip) \
            if cfg.listen_proxy_proto else None  # restart-only: bound to the listeners
        # per instance, as ocserv derives its own: two servers sharing socket-file coexist
        self.secmod_path = f"{cfg.socket_file or '/run/ocgate-socket'}.{self.pid:x}.sec"
        self.worker_ids = worker_identity(cfg)  # resolved here: a chrooted worker has no /etc
        self.sessions = Sessions(self)
        self._wake_r, self._wake_w = socket.socketpair()

    # --- start-up -----------------------------------------------------------------------------

    def _listen(self) -> None:
        """TCP on listen-host, UDP on udp-listen-host (which defaults to it), each on every
        address the name resolves to, in the listen-netns namespace when that is set."""
        self._bind_all(self.cfg.listen_host, self.cfg.tcp_port, socket.SOCK_STREAM)
        if self.cfg.udp_port:
            self._bind_all(self.cfg.udp_listen_host, self.cfg.udp_port, socket.SOCK_DGRAM)

    def _bind_all(self, host: str | None, port: int, kind: int) -> None:
        host = host or "::"
        tcp = kind == socket.SOCK_STREAM
        for family, _, _, _, addr in socket.getaddrinfo(host, port, type=kind,
                                                        flags=socket.AI_PASSIVE):
            sock = self.listen_ns.socket(family, kind)
            optional_sockopt(sock, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1, "SO_REUSEADDR")
            if not tcp:
                optional_sockopt(sock, socket.SOL_SOCKET, socket.SO_REUSEPORT, 1,
                                 "SO_REUSEPORT")
            if family == socket.AF_INET6 and host == "::":
                optional_sockopt(sock, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0,
                                 "IPV6_V6ONLY")
            sock.bind(addr)
            sock.setblocking(False)
            if tcp:
                sock.listen(1024)
                self.listeners.append(sock)
                self.sel.register(sock, selectors.EVENT_READ, self._accept)
            else:
                self.udp_sockets.append(sock)
                self.sel.register(sock, selectors.EVENT_READ, self._udp_readable)
            log.info("listening on %s %s port %d", "TCP" if tcp else "UDP", addr[0], addr[1])
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
            except ConfigError as exc:  # e.g. server-key that does not open: file:line
                log.error("sec-mod cannot start: %s", exc)
                code = 1
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
            if os.waitpid(pid, os.WNOHANG)[0]:  # it said why (a key that does not load)
                self.secmod_pid = 0
                raise RuntimeError("the security module exited during start")
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
        # once here, not in every worker (sandbox.CompiledFilter says why)
        self.worker_filter = compile_worker_filter()
        prewarm()  # the sec-mod and every worker inherit warm code and caches (prewarm.py)
        gc.freeze()  # main's collector must not copy the pages it shares with the sec-mod
        try:
            self._start_secmod()
        except RuntimeError as exc:
            log.error("%s; not starting", exc)
            return 1
        self.sessions.acct.attach(self.sel)  # after the sec-mod fork: only workers must drop it
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
        self._start_zygote()  # and the zygote keeps it so (zygote.py)
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
                    self.sessions.sweep_leases(now)
                    self.sessions.poll_jobs(now)
                    self._kill_stragglers(now)
                    self.sessions.acct.tick(now)
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
            if self.zygote is not None:
                self._start_zygote()  # new workers get the new settings
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
        restart = _keep_restart_only(cfg, self.cfg)
        if set(cfg.vhosts) != set(self.cfg.vhosts):
            # the sec-mod's hosts (keys, back-ends) are made at start, as ocserv's
            cfg.vhosts = self.cfg.vhosts
            restart.append("[vhost:…] sections added or removed")
        for name, vcfg in cfg.vhosts.items():
            restart += [f"{option} in [vhost:{name}]"
                        for option in _keep_restart_only(vcfg, self.cfg.vhosts[name])]
        self.cfg = cfg
        self.bans.settings = BanSettings.from_config(cfg)
        message = f"configuration reloaded from {self.config_path}"
        if restart:
            message += "; needs a restart to change: " + ", ".join(restart)
        message += self._reload_tls()
        log.info("%s", message)
        return message

    def _reload_tls(self) -> str:
        """The sec-mod reads server-cert and server-key again (a renewed certificate, e.g.
        appliance/reach/acmecert.py); workers forked from now on name the new certificate."""
        reply = self.secmod_call(ipc.TlsReload())
        if isinstance(reply, ipc.TlsReloaded) and reply.ok:
            self.cert_sha1 = reply.cert_sha1
            return ""
        reason = reply.reason if isinstance(reply, ipc.TlsReloaded) else "sec-mod did not answer"
        return f"; server certificate not reloaded: {reason}"

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
                self.sessions.terminate(conn, "user logged out", invalidate=True)
        elif isinstance(msg, ipc.BadWorker):
            conn = self.conns.get(msg.pid)
            if conn is not None and not conn.bad:
                self._bad_worker(conn, f"to the sec-mod: {msg.reason}")

    def _start_zygote(self) -> None:
        """(Re)start the zygote from main as it is now: after start-up and after a reload,
        whose new settings the workers must get."""
        if self.zygote is not None:
            self.zygote.stop()
            self.zygote = None
        gc.collect()
        gc.freeze()  # what main made since its start, e.g. a reloaded configuration
        self.zygote = Zygote.start(self._zygote_child, self._worker_body)

    def _zygote_child(self) -> None:
        self._close_in_child()
        _reset_signals()
        self.conns.clear()  # their descriptors are closed here; no worker may touch them

    def _fork_worker(self, sock: socket.socket, remote_ip: str, remote_port: int,
                     local_ip: str, local_port: int) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        peer = [remote_ip, remote_port, local_ip, local_port]
        pid = self.zygote.spawn(sock, child, peer) if self.zygote is not None else None
        if pid is None:
            pid = os.fork()
            if pid == 0:
                try:
                    parent.close()
                    self._close_in_child()
                    _reset_signals()
                except BaseException:  # noqa: BLE001 - the child must never return into main
                    log.exception("worker failed")
                    os._exit(1)
                self._worker_body(sock, child, peer)
        sock.close()
        child.close()
        parent.setblocking(False)
        conn = Conn(pid=pid, chan=parent, remote_ip=remote_ip, local_ip=local_ip,
                    local_port=local_port)
        self.conns[pid] = conn
        self.by_chan[parent.fileno()] = conn
        self.sel.register(parent, selectors.EVENT_READ, self._from_worker)
        log.debug("worker %d serves %s", pid, remote_ip)

    def _worker_body(self, sock: socket.socket, child: socket.socket, peer: list) -> NoReturn:
        """A new worker, forked by main or by the zygote; never returns."""
        code = 1
        try:
            remote_ip, remote_port, local_ip, local_port = peer
            secmod = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            unixpath.connect(secmod, self.secmod_path)
            enter_chroot(self.cfg.chroot_dir)
            drop_privileges(self.worker_ids)
            apply_worker_sandbox(self.cfg, self.worker_filter)
            code = run_worker(self.cfg, sock, Peer(remote_ip, remote_port, local_ip,
                                                   local_port),
                              child, secmod, self.cert_sha1, self.dtls_ctx)
        except BaseException:  # noqa: BLE001 - the child must never return into main
            log.exception("worker failed")
        os._exit(code)

    def _close_in_child(self) -> None:
        if self.zygote is not None:
            self.zygote.chan.close()
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
        self.sessions.acct.close_in_child()
        self.listen_ns.close()
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
            self.sessions.connect(conn, msg)
        elif isinstance(msg, ipc.WorkerStats):
            if conn.state == "closing":
                return
            if conn.state not in ("connected", "terminating"):
                raise WorkerFault(f"WorkerStats while {conn.state}")
            conn.rx, conn.tx = msg.rx, msg.tx
            self.sessions.acct.stats(conn, msg)
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
            self.sessions.end(conn, conn.reason or "error")
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
        if self.zygote is not None:
            try:
                done, _ = os.waitpid(self.zygote.pid, os.WNOHANG)
            except ChildProcessError:
                done = self.zygote.pid
            if done:
                log.error("zygote %d died; main forks the workers until it is back",
                          self.zygote.pid)
                self.zygote.chan.close()
                self.zygote = None
                if not self.stopping and self.zygote_restarts.allow(time.monotonic()):
                    self._start_zygote()

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
                conn = self.sessions.by_app_id.get(hello.app_id)
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
            # a listener on one address (udp-listen-host) answers from it; a wildcard one
            # from the address the client's TLS connection came to
            bind_ip = local[0] if not ipaddress.ip_address(local[0]).is_unspecified \
                else conn.local_ip if sock.family == socket.AF_INET \
                else "::ffff:" + conn.local_ip if "." in conn.local_ip else conn.local_ip
            try:
                with self.listen_ns.entered():
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

    def terminate(self, conn: Conn, reason: str, invalidate: bool) -> None:
        self.sessions.terminate(conn, reason, invalidate)

    def _kill_stragglers(self, now: float) -> None:
        for conn in self.conns.values():
            if conn.state == "terminating" and conn.kill_at and now >= conn.kill_at:
                log.warning("worker %d did not exit after termination; killing it", conn.pid)
                conn.kill_at = 0.0
                try:
                    os.kill(conn.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


    # --- shutdown -----------------------------------------------------------------------------

    def shutdown(self) -> None:
        log.info("shutting down")
        self.notifier.stopping()
        for conn in list(self.conns.values()):
            if conn.state in ("connecting", "connected"):
                self.sessions.terminate(conn, "server shutdown", invalidate=True)
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
        for job in self.sessions.jobs:
            job.wait(2.0)
        if self.zygote is not None:
            self.zygote.stop()
            self.zygote = None
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


def _keep_restart_only(new: Config, old: Config) -> list[str]:
    """Give ``new`` the running value of every option only a restart can change that it
    changes; returns their names."""
    restart = [(spec.name, attr) for spec in OPTIONS.values()
               if (attr := spec.attr) is not None
               and (not spec.reloadable or spec.name in RESTART_ONLY)
               and getattr(new, attr, None) != getattr(old, attr, None)]
    for _name, attr in restart:
        setattr(new, attr, getattr(old, attr))
    return [name for name, _attr in restart]


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
