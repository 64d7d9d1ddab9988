"""The control protocol core, sans-IO: requests, replies, dispatch, one client."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .. import wire
from .schema import (
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    ControlError,
    ControlProvider,
    StatusInfo,
    UserInfo,
)

log = logging.getLogger(__name__)


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
