"""RADIUS authentication (sec-mod), as ocserv's radius module does; accounting is
auth/radius/acct.py.

Packets are built and checked by pyrad; this module decides *which* attributes go out and
what the answers mean (docs/protocol.md §10.2, ocserv src/auth/radius.c, src/acct/radius.c):

* Access-Request: User-Name (with radcli's ``default_realm``), User-Password or the
  echoed State, NAS-Identifier, NAS-IP-Address, Calling-Station-Id (the client's
  address), Connect-Info (its User-Agent), Service-Type Authenticate-Only, NAS-Port-Type
  Async and a Message-Authenticator (BlastRADIUS).
* Access-Challenge: its Reply-Message becomes the next form's prompt (OTP), State goes
  back with the answer.
* Access-Accept: groups from Class (``OU=a;b``, else the whole value; Filter-Id as a
  fallback) and, with ``groupconfig=true``, the per-user settings (Framed-IP-Address and
  -Netmask, Framed-IPv6-Address, Framed-Route, Framed-IPv6-Route, MS DNS servers,
  DNS-Server-IPv6-Address, Session-Timeout, Idle-Timeout, Acct-Interim-Interval) that
  replace config-per-user/group files, as ocserv's radius sup-config does
  (auth/radius/supconfig.py, which main reads without loading pyrad).

The authentication exchange blocks, so each login runs it in a thread of its own, like PAM
(auth/pam.py); the sec-mod loop only polls.
"""

from __future__ import annotations

import functools
import io
import ipaddress
import logging
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyrad import packet as rpacket
from pyrad.dictionary import Dictionary

from ..base import PASSWORD_PROMPT, Prompt, ThreadedConversation, Verdict
from .conf import DEFAULT_RADCLI, RadiusConf, RadiusConfError, RadiusServer, load_radius_conf
from .supconfig import SessionAttrs

log = logging.getLogger(__name__)

UNREACHABLE = "Authentication server unreachable"
MAX_CHALLENGES = 16  # as ocserv: a server that keeps challenging is not a login
MAX_RADIUS_CONVERSATIONS = 64
SERVICE_FRAMED = "Framed-User"

# Our own dictionary (RFC 2865/2866/2869/3162/4818/6911 and Microsoft's DNS attributes):
# only what we send or read, so no dictionary file has to be installed.
DICTIONARY = """
ATTRIBUTE User-Name 1 string
ATTRIBUTE User-Password 2 string encrypt=1
ATTRIBUTE NAS-IP-Address 4 ipaddr
ATTRIBUTE NAS-Port 5 integer
ATTRIBUTE Service-Type 6 integer
ATTRIBUTE Framed-Protocol 7 integer
ATTRIBUTE Framed-IP-Address 8 ipaddr
ATTRIBUTE Framed-IP-Netmask 9 ipaddr
ATTRIBUTE Filter-Id 11 string
ATTRIBUTE Reply-Message 18 string
ATTRIBUTE Framed-Route 22 string
ATTRIBUTE State 24 octets
ATTRIBUTE Class 25 octets
ATTRIBUTE Session-Timeout 27 integer
ATTRIBUTE Idle-Timeout 28 integer
ATTRIBUTE Called-Station-Id 30 string
ATTRIBUTE Calling-Station-Id 31 string
ATTRIBUTE NAS-Identifier 32 string
ATTRIBUTE Proxy-State 33 octets
ATTRIBUTE Acct-Status-Type 40 integer
ATTRIBUTE Acct-Delay-Time 41 integer
ATTRIBUTE Acct-Input-Octets 42 integer
ATTRIBUTE Acct-Output-Octets 43 integer
ATTRIBUTE Acct-Session-Id 44 string
ATTRIBUTE Acct-Authentic 45 integer
ATTRIBUTE Acct-Session-Time 46 integer
ATTRIBUTE Acct-Input-Packets 47 integer
ATTRIBUTE Acct-Output-Packets 48 integer
ATTRIBUTE Acct-Terminate-Cause 49 integer
ATTRIBUTE Acct-Input-Gigawords 52 integer
ATTRIBUTE Acct-Output-Gigawords 53 integer
ATTRIBUTE Event-Timestamp 55 date
ATTRIBUTE NAS-Port-Type 61 integer
ATTRIBUTE Connect-Info 77 string
ATTRIBUTE Message-Authenticator 80 octets
ATTRIBUTE Acct-Interim-Interval 85 integer
ATTRIBUTE NAS-IPv6-Address 95 ipv6addr
ATTRIBUTE Framed-IPv6-Route 99 string
ATTRIBUTE Framed-IPv6-Address 168 ipv6addr
ATTRIBUTE DNS-Server-IPv6-Address 169 ipv6addr
VALUE Service-Type Framed-User 2
VALUE Service-Type Authenticate-Only 8
VALUE Framed-Protocol PPP 1
VALUE Acct-Status-Type Start 1
VALUE Acct-Status-Type Stop 2
VALUE Acct-Status-Type Interim-Update 3
VALUE Acct-Authentic RADIUS 1
VALUE NAS-Port-Type Async 0
VALUE NAS-Port-Type Virtual 5
VALUE Acct-Terminate-Cause User-Request 1
VALUE Acct-Terminate-Cause Lost-Carrier 2
VALUE Acct-Terminate-Cause Lost-Service 3
VALUE Acct-Terminate-Cause Idle-Timeout 4
VALUE Acct-Terminate-Cause Session-Timeout 5
VALUE Acct-Terminate-Cause Admin-Reset 6
VALUE Acct-Terminate-Cause NAS-Error 9
VALUE Acct-Terminate-Cause NAS-Request 10
VENDOR Microsoft 311
BEGIN-VENDOR Microsoft
ATTRIBUTE MS-Primary-DNS-Server 28 ipaddr
ATTRIBUTE MS-Secondary-DNS-Server 29 ipaddr
END-VENDOR Microsoft
"""

class RadiusError(ValueError):
    """A RADIUS reply we cannot act on (malformed, or an Accept we must refuse)."""


@functools.cache
def dictionary() -> Dictionary:
    return Dictionary(io.StringIO(DICTIONARY))


# --------------------------------------------------------------------------- attributes


def _values(pkt: rpacket.Packet, name: str) -> list[Any]:
    try:
        return list(pkt[name]) if name in pkt else []
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise RadiusError(f"attribute {name} does not decode: {exc}") from None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def parse_groups(class_values: list[bytes], filter_ids: list[str],
                 separator: str = ";") -> list[str]:
    """ocserv's parse_groupnames: ``OU=a;b;c`` lists groups, any other Class is one group
    name; only the first Class counts.  Filter-Id is our fallback when there is no Class."""
    if class_values:
        text = _text(class_values[0]).strip()
        if text.startswith("OU="):
            names = [g.strip() for g in text[3:].split(separator)]
            return [g for g in dict.fromkeys(names) if g]
        return [text] if text else []
    return [f for f in (_text(v).strip() for v in filter_ids[:1]) if f]


def _route(value: Any) -> str | None:
    """Framed-Route is ``prefix/len [gateway [metric]]``: only the prefix matters to us."""
    text = _text(value).strip().split(" ", 1)[0]
    if "/" not in text:
        return None
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


def parse_accept(reply: rpacket.Packet, groupconfig: bool,
                 separator: str = ";") -> SessionAttrs:
    """The session attributes of an Access-Accept; RadiusError when ocserv would refuse it
    (a Service-Type other than Framed-User)."""
    for service in _values(reply, "Service-Type"):
        if service != SERVICE_FRAMED:
            raise RadiusError(f"Access-Accept with Service-Type {service}")
    classes = [bytes(v) if isinstance(v, bytes) else _text(v).encode()
               for v in _values(reply, "Class")]
    attrs = SessionAttrs(groups=parse_groups(classes, _values(reply, "Filter-Id"), separator),
                         classes=[c.hex() for c in classes], groupconfig=groupconfig)
    for ip in _values(reply, "Framed-IP-Address"):
        # 255.255.255.254/255: "pick from the pool" / "let the client choose" (RFC 2865)
        if ip not in ("255.255.255.255", "255.255.255.254"):
            attrs.framed_ip = ip
    for mask in _values(reply, "Framed-IP-Netmask"):
        attrs.framed_netmask = mask
    for ip6 in _values(reply, "Framed-IPv6-Address"):
        attrs.framed_ipv6 = ip6
    for name in ("Framed-Route", "Framed-IPv6-Route"):
        attrs.routes += [r for r in map(_route, _values(reply, name)) if r]
    for name in ("MS-Primary-DNS-Server", "MS-Secondary-DNS-Server",
                 "DNS-Server-IPv6-Address"):
        attrs.dns += [str(v) for v in _values(reply, name)]
    for name, attr in (("Session-Timeout", "session_timeout"),
                       ("Idle-Timeout", "idle_timeout"),
                       ("Acct-Interim-Interval", "interim_interval")):
        for value in _values(reply, name):
            setattr(attrs, attr, int(value))
    return attrs


# --------------------------------------------------------------------------- Access-Request


@dataclass(frozen=True)
class LoginContext:
    username: str
    remote_ip: str
    user_agent: str = ""


def build_access_request(server: RadiusServer, conf: RadiusConf, nas_identifier: str,
                         login: LoginContext, password: str,
                         state: bytes | None = None) -> rpacket.AuthPacket:
    pkt = rpacket.AuthPacket(code=rpacket.AccessRequest, secret=server.secret,
                             dict=dictionary())
    pkt.add_message_authenticator()  # also fixes the id and Request Authenticator
    pkt["User-Name"] = login.username
    pkt["User-Password"] = pkt.PwCrypt(password)
    if conf.nas_ip:
        key = "NAS-IPv6-Address" if ":" in conf.nas_ip else "NAS-IP-Address"
        pkt[key] = conf.nas_ip
    if nas_identifier:
        pkt["NAS-Identifier"] = nas_identifier
    pkt["Calling-Station-Id"] = login.remote_ip
    if login.user_agent:
        pkt["Connect-Info"] = login.user_agent[:253]
    pkt["Service-Type"] = "Authenticate-Only"
    pkt["NAS-Port-Type"] = "Async"
    if state is not None:
        pkt["State"] = state
    return pkt


@dataclass(frozen=True)
class AccessResult:
    kind: str  # "accept" | "challenge" | "reject"
    message: str = ""  # Reply-Message (the challenge prompt)
    state: bytes | None = None
    attrs: SessionAttrs | None = None


def interpret_reply(reply: rpacket.Packet, groupconfig: bool,
                    separator: str = ";") -> AccessResult:
    message = "\n".join(_text(m) for m in _values(reply, "Reply-Message")).strip()
    if reply.code == rpacket.AccessAccept:
        return AccessResult("accept", message, attrs=parse_accept(reply, groupconfig,
                                                                  separator))
    if reply.code == rpacket.AccessChallenge:
        states = _values(reply, "State")
        if not states or not message:
            raise RadiusError("Access-Challenge without State or Reply-Message")
        return AccessResult("challenge", message, state=bytes(states[0]))
    if reply.code == rpacket.AccessReject:
        return AccessResult("reject", message)
    raise RadiusError(f"unexpected RADIUS reply code {reply.code}")


class Unreachable(Exception):
    """No configured server answered (validly) in time."""


def exchange(pkt: rpacket.Packet, server: RadiusServer, port: int, timeout: float,
             tries: int, cancelled: threading.Event | None = None) -> rpacket.Packet:
    """Send ``pkt`` up to ``tries`` times and return the first reply that verifies; a
    reply with a wrong authenticator is ignored (as pyrad's client does), not trusted."""
    raw = pkt.RequestPacket()
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    addr = socket.getaddrinfo(server.host, port, family, socket.SOCK_DGRAM)[0][4]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for _attempt in range(tries):
            sock.sendto(raw, addr)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if cancelled is not None and cancelled.is_set():
                    raise Unreachable("cancelled")
                ready, _, _ = select.select([sock], [], [], min(left, 0.5))
                if not ready:
                    continue
                data = sock.recv(4096)
                try:
                    reply = pkt.CreateReply(packet=data)
                except rpacket.PacketError as exc:
                    log.warning("malformed RADIUS reply from %s: %s", server.host, exc)
                    continue
                if pkt.VerifyReply(reply, data):
                    return reply
                log.warning("RADIUS reply from %s:%d failed verification (wrong secret?); "
                            "ignored", server.host, port)
    raise Unreachable(f"{server.host}:{port} did not answer")


# --------------------------------------------------------------------------- auth back-end


class RadiusAuth:
    """auth = radius[config=FILE,groupconfig=true,nas-identifier=NAME,group-separator=...]"""

    name = "radius"

    def __init__(self, conf: RadiusConf, *, groupconfig: bool = False,
                 nas_identifier: str = "", separator: str = ";",
                 answer_timeout: float = 240.0) -> None:
        if not conf.auth_servers:
            raise RadiusConfError("the RADIUS configuration has no 'authserver'")
        self.conf = conf
        self.groupconfig = groupconfig
        self.nas_identifier = nas_identifier or conf.nas_identifier
        self.separator = separator
        self.answer_timeout = answer_timeout
        self._slots = threading.BoundedSemaphore(MAX_RADIUS_CONVERSATIONS)

    @classmethod
    def from_params(cls, params: dict[str, str], answer_timeout: float) -> RadiusAuth:
        path = params.get("config") or DEFAULT_RADCLI
        separator = "," if params.get("group-separator") == "comma" else ";"
        return cls(load_radius_conf(path),
                   groupconfig=params.get("groupconfig", "").lower() in ("true", "yes", "1"),
                   nas_identifier=params.get("nas-identifier", ""), separator=separator,
                   answer_timeout=answer_timeout)

    def start(self, username: str, remote_ip: str, notify: Callable[[], None],
              user_agent: str = "") -> RadiusConversation:
        return RadiusConversation(self, LoginContext(self._realm(username), remote_ip,
                                                     user_agent), notify)

    def all_groups(self) -> list[str]:
        return []  # RADIUS cannot be asked for every group

    def _realm(self, username: str) -> str:
        realm = self.conf.default_realm
        return f"{username}@{realm}" if realm and "@" not in username else username

    def ask(self, login: LoginContext, password: str, state: bytes | None,
            cancelled: threading.Event) -> AccessResult:
        """One Access-Request, failing over through the authservers in order."""
        for server in self.conf.auth_servers:
            pkt = build_access_request(server, self.conf, self.nas_identifier, login,
                                       password, state)
            try:
                reply = exchange(pkt, server, server.port, self.conf.timeout,
                                 self.conf.retries, cancelled)
            except (Unreachable, OSError) as exc:
                log.warning("RADIUS server %s:%d: %s", server.host, server.port, exc)
                continue
            return interpret_reply(reply, self.groupconfig, self.separator)
        raise Unreachable("no RADIUS server answered")


class RadiusConversation(ThreadedConversation):
    """One login: the password prompt, then Access-Request/Challenge rounds in a thread."""

    def __init__(self, backend: RadiusAuth, login: LoginContext,
                 notify: Callable[[], None]) -> None:
        super().__init__(notify)
        self._backend = backend
        self._login = login
        if not backend._slots.acquire(blocking=False):
            log.warning("too many RADIUS logins in progress; refusing '%s'", login.username)
            self._events.put(Verdict(False, reason="too many RADIUS conversations"))
            return
        self._events.put(Prompt(PASSWORD_PROMPT))
        threading.Thread(target=self._run, name="radius-conversation", daemon=True).start()

    def _run(self) -> None:
        try:
            verdict = self._dialogue()
        except Exception as exc:  # noqa: BLE001 - a bad server must not kill the sec-mod
            log.exception("RADIUS conversation failed")
            verdict = Verdict(False, reason=f"internal error: {type(exc).__name__}")
        finally:
            self._backend._slots.release()
        if verdict is not None:
            self._emit(verdict)

    def _wait_answer(self) -> str | None:
        try:
            return self._answers.get(timeout=self._backend.answer_timeout)
        except queue.Empty:
            return None

    def _dialogue(self) -> Verdict | None:
        state: bytes | None = None
        for _round in range(MAX_CHALLENGES + 1):
            answer = self._wait_answer()
            if answer is None or self._closed.is_set():
                return None
            try:
                result = self._backend.ask(self._login, answer, state, self._closed)
            except Unreachable:
                if self._closed.is_set():
                    return None
                log.error("RADIUS: no server answered for '%s'", self._login.username)
                return Verdict(False, reason="RADIUS server unreachable", error=UNREACHABLE)
            except RadiusError as exc:
                log.warning("RADIUS refused '%s': %s", self._login.username, exc)
                return Verdict(False, reason=str(exc))
            if result.kind == "accept":
                assert result.attrs is not None
                log.info("RADIUS accepted '%s'%s", self._login.username,
                         f" (groups {','.join(result.attrs.groups)})"
                         if result.attrs.groups else "")
                return Verdict(True, tuple(result.attrs.groups),
                               extra=result.attrs.to_wire())
            if result.kind == "reject":
                return Verdict(False, reason="Access-Reject" + (
                    f": {result.message}" if result.message else ""))
            state = result.state
            self._emit(Prompt(result.message))
        return Verdict(False, reason=f"more than {MAX_CHALLENGES} Access-Challenges")
