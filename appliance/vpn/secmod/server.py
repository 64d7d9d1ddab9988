"""The security module: the only process that reads credentials and owns the cookie store.

Workers ask it to authenticate a user (one answer at a time) and get back a cookie; main
asks it whether a cookie names a live session. Everything it answers is a verdict, so a
compromised worker learns nothing it could not learn by trying passwords over the network.

It also runs every TLS handshake (the private key lives only here), so it is the one that
sees a client certificate verified: the identity it carries is kept in the state of the
worker connection that asked for the handshake and is never taken from a worker's word.
Password back-ends run as conversations (auth/base.py); PAM's run in threads, so a
worker waiting for PAM gets its answer later, when the conversation produces it.
"""

from __future__ import annotations

import logging
import os
import select
import selectors
import socket
import struct
import time
import traceback
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL

from ...reach.challenges import store_beside
from .. import ipc, unixpath
from ..auth.base import CertError
from ..auth.cert import cert_identity
from ..auth.registry import AuthSetup
from ..config import Config
from ..protocol.tls.clienthello import HelloInfo
from ..protocol.tls.handshake import HandshakeError, HandshakeResult, ServerHandshake
from .acmealpn import AcmeAlpn
from .anyconnect import CertGate, ProfileCache, connect_needs_cert, profile_answer
from .cookies import Session, SessionStore
from .login import AuthState, Login
from .memtrim import release_memory
from .vhosts import HostTls, host_name_for, load_hosts

log = logging.getLogger(__name__)

MAX_PASSWORD_TRIES = 3
HANDSHAKE_TIMEOUT = 20.0  # seconds a client has to complete the TLS handshake
MAX_HANDSHAKES = 512  # concurrent handshakes; beyond that new ones are refused at once
AUTH_SLACK = 15  # seconds of grace ocserv adds to cookie validity (docs/protocol.md 7.6)
BACKEND_WAIT = 60.0  # seconds a worker may wait for a back-end (PAM) to say something
MAX_USERNAME = 255
_PEERCRED = struct.Struct("3i")


@dataclass
class Handshake:
    """A TLS handshake the sec-mod runs for a worker on the worker's client socket."""
    worker: socket.socket
    sock: socket.socket
    hs: ServerHandshake
    deadline: float
    out: bytes = b""  # handshake bytes the socket could not take yet
    remote_ip: str = ""
    chain: tuple[bytes, ...] = ()  # what this handshake's context serves (DER)


class SecMod:
    def __init__(self, cfg: Config, listen_path: str, main_chan: socket.socket,
                 events: socket.socket | None = None) -> None:
        self.cfg = cfg
        self.events = events  # one-way notifications to main (ban points)
        self.store = SessionStore(cfg.cookie_timeout)
        self.cert_gate = CertGate()  # CONNECTs whose certificate check passed
        self.profiles = ProfileCache()
        self.main_chan = main_chan
        # the private key is loaded here, after the fork from main, and nowhere else; before
        # the listener exists, so that main sees a key that does not load as a failed start
        self.hosts = load_hosts(cfg)  # "" is the default host, then each [vhost:NAME]
        assert cfg.server_cert is not None  # load_hosts refused it otherwise
        self.acme_alpn = AcmeAlpn(store_beside(cfg.server_cert))  # TLS-ALPN-01 answers
        self.sel = selectors.DefaultSelector()
        if os.path.exists(listen_path):
            os.unlink(listen_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o077)
        try:
            unixpath.bind(self.listener, listen_path)
        finally:
            os.umask(old)
        self.listener.listen(128)
        self.listen_path = listen_path
        self.workers: dict[socket.socket, AuthState] = {}
        self.handshakes: dict[int, Handshake] = {}  # by client socket fd
        # PAM threads wake the loop through this pipe when a conversation has news
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # one login dialogue per host: each has its own back-ends (ocserv: per-vhost auth)
        self.logins = {name: Login(host.cfg, host.setup, self.store, self.profiles,
                                   self._notify, self._wake)
                       for name, host in self.hosts.items()}

    @property
    def setup(self) -> AuthSetup:
        """The default host's back-ends."""
        return self.hosts[""].setup

    @property
    def login(self) -> Login:
        """The default host's login dialogue."""
        return self.logins[""]

    def _host(self, state: AuthState) -> HostTls:
        return self.hosts.get(state.vhost) or self.hosts[""]

    def _login(self, state: AuthState) -> Login:
        return self.logins.get(state.vhost) or self.logins[""]

    def _reload_tls(self) -> ipc.TlsReloaded:
        """SIGHUP: every host's certificate and key files again (ocserv's sec-mod reloads
        its keys; the paths themselves need a restart, as there). Handshakes under way
        finish with the context they started with; live sessions have their own keys and
        go on. A host whose pair does not load keeps its old one; the others reload."""
        failures = [f"{host.cfg.label}: {why}" for host in self.hosts.values()
                    if (why := host.reload()) is not None]
        if failures:
            return ipc.TlsReloaded(ok=False, reason="; ".join(failures)[:400])
        return ipc.TlsReloaded(ok=True, cert_sha1=self.hosts[""].credentials.sha1)

    def run(self) -> None:
        self.sel.register(self.listener, selectors.EVENT_READ, self._accept)
        self.sel.register(self.main_chan, selectors.EVENT_READ, self._from_main)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_wake)
        log.info("sec-mod started (pid %d)", os.getpid())
        last_sweep = time.monotonic()
        while True:
            for key, _ in self.sel.select(timeout=1.0):
                key.data(key.fileobj)
            now = time.monotonic()
            self._expire_handshakes(now)
            self._expire_waits(now)
            if now - last_sweep >= 5.0:
                last_sweep = now
                for sid in self.store.expire(time.time()):
                    log.info("session %s expired", sid[:8])
                release_memory()  # else RSS creeps with every handshake (secmod/memtrim.py)

    # --- main ---------------------------------------------------------------------------------

    def _from_main(self, chan: socket.socket) -> None:
        try:
            msg, fds = ipc.recv(chan)
        except ipc.BadMessage as exc:
            log.error("main sent a bad message (%s)", exc)
            ipc.send(chan, ipc.Ack(ok=False, reason="bad message"))
            return
        except ipc.IpcError:
            log.info("main process went away; sec-mod exits")
            raise SystemExit(0) from None
        for fd in fds:
            os.close(fd)
        try:
            ipc.send(chan, self._main_request(msg))
        except ipc.IpcError as exc:  # e.g. a session list too big for one message
            log.error("cannot answer main's %s: %s", type(msg).__name__, exc)
            ipc.send(chan, ipc.Ack(ok=False, reason="answer too large"))

    def _main_request(self, msg: object) -> object:
        now = time.time()
        reply: object
        if isinstance(msg, ipc.TlsReload):
            reply = self._reload_tls()
        elif isinstance(msg, ipc.SessionOpen) and not self._admit_connect(msg.cookie, now):
            reply = ipc.SessionInfo(ok=False, reason="no certificate check for this CONNECT")
        elif isinstance(msg, ipc.SessionOpen):
            session = self.store.open(msg.cookie, now)
            if session is None:
                reply = ipc.SessionInfo(ok=False, reason="cookie is not valid")
            elif not self._account(session):  # ocserv then fails the session for good
                self.store.close(session.sid, True, now)
                reply = ipc.SessionInfo(ok=False, reason="refused by PAM account management")
            else:
                reply = ipc.SessionInfo(ok=True, sid=session.sid, username=session.username,
                                        groupname=session.groupname, started=session.created,
                                        extra=session.extra, device_type=session.device[0],
                                        platform=session.device[1], vhost=session.vhost)
        elif isinstance(msg, ipc.SessionClose):
            self.store.close(msg.sid, msg.invalidate, now)
            reply = ipc.Ack()
        elif isinstance(msg, ipc.SessionsQuery):
            reply = ipc.SessionsList(self.store.listing(),
                                     sum(login.auth_failures for login in self.logins.values()))
        else:
            reply = ipc.Ack(ok=False, reason=f"unexpected {type(msg).__name__}")
        return reply

    def _admit_connect(self, cookie: str, now: float) -> bool:
        """The certificate rule of the host the cookie's session logged in to."""
        session = self.store.peek(cookie, now)
        host = self.hosts.get(session.vhost if session is not None else "") or self.hosts[""]
        return self.cert_gate.admit(cookie, connect_needs_cert(
            host.cfg, host.setup.cert_required), now)

    def _account(self, session: Session) -> bool:
        """acct = pam: the first open of a session asks PAM's account stack."""
        if self.setup.account is None or session.accounted:
            return True
        session.accounted = self.setup.account.allowed(session.username)
        return session.accounted

    # --- workers ------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
            pid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   _PEERCRED.size))[0]
        except OSError:
            return
        self.workers[conn] = AuthState(pid=pid)
        self.sel.register(conn, selectors.EVENT_READ, self._from_worker)

    def _drop(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        state = self.workers.pop(conn, None)
        if state is not None:
            self._login(state).end_attempt(state)
        for h in [h for h in self.handshakes.values() if h.worker is conn]:
            self._end_handshake(h, None)
        conn.close()

    def _from_worker(self, conn: socket.socket) -> None:
        """One request of a worker. A worker may be hostile: what is not a request a worker
        sends ends that worker (main kills it on our word), never the sec-mod."""
        try:
            msg, fds = ipc.recv(conn, accept=ipc.WORKER_TO_SECMOD)
        except ipc.BadMessage as exc:
            self._bad_worker(conn, str(exc))
            return
        except (ipc.IpcError, OSError):
            self._drop(conn)
            return
        try:
            self._worker_request(conn, msg, fds)
        except Exception as exc:  # noqa: BLE001 - a worker's request must never end the sec-mod
            # where it failed, not the exception's text: that may quote a password
            log.error("handling %s from worker %d failed (%s), at:\n%s", type(msg).__name__,
                      self.workers[conn].pid if conn in self.workers else 0,
                      type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)).rstrip())
            if conn in self.workers:
                self._bad_worker(conn, "its request could not be handled")

    def _worker_request(self, conn: socket.socket, msg: object, fds: list[int]) -> None:
        state = self.workers[conn]
        if isinstance(msg, ipc.TlsHandshake):
            self._start_handshake(conn, msg, fds)
            return
        for fd in fds:
            os.close(fd)
        if isinstance(msg, ipc.ConnectCertCheck | ipc.ProfileFetch | ipc.SessionLogout):
            self._send_worker(conn, self._anyconnect(state, msg))
            return
        reply: ipc.AuthReply | None
        if isinstance(msg, ipc.AuthInit):
            reply = self._login(state).auth_init(state, msg)
        elif isinstance(msg, ipc.AuthCont):
            reply = self._login(state).auth_cont(state, msg.password)
        else:
            reply = ipc.AuthReply(status="error", message="unexpected request")
        if reply is not None:  # None: a back-end is still thinking; _on_wake answers later
            self._send_worker(conn, reply)

    def _bad_worker(self, conn: socket.socket, why: str) -> None:
        """Drop the worker's connection and have main end its session; main logs it (once,
        with the pid), because main is the one that kills the worker."""
        state = self.workers.get(conn)
        if state is not None and state.pid:
            self._notify(ipc.BadWorker(state.pid, why[:512]))
        else:
            log.warning("a worker sent a bad message (%s); dropping it", why)
        self._drop(conn)

    def _send_worker(self, conn: socket.socket, reply: object) -> None:
        try:
            ipc.send(conn, reply)
        except (OSError, ipc.IpcError):
            self._drop(conn)

    # --- TLS handshakes ---------------------------------------------------------------------

    def _start_handshake(self, worker: socket.socket, msg: ipc.TlsHandshake,
                         fds: list[int]) -> None:
        for fd in fds[1:]:
            os.close(fd)
        state = self.workers[worker]
        # One handshake per worker connection: the certificate identity it yields belongs
        # to that connection, and a second one could only be an attempt to swap it.
        refusal = ("one handshake per connection" if state.handshakes
                   else "too many handshakes" if len(self.handshakes) >= MAX_HANDSHAKES
                   else "no socket" if not fds else "")
        if refusal:
            if fds:
                os.close(fds[0])
            self._reply(worker, ipc.TlsResult(ok=False, reason=refusal))
            return
        state.handshakes += 1
        for host in self.hosts.values():
            host.refresh_crl()
        try:
            sock = socket.socket(fileno=fds[0])
        except OSError:  # not a socket (a hostile worker's pipe, say)
            os.close(fds[0])
            self._reply(worker, ipc.TlsResult(ok=False, reason="no usable socket"))
            return
        if sock.type != socket.SOCK_STREAM:
            sock.close()
            self._reply(worker, ipc.TlsResult(ok=False, reason="no usable socket"))
            return
        sock.setblocking(False)
        address = self._address_of(sock, msg.remote_ip)
        default = self.hosts[""]
        chosen: list[Handshake] = []  # the chooser runs once the ClientHello is in
        hs = ServerHandshake(default.ctx,
                             lambda hello: self._choose(chosen[0], state, address, hello))
        h = Handshake(worker, sock, hs, time.monotonic() + handshake_timeout(self.cfg),
                      remote_ip=msg.remote_ip, chain=default.credentials.chain_der)
        chosen.append(h)
        self.handshakes[sock.fileno()] = h
        self.sel.register(sock, selectors.EVENT_READ, self._handshake_readable)

    def _address_of(self, sock: socket.socket, claimed_ip: str) -> str:
        """The client's address for resumption: as the socket says (the worker's word only
        behind a PROXY-protocol balancer)."""
        address = claimed_ip
        if not self.cfg.listen_proxy_proto:
            try:
                peer = sock.getpeername()
            except OSError:
                peer = None
            if isinstance(peer, tuple):
                address = str(peer[0])
        return address

    def _choose(self, h: Handshake, state: AuthState, address: str,
                hello: HelloInfo) -> SSL.Context:
        """The ContextChooser of every handshake: a TLS-ALPN-01 answer, else the context of
        the host the SNI names (the default host for an unknown name or none, as ocserv).
        The connection's host is fixed here, by the sec-mod, never by the worker."""
        ctx = self.acme_alpn.choose(hello)
        if ctx is not None:
            return ctx
        state.vhost = host_name_for(self.cfg, hello.sni)
        host = self._host(state)
        h.chain = host.credentials.chain_der
        return host.context_for(address)

    def _handshake_readable(self, sock: socket.socket) -> None:
        h = self.handshakes.get(sock.fileno())
        if h is None:
            return
        try:
            data = sock.recv(16384)
        except BlockingIOError:
            return
        except OSError as exc:
            self._end_handshake(h, ipc.TlsResult(ok=False, reason=str(exc)))
            return
        if not data:
            self._end_handshake(h, ipc.TlsResult(ok=False, reason="client closed"))
            return
        try:
            h.out += h.hs.feed(data)
        except HandshakeError as exc:
            self._end_handshake(h, ipc.TlsResult(ok=False, reason=str(exc)))
            return
        self._flush_handshake(h)
        if h.hs.done and not h.out:
            r = h.hs.result
            assert r is not None
            if r.alpn is not None:  # an ACME validation: it has seen the certificate
                log.info("acme-tls/1 name=%s result=answered", r.sni)
                self._end_handshake(h, ipc.TlsResult(ok=False, reason="acme-tls/1 answered"))
                return
            if r.resumed:
                log.info("TLS session resumed for %s", h.remote_ip)
            self._note_certificate(h, r)
            self._end_handshake(h, ipc.TlsResult(
                ok=True, keys=r.keys.to_wire(), psk=r.psk.hex(), description=r.description,
                sni=r.sni or "", vhost=self.workers[h.worker].vhost
                if h.worker in self.workers else "", leftover=h.hs.leftover.hex(),
                server_chain=[der.hex() for der in h.chain]))

    def _flush_handshake(self, h: Handshake) -> None:
        """Send what we can; a handshake flight is small, so waiting for room is rare."""
        deadline = time.monotonic() + 2.0
        while h.out and time.monotonic() < deadline:
            try:
                sent = h.sock.send(h.out)
            except BlockingIOError:
                select_wait(h.sock)
                continue
            except OSError:
                h.out = b""
                return
            h.out = h.out[sent:]

    def _end_handshake(self, h: Handshake, result: ipc.TlsResult | None) -> None:
        self.handshakes.pop(h.sock.fileno(), None)
        try:
            self.sel.unregister(h.sock)
        except (KeyError, ValueError):
            pass
        h.sock.close()  # only our copy: the worker keeps the connection
        if result is not None:
            if not result.ok:
                log.debug("TLS handshake failed: %s", result.reason)
            self._reply(h.worker, result)

    def _expire_handshakes(self, now: float) -> None:
        for h in [h for h in self.handshakes.values() if h.deadline < now]:
            self._end_handshake(h, ipc.TlsResult(ok=False, reason="handshake timed out"))

    def _notify(self, msg: object) -> None:
        if self.events is not None:
            try:
                ipc.send(self.events, msg)
            except (OSError, ipc.IpcError) as exc:
                log.warning("cannot notify main: %s", exc)

    def _reply(self, worker: socket.socket, msg: object) -> None:
        try:
            ipc.send(worker, msg)
        except (OSError, ipc.IpcError):
            pass

    # --- certificates -----------------------------------------------------------------------

    def _note_certificate(self, h: Handshake, result: HandshakeResult) -> None:
        """Remember who the verified certificate names, on the connection that asked for
        the handshake; any problem becomes the 401 reason should a certificate be needed."""
        state = self.workers.get(h.worker)
        if state is None or not self._host(state).setup.wants_cert:
            return
        cfg = self._host(state).cfg
        if result.client_cert is None:
            state.cert_problem = "No certificate"
            return
        if not result.client_cert_verified:
            log.info("client certificate from %s not accepted: %s", h.remote_ip,
                     result.client_cert_problem)
            state.cert_problem = "No certificate"  # as ocserv: the cert did not verify
            return
        try:
            cert = x509.load_der_x509_certificate(result.client_cert)
            state.cert = cert_identity(cert, cfg.cert_user_oid or "", cfg.cert_group_oid)
        except (CertError, ValueError) as exc:
            log.info("client certificate from %s unusable: %s", h.remote_ip, exc)
            state.cert_problem = "Could not read certificate"
            return
        log.debug("client certificate from %s names '%s'", h.remote_ip, state.cert.username)

    def _anyconnect(self, state: AuthState, msg: object) -> object:
        """CONNECT certificate rule, profile download and logout (secmod/anyconnect.py)."""
        now = time.time()
        if isinstance(msg, ipc.ProfileFetch):
            return profile_answer(self._host(state).cfg, self.store.peek(msg.cookie, now))
        if isinstance(msg, ipc.SessionLogout):
            session = self.store.revoke(msg.cookie)
            if session is not None:
                log.info("user '%s' logged out (session %s)", session.username,
                         session.sid[:8])
                self._notify(ipc.SessionRevoked(session.sid))
            return ipc.Ack(ok=session is not None)
        assert isinstance(msg, ipc.ConnectCertCheck)
        # as ocserv: the method this connection logged in with, else the one it starts with
        host = self._host(state)
        method = state.method or host.setup.first(state.cert is not None)
        refusal = self.cert_gate.check(
            msg.cookie, self.store.peek(msg.cookie, now),
            state.cert.username if state.cert is not None else None,
            connect_needs_cert(host.cfg, method is not None and method.cert), now)
        if refusal:
            log.info("CONNECT from %s refused: %s", state.remote_ip or "?", refusal)
        return ipc.Ack(ok=not refusal, reason=refusal)

    # --- back-ends thinking in threads -----------------------------------------------------

    def _wake(self) -> None:
        """Called from PAM threads: nudge the loop (a full pipe already means "wake up")."""
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass

    def _on_wake(self, _fd: int) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        for conn, state in list(self.workers.items()):
            if state.conv is not None and state.waiting_since is not None:
                reply = self._login(state).pump(state)
                if reply is not None:
                    self._send_worker(conn, reply)

    def _expire_waits(self, now: float) -> None:
        for conn, state in list(self.workers.items()):
            if state.waiting_since is not None and now - state.waiting_since > BACKEND_WAIT:
                log.error("authentication back-end gave no answer for '%s' in %.0f s",
                          state.username, BACKEND_WAIT)
                self._send_worker(conn, self._login(state).fail(state, "Internal error"))


def handshake_timeout(cfg: Config) -> float:
    """A client that stalls its handshake (sends nothing, or half a ClientHello) is still
    unauthenticated, so a shorter auth-timeout bounds it too (docs/protocol.md: auth-timeout)."""
    return float(min(HANDSHAKE_TIMEOUT, max(cfg.auth_timeout, 1)))


def select_wait(sock: socket.socket, timeout: float = 0.2) -> None:
    select.select([], [sock], [], timeout)


def run_secmod(cfg: Config, listen_path: str, main_chan: socket.socket,
               events: socket.socket | None = None) -> None:
    """Entry point in the forked sec-mod process."""
    try:
        SecMod(cfg, listen_path, main_chan, events).run()
    except KeyboardInterrupt:
        pass
