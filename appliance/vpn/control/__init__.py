"""The control socket: how occtl and the web UI read main's state and give it orders.

ocserv speaks protobuf over its occtl socket; nothing outside ocserv's own occtl speaks that,
so we use newline-delimited JSON instead (docs/control-protocol.md): one request line, one
response line, and for ``show events`` a stream of event lines after the response. The wire
carries raw values (bytes, epoch seconds, lists); presenting them the way ocserv's occtl does
is the client's job (appliance/vpn/occtl.py), so the web UI gets the same data unformatted.

The protocol core (parsing, framing, limits, dispatch) is sans-IO: bytes and ``now`` in,
bytes out. :class:`ControlServer` is the thin shell that plugs it into main's single-threaded
selector loop. Nothing a client sends can raise into main: bad input becomes an error
response, and a client that misbehaves (too big, too slow, idle) is disconnected.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import selectors
import socket
import stat
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

from .. import wire

log = logging.getLogger("ocgate.control")

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

T = TypeVar("T")


class ControlError(ValueError):
    """A request or reply that breaks the control protocol (docs/control-protocol.md)."""


# --- records -------------------------------------------------------------------------------


@dataclass
class UserInfo:
    """One connection, with everything ocserv's occtl shows for it (protocol.md section 9).

    ``ipv4``/``ipv6`` are the client's VPN addresses and ``ptp_*`` the server's tun end;
    ``local_ip`` is the server address the client contacted. ``rx`` is what came from the
    client, ``tx`` what was sent to it. Times are epoch seconds. Routes are strings in
    ocserv's form (``192.0.2.0/255.255.255.0``; scripts.format_route makes them).
    ``limit_rx``/``limit_tx`` are bytes per second, 0 meaning no limit.
    """

    id: int
    username: str
    groupname: str = ""
    state: str = "connected"
    vhost: str = "default"
    device: str = ""
    mtu: int = 0
    remote_ip: str = ""
    local_ip: str = ""
    ipv4: str = ""
    ptp_ipv4: str = ""
    ipv6: str = ""
    ptp_ipv6: str = ""
    user_agent: str = ""
    rx: int = 0
    tx: int = 0
    connected_at: float = 0.0
    session_started_at: float = 0.0
    dpd: int = 0
    keepalive: int = 0
    hostname: str = ""
    full_session_id: str = ""
    tls_ciphersuite: str = ""
    dtls_cipher: str = ""
    cstp_compression: str = ""
    dtls_compression: str = ""
    dns: list[str] = field(default_factory=list)
    nbns: list[str] = field(default_factory=list)
    split_dns: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    no_routes: list[str] = field(default_factory=list)
    iroutes: list[str] = field(default_factory=list)
    restrict_to_routes: bool = False
    restrict_to_ports: list[str] = field(default_factory=list)
    limit_rx: int = 0
    limit_tx: int = 0


@dataclass
class SessionInfo:
    """A session (cookie) the security module knows, connected or not.

    ``state`` is ocserv's: authenticated, authenticating, pre-auth or auth failed.
    ``expires`` is None while a connection uses the session.
    """

    full_session_id: str
    username: str = ""
    groupname: str = ""
    vhost: str = "default"
    user_agent: str = ""
    remote_ip: str = ""
    created: float = 0.0
    expires: float | None = None
    state: str = "authenticated"
    in_use: int = 0
    session_is_open: bool = False
    tls_auth_ok: bool = False


@dataclass
class BanInfo:
    """An address with ban points; ``expires`` is set (epoch) while it is banned."""

    ip: str
    score: int = 0
    expires: float | None = None


@dataclass
class StatusInfo:
    """Server status and statistics, as ocserv's ``show status`` reports them.

    Times in seconds (epoch for ``up_since``/``last_reset``), latencies in microseconds,
    ``rx``/``tx`` in bytes.
    """

    status: str = "online"
    server_pid: int = 0
    secmod_pid: int = 0
    secmod_instances: int = 1
    up_since: float = 0.0
    active_sessions: int = 0
    total_sessions: int = 0
    total_auth_failures: int = 0
    banned_ips: int = 0
    secmod_client_entries: int = 0
    tls_db_entries: int = 0
    median_latency_us: int = 0
    stdev_latency_us: int = 0
    last_reset: float = 0.0
    sessions_handled: int = 0
    timed_out_sessions: int = 0
    timed_out_idle_sessions: int = 0
    closed_error_sessions: int = 0
    auth_failures: int = 0
    avg_auth_time: int = 0
    max_auth_time: int = 0
    avg_session_time: int = 0
    max_session_time: int = 0
    min_mtu: int = 0
    max_mtu: int = 0
    rx: int = 0
    tx: int = 0


class ControlProvider(Protocol):
    """What main implements; every method runs inside main's loop and must not block long."""

    def status(self) -> StatusInfo | dict[str, Any]: ...
    def users(self) -> list[UserInfo]: ...
    def sessions(self) -> list[SessionInfo]: ...
    def bans(self) -> list[BanInfo]: ...
    def disconnect_user(self, name: str) -> int: ...
    def disconnect_id(self, id: int) -> bool: ...
    def unban(self, ip: str) -> bool: ...
    def reload(self) -> str: ...
    def stop(self) -> None: ...


#: ocserv's disconnect reason texts (common.c discon_reason_to_str), keyed by main's reasons.
DISCONNECT_REASONS = {
    "user": "user disconnected",
    "temporary": "anyconnect client disconnected",
    "server": "server disconnected",
    "idle": "idle timeout",
    "dpd": "DPD timeout",
    "error": "unspecified error",
    "session-timeout": "session timeout",
}


def make_event(kind: str, user: UserInfo, reason: str = "") -> dict[str, Any]:
    """The event object ``show events`` subscribers get; ``kind`` is connect or disconnect."""
    if kind not in ("connect", "disconnect"):
        raise ValueError(f"unknown event kind {kind!r}")
    event: dict[str, Any] = {"type": kind, "user": asdict(user)}
    if kind == "disconnect":
        event["reason"] = DISCONNECT_REASONS.get(reason, reason or "unspecified")
    return event


# --- decoding records from the wire (for clients) -------------------------------------------


def from_wire(cls: type[T], obj: object) -> T:
    """A record from a reply, every field type-checked by the shared codec (wire.py);
    unknown keys are ignored (newer servers may add fields)."""
    try:
        return wire.from_obj(cls, obj, ignore_unknown=True)
    except wire.WireError as exc:
        raise ControlError(str(exc)) from None


# --- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One argument a command takes; every command argument is required."""

    name: str
    kind: str  # "name" | "id" | "sid" | "ip"


_NAME = Arg("name", "name")
_ID = Arg("id", "id")
_SID = Arg("sid", "sid")
_IP = Arg("ip", "ip")

#: Every command and its arguments. Adding a command or a field is compatible; changing one
#: is not and needs a new protocol version.
COMMANDS: dict[str, tuple[Arg, ...]] = {
    "hello": (),
    "show status": (),
    "show users": (),
    "show user": (_NAME,),
    "show id": (_ID,),
    "show sessions all": (),
    "show sessions valid": (),
    "show session": (_SID,),
    "show ip bans": (),
    "show ip ban points": (),
    "show iroutes": (),
    "show events": (),
    "disconnect user": (_NAME,),
    "disconnect id": (_ID,),
    "terminate user": (_NAME,),
    "terminate id": (_ID,),
    "terminate session": (_SID,),
    "unban ip": (_IP,),
    "reload": (),
    "stop now": (),
}

MAX_NAME = 256
MAX_SID = 64
MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class Request:
    v: int
    cmd: str
    args: dict[str, Any]


def _loads(line: bytes) -> Any:
    try:
        return wire.loads(line)
    except wire.WireError as exc:
        raise ControlError(str(exc)) from None


def _check_arg(spec: Arg, value: Any) -> Any:
    if spec.kind == "id":
        if type(value) is not int or not 0 < value <= MAX_ID:
            raise ControlError(f"'{spec.name}' must be a positive integer")
        return value
    if not isinstance(value, str) or not value:
        raise ControlError(f"'{spec.name}' must be a non-empty string")
    if spec.kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ControlError(f"'{spec.name}' is not an IP address") from None
    limit = MAX_SID if spec.kind == "sid" else MAX_NAME
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise ControlError(f"'{spec.name}' is too long or holds control characters")
    return value


def parse_request(line: bytes) -> Request:
    """One request line (without its newline) → Request; ControlError for anything else."""
    obj = _loads(line)
    if not isinstance(obj, dict):
        raise ControlError("a request must be a JSON object")
    unknown = set(obj) - {"v", "cmd", "args"}
    if unknown:
        raise ControlError(f"unknown request keys: {', '.join(sorted(unknown))}")
    version = obj.get("v")
    if type(version) is not int:
        raise ControlError("'v' (the protocol version) must be an integer")
    if version not in SUPPORTED_VERSIONS:
        raise ControlError(f"unsupported protocol version {version}")
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise ControlError("unknown command" if isinstance(cmd, str) else "'cmd' must be a string")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ControlError("'args' must be an object")
    specs = COMMANDS[cmd]
    extra = set(args) - {s.name for s in specs}
    if extra:
        raise ControlError(f"unknown arguments for '{cmd}': {', '.join(sorted(extra))}")
    checked: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in args:
            raise ControlError(f"'{cmd}' needs the argument '{spec.name}'")
        checked[spec.name] = _check_arg(spec, args[spec.name])
    return Request(version, cmd, checked)


def encode(message: Mapping[str, Any]) -> bytes:
    """One line of the protocol. ASCII-only, so a reader never meets a split UTF-8 sequence."""
    return wire.dumps(message) + b"\n"


def ok_reply(data: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": True, "data": data}


def error_reply(message: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": False, "error": message}


def event_message(event: Mapping[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "event": dict(event)}


# --- dispatch ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    message: dict[str, Any]
    subscribe: bool = False  # the client now gets events until it closes


def _status(value: StatusInfo | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, StatusInfo):
        return asdict(value)
    if isinstance(value, Mapping):
        return {**asdict(StatusInfo()), **value}
    raise TypeError(f"status() returned {type(value).__name__}")


class Dispatcher:
    """Runs one parsed request against the provider; a provider failure becomes an error."""

    def __init__(self, provider: ControlProvider) -> None:
        self.provider = provider

    def handle(self, req: Request, now: float) -> Reply:
        handler = getattr(self, "_" + req.cmd.replace(" ", "_"))
        try:
            result = handler(now=now, **req.args)
        except Exception:  # noqa: BLE001 - a provider bug must not take main down
            log.exception("control command '%s' failed", req.cmd)
            return Reply(error_reply("internal error"))
        if isinstance(result, Reply):
            return result
        return Reply(ok_reply(result))

    def _users(self) -> list[UserInfo]:
        return list(self.provider.users())

    def _hello(self, now: float) -> dict[str, Any]:
        return {"server": "ocgate", "versions": list(SUPPORTED_VERSIONS),
                "commands": sorted(COMMANDS)}

    def _show_status(self, now: float) -> dict[str, Any]:
        return _status(self.provider.status())

    def _show_users(self, now: float) -> list[dict[str, Any]]:
        return [asdict(u) for u in self._users()]

    def _show_user(self, now: float, name: str) -> list[dict[str, Any]]:
        return [asdict(u) for u in self._users() if u.username == name]

    def _show_id(self, now: float, id: int) -> list[dict[str, Any]]:
        return [asdict(u) for u in self._users() if u.id == id]

    def _show_sessions_all(self, now: float) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.provider.sessions()]

    def _show_sessions_valid(self, now: float) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.provider.sessions() if s.state == "authenticated"]

    def _show_session(self, now: float, sid: str) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.provider.sessions()
                if s.full_session_id.startswith(sid)]

    def _show_ip_bans(self, now: float) -> list[dict[str, Any]]:
        return [asdict(b) for b in self.provider.bans()
                if b.expires is not None and b.expires > now]

    def _show_ip_ban_points(self, now: float) -> list[dict[str, Any]]:
        return [asdict(b) for b in self.provider.bans()]

    def _show_iroutes(self, now: float) -> list[dict[str, Any]]:
        return [{"id": u.id, "username": u.username, "vhost": u.vhost, "device": u.device,
                 "ipv4": u.ipv4, "ipv6": u.ipv6, "iroutes": list(u.iroutes)}
                for u in self._users()]

    def _show_events(self, now: float) -> Reply:
        return Reply(ok_reply({"users": self._show_users(now)}), subscribe=True)

    def _disconnect_user(self, now: float, name: str) -> dict[str, Any]:
        return {"count": int(self.provider.disconnect_user(name))}

    def _disconnect_id(self, now: float, id: int) -> dict[str, Any]:
        return {"disconnected": bool(self.provider.disconnect_id(id))}

    # terminate = disconnect + invalidate the cookie; until the provider can invalidate
    # (terminate_user/terminate_id/terminate_session), it is a plain disconnect.
    def _terminate_user(self, now: float, name: str) -> dict[str, Any]:
        method = getattr(self.provider, "terminate_user", self.provider.disconnect_user)
        return {"count": int(method(name))}

    def _terminate_id(self, now: float, id: int) -> dict[str, Any]:
        method = getattr(self.provider, "terminate_id", self.provider.disconnect_id)
        return {"disconnected": bool(method(id))}

    def _terminate_session(self, now: float, sid: str) -> dict[str, Any]:
        method = getattr(self.provider, "terminate_session", None)
        if method is not None:
            return {"count": int(method(sid))}
        count = sum(1 for u in self._users() if u.full_session_id.startswith(sid)
                    and self.provider.disconnect_id(u.id))
        return {"count": count}

    def _unban_ip(self, now: float, ip: str) -> dict[str, Any]:
        return {"unbanned": bool(self.provider.unban(ip))}

    def _reload(self, now: float) -> dict[str, Any]:
        return {"message": str(self.provider.reload())}

    def _stop_now(self, now: float) -> dict[str, Any]:
        self.provider.stop()
        return {"message": "server scheduled to stop"}


# --- one client, sans-IO --------------------------------------------------------------------


SEND_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds per client and per server; the defaults suit an appliance with a few admins."""

    max_request: int = 64 * 1024  # one request line
    max_reply: int = 16 * 1024 * 1024  # one encoded response
    max_event_backlog: int = 1024 * 1024  # unsent events before a subscriber is dropped
    idle_timeout: float = 30.0  # seconds without progress
    max_clients: int = 32


class ClientConn:
    """One control client: bytes in, requests dispatched in order, bytes out.

    Requests are answered one at a time: the next line is only parsed once the previous
    response has been sent, so a client that does not read cannot make us queue answers.
    """

    def __init__(self, dispatcher: Dispatcher, limits: Limits, now: float) -> None:
        self.dispatcher = dispatcher
        self.limits = limits
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.last_progress = now
        self.subscribed = False
        self.eof = False
        self.closing = False  # say no more: close once the output is sent

    # input
    @property
    def wants_read(self) -> bool:
        if self.eof or self.closing:
            return False
        return self.subscribed or not self.outbuf

    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the client; b"" is its end of input."""
        if self.closing:
            return
        if not data:
            self.eof = True
        elif self.subscribed:
            self.last_progress = now
            return  # subscribers have nothing more to say; only their EOF matters
        else:
            self.last_progress = now
            self.inbuf += data
            if len(self.inbuf) > 4 * self.limits.max_request:
                self._fail("too much unanswered input")  # a shell that ignored wants_read
                return
        self.process(now)

    def process(self, now: float) -> None:
        """Answer buffered requests while nothing is waiting to be sent."""
        while not self.outbuf and not self.closing and not self.subscribed:
            end = self.inbuf.find(b"\n", 0, self.limits.max_request + 1)
            if end < 0:
                if len(self.inbuf) > self.limits.max_request:
                    self._fail("request too large")
                elif self.eof and self.inbuf.strip():
                    line = bytes(self.inbuf)  # a last request without its newline
                    self.inbuf.clear()
                    self._answer(line, now)
                return
            line = bytes(self.inbuf[:end])
            del self.inbuf[:end + 1]
            if line.strip():
                self._answer(line, now)

    def _answer(self, line: bytes, now: float) -> None:
        try:
            reply = self.dispatcher.handle(parse_request(line.rstrip(b"\r")), now)
        except ControlError as exc:
            self.outbuf += encode(error_reply(str(exc)))
            return
        data = encode(reply.message)
        if len(data) > self.limits.max_reply:
            log.warning("control reply of %d bytes exceeds the limit", len(data))
            data = encode(error_reply("response too large"))
            reply = Reply(reply.message)
        self.outbuf += data
        if reply.subscribe:
            self.subscribed = True
            self.inbuf.clear()

    def _fail(self, message: str) -> None:
        self.outbuf += encode(error_reply(message))
        self.inbuf.clear()
        self.closing = True

    # output
    def pending(self) -> bytes:
        """The next bytes to send (a bounded slice, so a big reply is not copied per send)."""
        return bytes(self.outbuf[:SEND_CHUNK])

    def sent(self, count: int, now: float) -> None:
        if count > 0:
            del self.outbuf[:count]
            self.last_progress = now
        if not self.outbuf:
            self.process(now)

    def push_event(self, line: bytes) -> None:
        """Queue an encoded event line; a subscriber that falls too far behind is dropped."""
        if not self.subscribed or self.closing:
            return
        if len(self.outbuf) + len(line) > self.limits.max_event_backlog:
            log.warning("dropping a 'show events' client that does not keep up")
            self.closing = True
            self.outbuf.clear()
            return
        self.outbuf += line

    # lifetime
    @property
    def done(self) -> bool:
        """Nothing more to send and nothing more to receive: close the socket."""
        if self.outbuf:
            return False
        if self.closing:
            return True
        return self.eof and (self.subscribed or not self.inbuf.strip())

    def expired(self, now: float) -> bool:
        if self.subscribed and not self.outbuf:
            return False  # a quiet subscriber is simply waiting for events
        return now - self.last_progress > self.limits.idle_timeout


# --- the socket shell ----------------------------------------------------------------------

_PEERCRED = struct.Struct("3i")


def _same_inode(path: str, ident: tuple[int, int]) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident


def bind_socket(path: str, backlog: int = 16) -> tuple[socket.socket, tuple[int, int]]:
    """A listening unix socket at ``path``, mode 0600, put in place by one rename.

    Binding a hidden name under umask 0177 and renaming it over ``path`` means the
    socket never exists with looser permissions and occtl never finds the path missing
    while we restart. Something at ``path`` that is not a socket is left alone.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(f"{path} exists and is not a socket; not replacing it")
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(tmp)
        finally:
            os.umask(old)
        try:
            os.chmod(tmp, 0o600)
            sock.listen(backlog)
            sock.setblocking(False)
            tmp_st = os.lstat(tmp)
            os.rename(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except BaseException:
        sock.close()
        raise
    return sock, (tmp_st.st_dev, tmp_st.st_ino)


class ControlServer:
    """The control socket inside main's selector loop.

    Callbacks follow main's convention: each registered object's ``data`` is a callable
    taking the ready file object. ``sweep`` must be called about once a second to enforce
    the idle timeout; it is also run on every accept.
    """

    def __init__(self, path: str, provider: ControlProvider, *, limits: Limits | None = None,
                 clock: Callable[[], float] | None = None,
                 allowed_uids: frozenset[int] | None = None) -> None:
        self.path = path
        self.limits = limits or Limits()
        self.clock = clock or time.time
        self.allowed_uids = allowed_uids if allowed_uids is not None else frozenset(
            {0, os.geteuid()})
        self.dispatcher = Dispatcher(provider)
        self.listener, self._ident = bind_socket(path)
        self.sel: selectors.BaseSelector | None = None
        self._clients: dict[int, tuple[socket.socket, ClientConn]] = {}
        self._masks: dict[int, int] = {}
        log.info("control socket listening on %s", path)

    def fileno(self) -> int:
        return self.listener.fileno()

    def register(self, sel: selectors.BaseSelector) -> None:
        self.sel = sel
        sel.register(self.listener, selectors.EVENT_READ, self._on_accept)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    # accept
    def _on_accept(self, listener: socket.socket) -> None:
        self.sweep()
        for _ in range(16):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("control accept failed: %s", exc)
                return
            try:
                self._admit(sock)
            except Exception:  # noqa: BLE001 - never into main's loop
                log.exception("control client setup failed")
                self._drop(sock)

    def _admit(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            _pid, uid, _gid = _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        except OSError:
            uid = -1
        if uid not in self.allowed_uids:
            log.warning("control connection from uid %d refused", uid)
            sock.close()
            return
        if len(self._clients) >= self.limits.max_clients:
            log.warning("control connection refused: %d clients already", len(self._clients))
            try:
                sock.send(encode(error_reply("too many control clients")), socket.MSG_NOSIGNAL)
            except OSError:
                pass
            sock.close()
            return
        conn = ClientConn(self.dispatcher, self.limits, self.clock())
        self._clients[sock.fileno()] = (sock, conn)
        self._masks[sock.fileno()] = 0
        self._update(sock, conn)

    # clients
    def _on_client(self, sock: socket.socket) -> None:
        entry = self._clients.get(sock.fileno())
        if entry is None:
            return
        conn = entry[1]
        try:
            self._flush(sock, conn)
            if conn.wants_read:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                if data is not None:
                    conn.receive(data, self.clock())
                    self._flush(sock, conn)
        except OSError as exc:
            log.debug("control client gone: %s", exc)
            self._drop(sock)
            return
        except Exception:  # noqa: BLE001 - never into main's loop
            log.exception("control client handling failed")
            self._drop(sock)
            return
        self._update(sock, conn)

    def _flush(self, sock: socket.socket, conn: ClientConn) -> None:
        while conn.outbuf:
            try:
                count = sock.send(conn.pending(), socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return
            conn.sent(count, self.clock())

    def _update(self, sock: socket.socket, conn: ClientConn) -> None:
        """Close a finished client, or watch it for what it needs next."""
        if conn.done:
            self._drop(sock)
            return
        mask = (selectors.EVENT_READ if conn.wants_read else 0) | (
            selectors.EVENT_WRITE if conn.outbuf else 0)
        fd = sock.fileno()
        current = self._masks.get(fd, 0)
        if mask == current or self.sel is None:
            return
        if current and mask:
            self.sel.modify(sock, mask, self._on_client)
        elif mask:
            self.sel.register(sock, mask, self._on_client)
        else:
            self.sel.unregister(sock)
        self._masks[fd] = mask

    def _drop(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        self._clients.pop(fd, None)
        if self._masks.pop(fd, 0) and self.sel is not None:
            try:
                self.sel.unregister(sock)
            except (KeyError, ValueError):
                pass
        sock.close()

    def sweep(self, now: float | None = None) -> None:
        """Close clients that made no progress within the idle timeout."""
        now = self.clock() if now is None else now
        for sock, conn in list(self._clients.values()):
            if conn.expired(now):
                log.info("closing an idle control client")
                self._drop(sock)

    # events
    def publish_event(self, event: dict[str, Any]) -> None:
        """Send an event (see make_event) to every ``show events`` subscriber."""
        subscribers = [(s, c) for s, c in self._clients.values() if c.subscribed]
        if not subscribers:
            return
        try:
            line = encode(event_message(event))
        except (TypeError, ValueError) as exc:
            log.error("control event is not JSON-serialisable: %s", exc)
            return
        for sock, conn in subscribers:
            try:
                conn.push_event(line)
                self._flush(sock, conn)
                self._update(sock, conn)
            except Exception as exc:  # noqa: BLE001 - never into main's loop
                log.debug("control subscriber gone: %s", exc)
                self._drop(sock)

    # shutdown
    def close(self) -> None:
        """Stop serving: close every client and the listener, and remove our socket file."""
        for sock, _conn in list(self._clients.values()):
            self._drop(sock)
        if self.sel is not None:
            try:
                self.sel.unregister(self.listener)
            except (KeyError, ValueError):
                pass
        if self.listener.fileno() >= 0:
            self.listener.close()
            if _same_inode(self.path, self._ident):
                try:
                    os.unlink(self.path)
                except OSError:
                    pass

    def close_in_child(self) -> None:
        """In a forked worker or sec-mod: drop our descriptors, leave the socket file be.

        Without this a worker would inherit the listening socket and could accept admin
        connections itself.
        """
        for sock, _conn in self._clients.values():
            sock.close()
        self._clients.clear()
        self._masks.clear()
        self.listener.close()
        self.sel = None
