"""One worker per client TCP connection: TLS, the HTTP auth dialogue, CONNECT, then CSTP.

The worker runs as the unprivileged ``run-as-user``. It can ask the security module to check
a password (and gets a cookie back) and ask main to open the session a cookie names (and gets
a TUN descriptor back); nothing else. Until CONNECT everything is blocking I/O with deadlines:
one connection per process makes that the simplest correct design.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import struct
import time

from .. import ipc
from ..config import Config
from ..main.ipv6 import apply_ipv6
from ..protocol import auth, cstp, http
from ..protocol.certdownload import cert_download
from ..protocol.compression import CompressionError, Compressor, choose, parse_priority_option
from ..protocol.dtls.handshake import DtlsContext, DtlsServerHandshake
from ..protocol.tls.handshake import HandshakeResult
from ..protocol.tls.record import MAX_PLAINTEXT, RecordLayer, TlsClosed, TlsRecordError, TrafficKeys
from . import anyconnect as anyconnect_hooks
from .datapath import CstpSession, Timers
from .dtlschannel import DtlsChannel
from .errors import ConnectionDone, Peer
from .legacydtls import legacy_offer

log = logging.getLogger(__name__)

MAX_HTTP_REQUESTS = 16  # per connection, as ocserv
HANDSHAKE_TIMEOUT = 20.0
CONNECT_GRANT_TIMEOUT = 90.0  # covers a connect-script's own timeout
TCP_INFO_PMTU_OFFSET = 60
SECMOD_AUTH_TIMEOUT = 75.0  # the sec-mod gives a slow back-end (PAM) 60 s, then fails it
# 401 reasons ocserv uses (docs/protocol.md §2.7); anything else from the sec-mod is generic
FAIL_REASONS = ("Authentication failed", "No certificate", "Could not read certificate",
                "No password", "Internal error",
                "Authentication server unreachable")  # ours: auth/radius/auth.py UNREACHABLE


def tcp_pmtu(sock: socket.socket) -> int | None:
    """tcpi_pmtu from TCP_INFO: ocserv bounds the link MTU by it (docs/protocol.md 3.4)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return struct.unpack_from("=I", info, TCP_INFO_PMTU_OFFSET)[0] or None
    except OSError:
        return None


class Worker:
    def __init__(self, cfg: Config, sock: socket.socket, peer: Peer,
                 main_chan: socket.socket, secmod: socket.socket, cert_sha1: str,
                 dtls_ctx: DtlsContext | None = None) -> None:
        self.cfg = cfg
        self.dtls_ctx = dtls_ctx
        self.sock = sock
        self.peer = peer
        self.main = main_chan
        self.secmod = secmod
        self.cert_sha1 = cert_sha1
        self.rl: RecordLayer | None = None
        self.server_chain: tuple[bytes, ...] = ()  # DER, from the sec-mod's handshake
        self.tls: HandshakeResult | None = None
        self.parser = http.RequestParser()
        self.awaiting_answer = False  # the last form asked for an answer (AuthCont)
        self.url_group: str | None = None  # select-group-by-url: https://server/GROUP
        # auth-timeout bounds the whole pre-CONNECT dialogue, slow headers included
        self.deadline = time.monotonic() + max(cfg.auth_timeout, 1)

    # --- TLS plumbing (blocking) --------------------------------------------------------------

    def _recv(self) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectionDone("authentication timed out")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, OSError) as exc:
            raise ConnectionDone(f"receive failed: {exc}") from None
        if not data:
            raise ConnectionDone("client closed the connection")
        return data

    def _send_plain(self, data: bytes) -> None:
        assert self.rl is not None
        chunks = [data[i:i + MAX_PLAINTEXT] for i in range(0, len(data), MAX_PLAINTEXT)]
        try:
            self.sock.sendall(self.rl.seal_many(chunks))
        except OSError as exc:
            raise ConnectionDone(f"send failed: {exc}") from None

    def handshake(self) -> bytes:
        """Have the security module run the TLS handshake on our socket (the private key
        lives only there) and take over the connection with the traffic keys it returns.
        Returns the first application plaintext, if the client sent some already."""
        try:
            ipc.send(self.secmod, ipc.TlsHandshake(self.peer.remote_ip), [self.sock.fileno()])
            self.secmod.settimeout(HANDSHAKE_TIMEOUT + 5)
            result, fds = ipc.recv(self.secmod, accept=(ipc.TlsResult,))
        except (ipc.IpcError, OSError) as exc:
            raise ConnectionDone(f"security module did not run the handshake: {exc}") from None
        finally:
            self.secmod.settimeout(None)
        for fd in fds:
            os.close(fd)
        if not isinstance(result, ipc.TlsResult) or not result.ok:
            raise ConnectionDone(f"TLS handshake failed: {getattr(result, 'reason', '?')}")
        keys = TrafficKeys.from_wire(result.keys)
        self.tls = HandshakeResult(keys, bytes.fromhex(result.psk), result.description,
                                   result.sni or None)
        self.rl = RecordLayer(keys)
        self.server_chain = tuple(bytes.fromhex(der) for der in result.server_chain)
        if result.vhost:
            # the sec-mod chose the host from the SNI: from here on this connection is
            # served with that host's options (ocserv's ws->vhost), and its certificate's
            # hash is the one clients pin in the profile cookie
            self.cfg = self.cfg.vhost(result.vhost)
            if self.server_chain:
                self.cert_sha1 = hashlib.sha1(self.server_chain[0]).hexdigest().upper()  # noqa: S324
            log.debug("connection from %s is for vhost=%s", self.peer.remote_ip, result.vhost)
        log.debug("TLS established with %s: %s", self.peer.remote_ip, self.tls.description)
        leftover = bytes.fromhex(result.leftover)
        return b"".join(self.rl.feed(leftover)) if leftover else b""

    def _next_requests(self, pending: bytes) -> list[http.Request]:
        assert self.rl is not None
        requests = self.parser.feed(pending) if pending else []
        while not requests:
            requests = self.parser.feed(b"".join(self.rl.feed(self._recv())))
        return requests

    # --- HTTP ---------------------------------------------------------------------------------

    def _respond(self, status: int, reason: str, headers: list[tuple[str, str]],
                 body: bytes = b"") -> None:
        extra = [("X-Transcend-Version", "1")] if not any(
            k == "X-Transcend-Version" for k, _ in headers) else []
        self._send_plain(http.response(status, reason, headers + extra, body))

    def _answer_hook(self, answer: anyconnect_hooks.Answer) -> None:
        """Send what a hook decided: a response, or a 401 that ends the connection."""
        if answer.status == 401:
            self._fail(answer.reason)
        self._respond(answer.status, answer.reason, answer.headers, answer.body)

    def _fail(self, reason: str = "Authentication failed") -> None:
        self._send_plain(http.response(401, reason, []))
        raise ConnectionDone(reason)

    def _first_form(self, req: http.Request) -> None:
        """GET of the login page: the same first step as an XML ``init``."""
        self._answer(self._ask_secmod(ipc.AuthInit("", None, self.peer.remote_ip,
                                                   req.headers.get("User-Agent") or "",
                                                   *cstp.device_identifiers(req.headers))))

    def _show_form(self, answer: ipc.AuthReply) -> None:
        """The form step the security module asked for (docs/protocol.md §2.4.2, §2.4.3)."""
        groups = [] if self.url_group else _group_options(answer.groups)
        if answer.form == "login":
            inputs = [auth.FormInput("text", "username", "Username:"),
                      auth.FormInput("password", "password", "Password:")]
            context, max_age = None, None  # no auth session exists before the username
        elif answer.form == "group":
            inputs, context, max_age = [], answer.context, self.cfg.cookie_timeout
        else:
            inputs = [auth.FormInput("text" if answer.echo else "password",
                                     answer.input_name or "password",
                                     answer.input_label or "Password:")]
            context, max_age, groups = answer.context, self.cfg.cookie_timeout, []
        body = auth.render_auth_form(
            message=answer.message or "Please enter your username and password.",
            inputs=inputs, groups=groups or None,
            pre_login_banner=self.cfg.pre_login_banner if answer.form == "login" else None)
        headers = auth.auth_response_headers(context_cookie=context, context_max_age=max_age)
        self._respond(200, "OK", headers, body)

    def _ask_secmod(self, msg: object) -> ipc.AuthReply:
        try:
            reply = ipc.call(self.secmod, msg, timeout=SECMOD_AUTH_TIMEOUT,
                             accept=(ipc.AuthReply,))
        except ipc.IpcError as exc:
            log.error("security module unreachable: %s", exc)
            self._fail("Internal error")
        if not isinstance(reply, ipc.AuthReply):
            self._fail("Internal error")
        return reply

    def _handle_auth_post(self, req: http.Request) -> str | None:
        """One step of the login; returns the cookie once authentication succeeded.

        The security module decides every step (which form, when a certificate is
        enough, how many PAM questions); the worker only maps the client's reply onto
        "start over" (``AuthInit``) or "here is the answer" (``AuthCont``)."""
        try:
            reply = auth.parse_auth_body(req.body, req.headers.get("Content-Type"))
        except auth.AuthParseError as exc:
            log.info("unreadable auth request from %s: %s", self.peer.remote_ip, exc)
            reply = auth.AuthReply(kind="empty")
        if reply.kind == "logout":
            anyconnect_hooks.logout(self.secmod, self.peer.remote_ip, req,
                                    reply.session_token)
            self._respond(200, "OK", [("Content-Type", "text/xml")], b"")
            return None
        self.url_group = anyconnect_hooks.url_group(self.cfg, req) or self.url_group
        if self.url_group:  # the URL decides, as ocserv's groupname_url_forced
            reply.group = self.url_group
        agent = req.headers.get("User-Agent") or ""
        device = cstp.device_identifiers(req.headers)
        if reply.username:
            answer = self._ask_secmod(ipc.AuthInit(reply.username, reply.group,
                                                   self.peer.remote_ip, agent, *device))
            # the combined form: the password came with the username (ocserv re-reads it)
            if answer.status == "continue" and answer.form == "password" \
                    and reply.password is not None:
                answer = self._ask_secmod(ipc.AuthCont(reply.password))
        elif reply.password is not None and self.awaiting_answer:
            answer = self._ask_secmod(ipc.AuthCont(reply.password))
        else:
            answer = self._ask_secmod(ipc.AuthInit("", reply.group, self.peer.remote_ip,
                                                   agent, *device))
        return self._answer(answer)

    def _answer(self, answer: ipc.AuthReply) -> str | None:
        self.awaiting_answer = answer.status == "continue" and answer.form == "password"
        if answer.status == "ok":
            body = anyconnect_hooks.complete_body(self.cfg.banner, answer)
            headers = anyconnect_hooks.complete_headers(auth.auth_response_headers(
                context_cookie=answer.context, context_max_age=None,
                session_cookie=answer.cookie, server_cert_sha1_hex=self.cert_sha1),
                self.cert_sha1, answer)
            self._respond(200, "OK", headers, body)
            return answer.cookie
        if answer.status == "continue":
            self._show_form(answer)
            return None
        reason = answer.message if answer.message in FAIL_REASONS else FAIL_REASONS[0]
        self._fail(reason)
        return None

    def serve(self) -> None:
        """The whole life of the connection."""
        pending = self.handshake()
        served = 0
        while True:
            for req in self._next_requests(pending):
                pending = b""
                served += 1
                if req.method == "CONNECT":
                    self._connect(req)
                    return
                self._dispatch(req)
                if served >= MAX_HTTP_REQUESTS:
                    raise ConnectionDone("too many requests on one connection")

    def _dispatch(self, req: http.Request) -> None:
        path = req.path
        hooked = anyconnect_hooks.handle_get(self.secmod, self.peer.remote_ip, req)
        if hooked is not None:  # /profiles/*, /logout
            self._answer_hook(hooked)
            return
        download = cert_download(path, self.server_chain) if req.method == "GET" else None
        static = auth.match_static(path) if req.method == "GET" else None
        if download is not None:
            if download.body is None:  # ocserv closes without an answer
                raise ConnectionDone(f"GET {path}: no CA certificate follows the server's")
            self._respond(200, "OK", [("Connection", "Keep-Alive"),
                                      ("Content-Type", download.content_type)], download.body)
        elif static is not None:
            ctype, body = static
            self._respond(200, "OK", [("Connection", "Keep-Alive"), ("Content-Type", ctype)], body)
        elif req.method == "GET" and path in ("/", "/auth", "/VPN"):
            self._first_form(req)
        elif req.method == "POST":
            self._handle_auth_post(req)
        else:
            self._send_plain(http.response(404, "Not found", [("Connection", "close")]))
            raise ConnectionDone(f"unknown request {req.method} {path}")

    # --- CONNECT ------------------------------------------------------------------------------

    def _connect(self, req: http.Request) -> None:
        try:
            creq = cstp.parse_connect_request(req.method, req.target, req.headers)
        except cstp.CstpError as exc:
            self._send_plain(http.response(404, "Not found", [("Connection", "close")]))
            raise ConnectionDone(f"bad CONNECT: {exc}") from None
        if not creq.cookie:
            self._send_plain(cstp.connect_error(503))
            raise ConnectionDone("CONNECT without a cookie")
        refused = anyconnect_hooks.check_connect_cert(self.secmod, creq.cookie)
        if refused is not None:  # cisco-client-compat's certificate rule
            self._send_plain(cstp.connect_error(refused.status))
            raise ConnectionDone(f"CONNECT refused: {refused.reason}")
        assert self.tls is not None
        # PSK-NEGOTIATE only (docs/protocol.md 5.1); a fresh App-ID per CONNECT, as ocserv
        offer_dtls = bool(self.dtls_ctx is not None and self.cfg.udp_port and self.cfg.dtls_psk
                          and creq.psk_negotiate)
        legacy = None if offer_dtls else legacy_offer(self.cfg, creq, self.tls.keys.cipher.aead)
        app_id = legacy.session_id if legacy else os.urandom(32) if offer_dtls else b""
        offer_dtls = offer_dtls or legacy is not None  # legacy DTLS (docs/protocol.md 5.4/5.5)
        msg = ipc.ConnectRequest(
            cookie=creq.cookie, hostname=creq.hostname or "", user_agent=creq.user_agent or "",
            device_type=creq.device_type or "", platform=creq.platform or "",
            local_ip=self.peer.local_ip, remote_ip=self.peer.remote_ip,
            tls_description=self.tls.description, base_mtu=creq.base_mtu,
            requested_mtu=creq.mtu, tcp_pmtu=tcp_pmtu(self.sock),
            peer_ipv6=":" in self.peer.remote_ip and not self.peer.remote_ip.startswith("::ffff:"),
            dtls_app_id=app_id.hex(), dtls_overhead=legacy.overhead if legacy else 0)
        try:
            ipc.send(self.main, msg)
            self.main.settimeout(CONNECT_GRANT_TIMEOUT)
            grant, fds = ipc.recv(self.main, accept=(ipc.ConnectGrant, ipc.Terminate))
        except (ipc.IpcError, OSError) as exc:
            self._send_plain(cstp.connect_error(503))
            raise ConnectionDone(f"main did not answer CONNECT: {exc}") from None
        if not isinstance(grant, ipc.ConnectGrant) or not grant.ok or not fds:
            for fd in fds:
                os.close(fd)
            status = getattr(grant, "status", 503)
            self._send_plain(cstp.connect_error(status))
            raise ConnectionDone(f"CONNECT refused: {getattr(grant, 'reason', '?')}")
        tun_fd = fds[0]
        for fd in fds[1:]:
            os.close(fd)
        params = connect_params(grant, creq)
        cstp_enc, dtls_enc = self._encodings(creq, offer_dtls)
        params.cstp_encoding, params.dtls_encoding = cstp_enc, dtls_enc
        dtls = None
        s = grant.settings
        port = self.cfg.udp_port
        if offer_dtls and port:  # both offers need the UDP port (above, legacy_offer)
            params.dtls = cstp.DtlsParams(port=port, dpd=s.dpd,
                                          keepalive=s.keepalive, app_id=app_id.hex())
            if legacy is not None:
                params.dtls = legacy.response_params(params.dtls)
                dtls = legacy.channel()
            else:
                ctx = self.dtls_ctx
                assert ctx is not None  # a PSK offer needs it (above)
                dtls = DtlsChannel(functools.partial(DtlsServerHandshake, ctx, self.tls.psk,
                                                     app_id, mtu=s.base_mtu - 28))
        self._send_plain(cstp.build_connect_response(params))
        log.info("user '%s' connected from %s as %s on %s", grant.username,
                 self.peer.remote_ip, grant.ipv4 or grant.ipv6, grant.device)
        remaining = s.session_remaining
        timers = Timers(dpd=s.dpd, idle_timeout=s.idle_timeout,
                        session_deadline=(time.monotonic() + remaining)
                        if remaining is not None else None,
                        switch_to_tcp=float(s.switch_to_tcp))
        assert self.rl is not None
        self.main.settimeout(None)
        # CSTP carries interactive traffic: never let Nagle hold back a batch's last segment
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        limit = self.cfg.no_compress_limit
        session = CstpSession(self.sock, self.rl, tun_fd, self.main, timers,
                              self.parser.remaining(), dtls,
                              cstp_comp=Compressor(cstp_enc, limit) if cstp_enc else None,
                              dtls_comp=Compressor(dtls_enc, limit) if dtls_enc else None,
                              rx_limit=s.rx_per_sec, tx_limit=s.tx_per_sec,
                              vnet_hdr=s.vnet_hdr)
        reason = session.run()
        log.info("user '%s' disconnected: %s (rx %d, tx %d bytes)", grant.username, reason,
                 session.counters.rx, session.counters.tx)


    def _encodings(self, creq: cstp.ConnectRequest,
                   offer_dtls: bool) -> tuple[str | None, str | None]:
        """Compression per channel (docs/protocol.md 6.1): off unless ``compression = true``."""
        priorities = None
        if self.cfg.compression_algo_priority:
            try:
                priorities = parse_priority_option(self.cfg.compression_algo_priority)
            except CompressionError as exc:
                log.warning("compression-algo-priority ignored: %s", exc)
        cstp_enc = choose(creq.cstp_accept_encoding, self.cfg.compression, priorities)
        dtls_enc = choose(creq.dtls_accept_encoding, self.cfg.compression,
                          priorities) if offer_dtls else None
        return cstp_enc, dtls_enc


def _group_options(raw: list[list[str]]) -> list[tuple[str, str]]:
    """[value, label] pairs from the sec-mod; anything malformed is left out."""
    return [(item[0], item[1]) for item in raw if len(item) == 2]


def connect_params(grant: ipc.ConnectGrant, creq: cstp.ConnectRequest) -> cstp.ConnectParams:
    """The CONNECT response for what main granted."""
    import ipaddress

    s = grant.settings
    params = cstp.ConnectParams(
        hostname=creq.hostname,
        dpd=s.dpd,
        default_domain=s.default_domain,
        # none on an IPv6-only server
        ipv4_address=ipaddress.IPv4Address(grant.ipv4) if grant.ipv4 else None,
        ipv4_netmask=ipaddress.IPv4Address(grant.ipv4_netmask) if grant.ipv4 else None,
        dns=s.dns,
        nbns=s.nbns,
        split_dns=s.split_dns,
        routes=[ipaddress.ip_network(r) for r in s.routes],
        no_routes=[ipaddress.ip_network(r) for r in s.no_routes],
        tunnel_all_dns=s.tunnel_all_dns,
        keepalive=s.keepalive,
        idle_timeout=s.idle_timeout,
        session_timeout=s.session_timeout,
        session_remaining=s.session_remaining,
        rekey_time=s.rekey_time,
        rekey_method=s.rekey_method,
        base_mtu=s.base_mtu,
        mtu=s.mtu,
        banner=s.banner,
    )
    apply_ipv6(params, creq, grant.ipv6, grant.ipv6_prefix, grant.ipv6_withheld)
    return params


def run_worker(cfg: Config, sock: socket.socket, peer: Peer, main_chan: socket.socket,
               secmod: socket.socket, cert_sha1: str,
               dtls_ctx: DtlsContext | None = None) -> int:
    """Entry point in the forked worker; returns the process exit code."""
    worker = Worker(cfg, sock, peer, main_chan, secmod, cert_sha1, dtls_ctx)
    try:
        worker.serve()
    except ConnectionDone as exc:
        log.debug("connection from %s ended: %s", peer.remote_ip, exc)
    except (TlsClosed, TlsRecordError, http.HttpError) as exc:
        log.info("connection from %s ended: %s", peer.remote_ip, exc)
        if isinstance(exc, http.HttpError) and worker.rl is not None:
            try:
                worker._send_plain(http.response(exc.status, exc.reason,
                                                 [("Connection", "close")]))
            except ConnectionDone:
                pass
    finally:
        try:
            sock.close()
        except OSError:
            pass
    return 0
