"""The security module: the only process that reads credentials and owns the cookie store.

Workers ask it to authenticate a user (one password try at a time) and get back a cookie;
main asks it whether a cookie names a live session. Everything it answers is a verdict, so a
compromised worker learns nothing it could not learn by trying passwords over the network.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import select
import selectors
import socket
import time
from dataclasses import dataclass, field

from . import ipc
from .config import Config
from .passwd import PasswdError, load_passwd, verify_password
from .tlshandshake import HandshakeError, ServerHandshake, make_server_context

log = logging.getLogger("ocgate.sec-mod")

MAX_PASSWORD_TRIES = 3
HANDSHAKE_TIMEOUT = 20.0  # seconds a client has to complete the TLS handshake
MAX_HANDSHAKES = 512  # concurrent handshakes; beyond that new ones are refused at once
AUTH_SLACK = 15  # seconds of grace ocserv adds to cookie validity (protocol.md 7.6)


@dataclass
class Session:
    cookie_hash: bytes
    sid: str
    username: str
    groupname: str
    remote_ip: str
    created: float
    expires: float | None  # None while a connection uses it
    in_use: int = 0


@dataclass
class Handshake:
    """A TLS handshake the sec-mod runs for a worker on the worker's client socket."""
    worker: socket.socket
    sock: socket.socket
    hs: ServerHandshake
    deadline: float
    out: bytes = b""  # handshake bytes the socket could not take yet


@dataclass
class AuthState:
    """One worker's authentication in progress."""
    username: str = ""
    group: str = ""
    remote_ip: str = ""
    user_agent: str = ""
    tries: int = 0
    context: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())


def _hash_cookie(cookie: str) -> bytes:
    """Sessions are keyed by a hash so that even a memory dump of the store holds no cookie."""
    return hashlib.sha256(cookie.encode()).digest()


class SessionStore:
    """Cookies and their validity: the active session plus cookie-timeout (protocol.md 7.6)."""

    def __init__(self, cookie_timeout: int) -> None:
        self.cookie_timeout = cookie_timeout
        self._by_hash: dict[bytes, Session] = {}

    def create(self, username: str, groupname: str, remote_ip: str,
               now: float) -> tuple[str, Session]:
        cookie = base64.b64encode(secrets.token_bytes(32)).decode()
        session = Session(_hash_cookie(cookie), secrets.token_hex(16), username, groupname,
                          remote_ip, now, now + self.cookie_timeout + AUTH_SLACK)
        self._by_hash[session.cookie_hash] = session
        return cookie, session

    def open(self, cookie: str, now: float) -> Session | None:
        session = self._by_hash.get(_hash_cookie(cookie))
        if session is None or (session.expires is not None and session.expires < now):
            return None
        session.in_use += 1
        session.expires = None
        return session

    def close(self, sid: str, invalidate: bool, now: float) -> None:
        for key, session in list(self._by_hash.items()):
            if session.sid != sid:
                continue
            session.in_use = max(0, session.in_use - 1)
            if invalidate:
                del self._by_hash[key]
            elif session.in_use == 0:
                session.expires = now + self.cookie_timeout + AUTH_SLACK

    def expire(self, now: float) -> list[str]:
        gone = [k for k, s in self._by_hash.items() if s.expires is not None and s.expires < now]
        sids = [self._by_hash[k].sid for k in gone]
        for key in gone:
            del self._by_hash[key]
        return sids

    def listing(self) -> list[dict]:
        return [{"sid": s.sid, "username": s.username, "groupname": s.groupname,
                 "remote_ip": s.remote_ip, "created": s.created, "expires": s.expires,
                 "in_use": s.in_use} for s in self._by_hash.values()]


class PlainAuth:
    """auth = plain[passwd=FILE]; the file is re-read on every attempt, as ocserv does, so
    ocpasswd changes apply without a reload."""

    def __init__(self, passwd_file: str) -> None:
        self.passwd_file = passwd_file

    def check(self, username: str, password: str) -> tuple[bool, list[str]]:
        try:
            entries = load_passwd(self.passwd_file)
        except (OSError, PasswdError) as exc:
            log.error("cannot read password file %s: %s", self.passwd_file, exc)
            verify_password(None, password)
            return False, []
        entry = entries.get(username)
        ok = verify_password(entry, password)
        return ok, (entry.groups if entry else [])


def make_backend(cfg: Config) -> PlainAuth:
    for method in cfg.auth:
        if method.name == "plain":
            return PlainAuth(method.params["passwd"])
    raise ValueError("only auth = plain[passwd=...] is implemented so far")


class SecMod:
    def __init__(self, cfg: Config, listen_path: str, main_chan: socket.socket,
                 events: socket.socket | None = None) -> None:
        self.cfg = cfg
        self.events = events  # one-way notifications to main (ban points)
        self.backend = make_backend(cfg)
        self.store = SessionStore(cfg.cookie_timeout)
        self.main_chan = main_chan
        self.sel = selectors.DefaultSelector()
        if os.path.exists(listen_path):
            os.unlink(listen_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o077)
        try:
            self.listener.bind(listen_path)
        finally:
            os.umask(old)
        self.listener.listen(128)
        self.listen_path = listen_path
        self.workers: dict[socket.socket, AuthState] = {}
        self.auth_failures = 0
        # the private key is loaded here, after the fork from main, and nowhere else
        self.tls_ctx = make_server_context(cfg.server_cert, cfg.server_key, cfg.tls_priorities,
                                           cfg.ca_cert)
        self.handshakes: dict[int, Handshake] = {}  # by client socket fd

    def run(self) -> None:
        self.sel.register(self.listener, selectors.EVENT_READ, self._accept)
        self.sel.register(self.main_chan, selectors.EVENT_READ, self._from_main)
        log.info("sec-mod started (pid %d)", os.getpid())
        last_sweep = time.monotonic()
        while True:
            for key, _ in self.sel.select(timeout=1.0):
                key.data(key.fileobj)
            now = time.monotonic()
            self._expire_handshakes(now)
            if now - last_sweep >= 5.0:
                last_sweep = now
                for sid in self.store.expire(time.time()):
                    log.info("session %s expired", sid[:8])

    # --- main ---------------------------------------------------------------------------------

    def _from_main(self, chan: socket.socket) -> None:
        try:
            msg, _fds = ipc.recv(chan)
        except ipc.IpcError:
            log.info("main process went away; sec-mod exits")
            raise SystemExit(0) from None
        now = time.time()
        if isinstance(msg, ipc.SessionOpen):
            session = self.store.open(msg.cookie, now)
            if session is None:
                reply = ipc.SessionInfo(ok=False, reason="cookie is not valid")
            else:
                reply = ipc.SessionInfo(ok=True, sid=session.sid, username=session.username,
                                        groupname=session.groupname, started=session.created)
        elif isinstance(msg, ipc.SessionClose):
            self.store.close(msg.sid, msg.invalidate, now)
            reply = ipc.Ack()
        elif isinstance(msg, ipc.SessionsQuery):
            reply = ipc.SessionsList(self.store.listing(), self.auth_failures)
        else:
            reply = ipc.Ack(ok=False, reason=f"unexpected {type(msg).__name__}")
        ipc.send(chan, reply)

    # --- workers ------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        self.workers[conn] = AuthState()
        self.sel.register(conn, selectors.EVENT_READ, self._from_worker)

    def _drop(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        self.workers.pop(conn, None)
        for h in [h for h in self.handshakes.values() if h.worker is conn]:
            self._end_handshake(h, None)
        conn.close()

    def _from_worker(self, conn: socket.socket) -> None:
        try:
            msg, _fds = ipc.recv(conn)
        except (ipc.IpcError, OSError):
            self._drop(conn)
            return
        state = self.workers[conn]
        if isinstance(msg, ipc.TlsHandshake):
            self._start_handshake(conn, msg, _fds)
            return
        for fd in _fds:
            os.close(fd)
        if isinstance(msg, ipc.AuthInit):
            reply = self._auth_init(state, msg)
        elif isinstance(msg, ipc.AuthCont):
            reply = self._auth_cont(state, msg.password)
        else:
            reply = ipc.AuthReply(status="error", message="unexpected request")
        try:
            ipc.send(conn, reply)
        except OSError:
            self._drop(conn)

    # --- TLS handshakes ---------------------------------------------------------------------

    def _start_handshake(self, worker: socket.socket, msg: ipc.TlsHandshake,
                         fds: list[int]) -> None:
        for fd in fds[1:]:
            os.close(fd)
        if not fds or len(self.handshakes) >= MAX_HANDSHAKES:
            if fds:
                os.close(fds[0])
            self._reply(worker, ipc.TlsResult(ok=False, reason="too many handshakes"))
            return
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        h = Handshake(worker, sock, ServerHandshake(self.tls_ctx),
                      time.monotonic() + HANDSHAKE_TIMEOUT)
        self.handshakes[sock.fileno()] = h
        self.sel.register(sock, selectors.EVENT_READ, self._handshake_readable)

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
            self._end_handshake(h, ipc.TlsResult(
                ok=True, keys=r.keys.to_wire(), psk=r.psk.hex(), description=r.description,
                sni=r.sni or "", leftover=h.hs.leftover.hex()))

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
            except OSError as exc:
                log.warning("cannot notify main: %s", exc)

    def _reply(self, worker: socket.socket, msg: object) -> None:
        try:
            ipc.send(worker, msg)
        except OSError:
            pass

    def _auth_init(self, state: AuthState, msg: ipc.AuthInit) -> ipc.AuthReply:
        if not msg.username or len(msg.username) > 255:
            return ipc.AuthReply(status="fail", message="Authentication failed")
        state.username = msg.username
        state.group = msg.group or ""
        state.remote_ip = msg.remote_ip
        state.user_agent = msg.user_agent
        state.tries = 0
        return ipc.AuthReply(status="continue", message="Please enter your password.",
                             context=state.context)

    def _auth_cont(self, state: AuthState, password: str) -> ipc.AuthReply:
        if not state.username:
            return ipc.AuthReply(status="fail", message="Authentication failed")
        ok, groups = self.backend.check(state.username, password)
        if not ok:
            state.tries += 1
            self.auth_failures += 1
            log.info("failed authentication for '%s' from %s (try %d)", state.username,
                     state.remote_ip, state.tries)
            self._notify(ipc.BanPoints(state.remote_ip, self.cfg.ban_points_wrong_password,
                                       "wrong password"))
            if state.tries >= MAX_PASSWORD_TRIES:
                return ipc.AuthReply(status="fail", message="Authentication failed")
            return ipc.AuthReply(status="continue",
                                 message="Login failed.\nPlease enter your password.",
                                 context=state.context)
        group = state.group if state.group in groups else (groups[0] if groups else "")
        cookie, session = self.store.create(state.username, group, state.remote_ip, time.time())
        log.info("user '%s' authenticated from %s (session %s)", state.username,
                 state.remote_ip, session.sid[:8])
        state.username = ""
        return ipc.AuthReply(status="ok", cookie=cookie, context=state.context)


def select_wait(sock: socket.socket, timeout: float = 0.2) -> None:
    select.select([], [sock], [], timeout)


def run_secmod(cfg: Config, listen_path: str, main_chan: socket.socket,
               events: socket.socket | None = None) -> None:
    """Entry point in the forked sec-mod process."""
    try:
        SecMod(cfg, listen_path, main_chan, events).run()
    except KeyboardInterrupt:
        pass
