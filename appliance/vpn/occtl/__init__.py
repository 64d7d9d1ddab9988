"""occtl for OCGate: the same commands, tables and JSON as ocserv 1.1.6's occtl.

Admins script against occtl's output, so the text layout and the JSON keys, types and order
follow what ocserv 1.1.6 prints (protocol.md section 9, checked against the real tool). Where
1.1.6 prints invalid JSON (``show sessions``, ``show iroutes``, duplicate keys), we print the
valid JSON a parser would have wanted. The server side speaks the JSON-lines control protocol
of appliance/vpn/control.py; this module only talks to it and formats.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..control import (
    PROTOCOL_VERSION,
    BanInfo,
    ControlError,
    SessionInfo,
    StatusInfo,
    UserInfo,
    from_wire,
)

VERSION = "0.1.0"
DEFAULT_CONFIG = "/etc/ocserv/ocserv.conf"
DEFAULT_SOCKET = "/var/run/occtl.socket"
TIMEOUT = 10.0  # occtl's DEFAULT_TIMEOUT
MAX_REPLY = 64 * 1024 * 1024
HISTORY_FILE = "~/.occtl_history"
NO_USER = "(none)"
ERR_SERVER_UNREACHABLE = (
    "could not send message; possibly insufficient permissions or server is offline.")
EXIT = -1  # what exit/quit return, so interactive mode knows to leave


# --- how occtl formats numbers, sizes and times ---------------------------------------------


def ival7(seconds: float) -> str:
    """occtl's compact interval (procps' w): '    5s', ' 3m:07s', ' 2h:05m', ' 3days'."""
    t = int(seconds)
    if t < 0:
        return "   ?   "
    if t >= 48 * 3600:
        return f"{t // 86400:2d}days"
    if t >= 3600:
        return f"{t // 3600:2d}h:{t // 60 % 60:02d}m"
    if t > 60:
        return f"{t // 60:2d}m:{t % 60:02d}s"
    return f"{t:5d}s"


def since(now: float, then: float) -> str:
    """Whole seconds elapsed as C's time(0) - t computes them."""
    return ival7(int(now) - int(then))


def bytes2human(count: int, suffix: str = "") -> str:
    """Decimal units with one decimal, as occtl: 1000 is still '1000 bytes'."""
    if 1000 < count < 1000**2:
        return f"{count / 1000:.1f} KB{suffix}"
    if 1000**2 <= count < 1000**3:
        return f"{count / 1000**2:.1f} MB{suffix}"
    if count >= 1000**3:
        return f"{count / 1000**3:.1f} GB{suffix}"
    return f"{count} bytes{suffix}"


def time2human(microseconds: int) -> str:
    if microseconds < 1000:
        return "<1ms"
    if microseconds < 1000000:
        return f"{microseconds // 1000}ms"
    return f"{microseconds // 1000000}s"


def date_str(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def short_sid(full: str) -> str:
    return full[:6]


def dtls_column(cipher: str) -> str:
    """The table's dtls-cipher column: '(AES-256-GCM)' out of '(DTLS1.2)-(PSK)-(AES-256-GCM)'."""
    if len(cipher) > 16 and cipher.startswith("(DTLS") and cipher[8:16] in (
            ")-(RSA)-", ")-(PSK)-"):
        return cipher[16:]
    return "(no-dtls)"


# --- JSON in occtl's layout -----------------------------------------------------------------

JsonValue = str | int | list[str]


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_object(fields: dict[str, JsonValue]) -> str:
    """One object as occtl lays it out ('"key":  value', lists after a tab), valid JSON."""
    lines = []
    for key, value in fields.items():
        if isinstance(value, list):
            lines.append(f"    {_q(key)}:\t[{', '.join(_q(v) for v in value)}]")
        elif isinstance(value, int):
            lines.append(f"    {_q(key)}:  {value}")
        else:
            lines.append(f"    {_q(key)}:  {_q(value)}")
    body = ",\n".join(lines)
    return f"  {{\n{body}\n  }}" if lines else "  {\n  }"


def json_array(objects: list[dict[str, JsonValue]]) -> str:
    if not objects:
        return "[\n]\n"
    return "[\n" + ",\n\n".join(json_object(o) for o in objects) + "\n]\n"


class Record:
    """Fields of one printed block, rendered as occtl's tab-indented text or as JSON.

    The same sequence of calls yields both forms, as in occtl's print.c, so the two can never
    disagree on which fields exist. Empty strings are left out of both, as occtl does.
    """

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.fields: dict[str, JsonValue] = {}
        self.lines: list[str] = []

    def text(self, line: str) -> None:
        if not self.json_mode:
            self.lines.append(line + "\n")

    def sep(self) -> None:
        self.text("")

    def json(self, name: str, value: JsonValue) -> None:
        if self.json_mode:
            self.fields[name] = value

    def single(self, name: str, value: str | int) -> None:
        if isinstance(value, str) and not value:
            return
        self.json(name, value)
        self.text(f"\t{name}: {value}")

    def ex(self, name: str, value: str, extra: str) -> None:
        if not value:
            return
        self.json(name, value)
        self.json("_" + name, extra)
        self.text(f"\t{name}: {value} ({extra})")

    def pair(self, name1: str, value1: str, name2: str, value2: str) -> None:
        if value1:
            self.json(name1, value1)
        if value2:
            self.json(name2, value2)
        if self.json_mode or not (value1 or value2):
            return
        line = f"\t{name1}: {value1}" if value1 else ""
        if value2:
            line += f"   {name2}: {value2}"
        self.lines.append(line + "\n")

    def items(self, name: str, values: list[str]) -> int:
        self.json(name, list(values))
        for i, value in enumerate(values):
            self.text(f"\t{name}: {value}" if i == 0 else f"\t\t{value}")
        return len(values)

    def ports(self, name: str, values: list[str]) -> None:
        self.json(name, list(values))
        self.text(f"\t{name}: {', '.join(values)}" if values else "")

    def render(self) -> str:
        return json_object(self.fields) if self.json_mode else "".join(self.lines)


# --- the records occtl prints ---------------------------------------------------------------


def user_record(u: UserInfo, now: float, json_mode: bool) -> Record:
    r = Record(json_mode)
    r.single("ID", u.id)
    r.pair("Username", u.username or NO_USER, "Groupname", u.groupname or NO_USER)
    r.single("State", u.state)
    r.single("vhost", u.vhost)
    if u.mtu > 0:
        r.pair("Device", u.device, "MTU", str(u.mtu))
    else:
        r.single("Device", u.device)
    r.pair("Remote IP", u.remote_ip, "Location", "unknown")
    r.single("Local Device IP", u.local_ip)
    if u.ipv4 and u.ptp_ipv4:
        r.pair("IPv4", u.ipv4, "P-t-P IPv4", u.ptp_ipv4)
    if u.ipv6 and u.ptp_ipv6:
        r.pair("IPv6", u.ipv6, "P-t-P IPv6", u.ptp_ipv6)
    r.single("User-Agent", u.user_agent)
    _limits(r, u)
    if u.device:
        _traffic(r, u, now)
    r.pair("DPD", str(u.dpd), "KeepAlive", str(u.keepalive))
    r.single("Hostname", u.hostname)
    r.ex("Connected at", date_str(u.connected_at), since(now, u.connected_at))
    if u.full_session_id:
        r.json("Full session", u.full_session_id)
    r.single("Session", short_sid(u.full_session_id))
    r.single("TLS ciphersuite", u.tls_ciphersuite)
    r.single("DTLS cipher", u.dtls_cipher)
    r.pair("CSTP compression", u.cstp_compression, "DTLS compression", u.dtls_compression)
    r.sep()
    r.items("DNS", u.dns)
    r.items("NBNS", u.nbns)
    r.items("Split-DNS-Domains", u.split_dns)
    if r.items("Routes", u.routes) == 0:
        r.single("Routes", "defaultroute")  # replaces the empty list: JSON keeps one key
    r.items("No-routes", u.no_routes)
    r.items("iRoutes", u.iroutes)
    r.single("Restricted to routes", "True" if u.restrict_to_routes else "False")
    r.ports("Restricted to ports", u.restrict_to_ports)
    return r


def _limits(r: Record, u: UserInfo) -> None:
    rx = bytes2human(u.limit_rx, "/sec")
    tx = bytes2human(u.limit_tx, "/sec")
    if u.limit_rx > 0 and u.limit_tx > 0:
        # occtl 1.1.6 labels the second one plain "TX" (a duplicate key in its JSON)
        r.json("Limit RX", rx)
        r.json("Limit TX", tx)
        r.text(f"\tLimit RX: {rx}   TX: {tx}")
    elif u.limit_tx > 0:
        r.single("Limit TX", tx)
    elif u.limit_rx > 0:
        r.single("Limit RX", rx)


def _traffic(r: Record, u: UserInfo, now: float) -> None:
    elapsed = int(now) - int(u.connected_at)
    rx_rate = bytes2human(u.rx // elapsed if elapsed > 0 else 0, "/sec")
    tx_rate = bytes2human(u.tx // elapsed if elapsed > 0 else 0, "/sec")
    r.json("RX", str(u.rx))
    r.json("TX", str(u.tx))
    r.json("_RX", bytes2human(u.rx))
    r.json("_TX", bytes2human(u.tx))
    r.json("Average RX", rx_rate)
    r.json("Average TX", tx_rate)
    r.text(f"\tRX: {u.rx} ({bytes2human(u.rx)})   TX: {u.tx} ({bytes2human(u.tx)})")
    r.text(f"\tAverage bandwidth RX: {rx_rate}  TX: {tx_rate}")


def session_record(s: SessionInfo, json_mode: bool) -> Record:
    r = Record(json_mode)
    r.single("Session", short_sid(s.full_session_id))
    r.single("Full session" if json_mode else "Full session ID", s.full_session_id)
    r.pair("Created", date_str(s.created) if s.created > 0 else "",
           "Expires", date_str(s.expires) if s.expires else "")
    r.single("State", s.state)
    r.pair("Username", s.username or NO_USER, "Groupname", s.groupname or NO_USER)
    r.pair("vhost", s.vhost, "User-Agent", s.user_agent)
    r.pair("Remote IP", s.remote_ip, "Location", "unknown")
    r.json("session_is_open", int(s.session_is_open))
    r.json("tls_auth_ok", int(s.tls_auth_ok))
    r.json("in_use", s.in_use)
    if not json_mode:
        r.pair("In use", str(s.in_use > 0), "Activated", str(s.session_is_open))
        r.single("Certificate auth", str(s.tls_auth_ok))
    return r


def status_record(st: StatusInfo, now: float, json_mode: bool, debug: bool) -> Record:
    r = Record(json_mode)
    r.text("Note: the printed statistics are not real-time; session time")
    r.text("as well as RX and TX data are updated on user disconnect")
    r.sep()
    r.text("General info:")
    r.single("Status", st.status)
    r.single("Server PID", st.server_pid)
    r.single("Sec-mod PID", st.secmod_pid)
    r.single("Sec-mod instance count", st.secmod_instances)
    r.ex("Up since", date_str(st.up_since), since(now, st.up_since))
    r.json("raw_up_since", int(st.up_since))
    r.json("uptime", int(now) - int(st.up_since))
    r.single("Active sessions", st.active_sessions)
    r.single("Total sessions", st.total_sessions)
    r.single("Total authentication failures", st.total_auth_failures)
    r.single("IPs in ban list", st.banned_ips)
    if debug:
        r.single("Sec-mod client entries", st.secmod_client_entries)
        r.single("TLS DB entries", st.tls_db_entries)
    r.single("Median latency", time2human(st.median_latency_us))
    r.json("raw_median_latency", st.median_latency_us)
    r.single("STDEV latency", time2human(st.stdev_latency_us))
    r.json("raw_stdev_latency", st.stdev_latency_us)
    r.sep()
    r.text("Current stats period:")
    if st.last_reset > 0:
        r.ex("Last stats reset", date_str(st.last_reset), since(now, st.last_reset))
        r.json("raw_last_stats_reset", int(st.last_reset))
    r.single("Sessions handled", st.sessions_handled)
    r.single("Timed out sessions", st.timed_out_sessions)
    r.single("Timed out (idle) sessions", st.timed_out_idle_sessions)
    r.single("Closed due to error sessions", st.closed_error_sessions)
    r.single("Authentication failures", st.auth_failures)
    for label, raw, value in (
            ("Average auth time", "raw_avg_auth_time", st.avg_auth_time),
            ("Max auth time", "raw_max_auth_time", st.max_auth_time),
            ("Average session time", "raw_avg_session_time", st.avg_session_time),
            ("Max session time", "raw_max_session_time", st.max_session_time)):
        r.single(label, ival7(value))
        r.json(raw, value)
    if st.min_mtu > 0:
        r.single("Min MTU", st.min_mtu)
    if st.max_mtu > 0:
        r.single("Max MTU", st.max_mtu)
    r.single("RX", bytes2human(st.rx))
    r.json("raw_rx", st.rx)
    r.single("TX", bytes2human(st.tx))
    r.json("raw_tx", st.tx)
    return r


def offline_status(json_mode: bool) -> str:
    r = Record(json_mode)
    r.text("Note: the printed statistics are not real-time; session time")
    r.text("as well as RX and TX data are updated on user disconnect")
    r.single("Status", "offline")
    return r.render() + ("\n" if json_mode else "")


def users_table(users: list[UserInfo], now: float) -> str:
    if not users:
        return ""
    lines = [f"{'id':>8} {'user':>8} {'vhost':>8} {'ip':>14} {'vpn-ip':>14} {'device':>6} "
             f"{'since':>7} {'dtls-cipher':>14} {'status':>9}\n"]
    for u in users:
        lines.append(
            f"{u.id:>8} {u.username or NO_USER:>8} {u.vhost:>8} {u.remote_ip:>14} "
            f"{u.ipv4 or u.ipv6:>14} {u.device:>6} {since(now, u.connected_at)} "
            f"{dtls_column(u.dtls_cipher):>14} {u.state:>9}\n")
    return "".join(lines)


def sessions_table(sessions: list[SessionInfo], now: float) -> str:
    if not sessions:
        return ""
    lines = [f"{'session':>6} {'user':>8} {'vhost':>8} {'ip':>14} {'user agent':>24} "
             f"{'created':>8} {'status':>8}\n"]
    for s in sessions:
        age = since(now, s.created) if s.created > 0 else ""
        lines.append(f"{short_sid(s.full_session_id)} {s.username or NO_USER:>8} {s.vhost:>8} "
                     f"{s.remote_ip:>14} {s.user_agent[:24]} {age:>8} {s.state:>8}\n")
    return "".join(lines)


def iroutes_table(users: list[dict[str, Any]]) -> str:
    if not users:
        return ""
    lines = [f"{'id':>6} {'user':>8} {'vhost':>8} {'device':>6} {'vpn-ip':>16} {'iroute':>28}\n"]
    for u in users:
        for route in u["iroutes"]:
            lines.append(f"{u['id']:>6} {u['username'] or NO_USER:>8} {u['vhost']:>8} "
                         f"{u['device']:>6} {u['ipv4'] or u['ipv6']:>16} {route:>28}\n")
    return "".join(lines)


def bans_output(bans: list[BanInfo], now: float, json_mode: bool, points: bool) -> str:
    if json_mode:
        objects: list[dict[str, JsonValue]] = []
        for b in bans:
            if points:
                objects.append({"IP": b.ip, "Score": b.score})
            else:
                expires = b.expires or 0.0
                objects.append({"IP": b.ip, "Since": date_str(expires),
                                "_Since": ival7(int(expires) - int(now)), "Score": b.score})
        return json_array(objects)
    if not bans:
        return ""
    if points:
        return f"{'IP':>14} {'score':>14}\n" + "".join(
            f"{b.ip:>14} {b.score:>14}\n" for b in bans)
    return f"{'IP':>14} {'score':>14} {'expires':>30}\n" + "".join(
        f"{b.ip:>14} {b.score:>14} {date_str(b.expires or 0):>30} "
        f"({ival7(int(b.expires or 0) - int(now))})\n" for b in bans)


def event_line(event: dict[str, Any], now: float) -> str:
    """A 'show events' line, worded as occtl's."""
    u = from_wire(UserInfo, event.get("user"))
    verb = "connected" if event.get("type") == "connect" else "disconnect"
    line = (f"{u.vhost}: {verb} user '{u.username}' ({u.id}) from {u.remote_ip} with IP "
            f"{u.ipv4 or u.ipv6}")
    if verb == "connected":
        return line
    reason = event.get("reason") or "unknown"
    return line + f" (reason: {reason}, time: {since(now, u.connected_at)})"


def event_json(event: dict[str, Any], now: float) -> str:
    """A 'show events -j' line: ocserv's one-user array, on one line, with the event kind."""
    u = from_wire(UserInfo, event.get("user"))
    fields = user_record(u, now, True).fields
    if event.get("type") != "connect":
        fields["State"] = "disconnected"
        fields["Disconnect reason"] = str(event.get("reason") or "unknown")
    return json.dumps([fields], ensure_ascii=False)


# --- talking to the server -----------------------------------------------------------------


class ConnectFailed(Exception):
    """The socket could not be reached at all (occtl's 'error connecting' case)."""


class Unreachable(Exception):
    """Connected, but no usable answer came back."""


class ServerError(Exception):
    """The server answered with ok=false."""


class ControlClient:
    """One connection to the control socket."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def __enter__(self) -> ControlClient:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        try:
            self.sock.connect(self.path)
        except OSError as exc:
            self.sock.close()
            raise ConnectFailed(
                f"error connecting to ocserv socket '{self.path}': {exc.strerror or exc}"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sock is not None:
            self.sock.close()

    def send(self, cmd: str, args: dict[str, Any] | None = None) -> None:
        assert self.sock is not None
        request = {"v": PROTOCOL_VERSION, "cmd": cmd, "args": args or {}}
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            raise Unreachable() from None

    def read_message(self) -> dict[str, Any] | None:
        """The next line as an object; None at the end of the stream."""
        assert self.sock is not None
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_REPLY:
                raise Unreachable()
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                raise Unreachable() from None
            if not chunk:
                if self.buf.strip():
                    raise Unreachable()
                return None
            self.buf += chunk
        end = self.buf.index(b"\n")
        line = bytes(self.buf[:end])
        del self.buf[:end + 1]
        try:
            message = json.loads(line)
        except ValueError:
            raise Unreachable() from None
        if not isinstance(message, dict):
            raise Unreachable()
        return message

    def reply(self) -> Any:
        message = self.read_message()
        if message is None or not isinstance(message.get("ok"), bool):
            raise Unreachable()
        if not message["ok"]:
            raise ServerError(str(message.get("error", "unknown error")))
        return message.get("data")

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.send(cmd, args)
        return self.reply()

    def events(self) -> Iterator[dict[str, Any]]:
        while (message := self.read_message()) is not None:
            event = message.get("event")
            if isinstance(event, dict):
                yield event


# --- commands ------------------------------------------------------------------------------


@dataclass
class Completions:
    """Arguments seen in earlier listings, for tab completion (occtl keeps the same cache)."""

    names: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    sids: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)

    def for_arg(self, arg: str) -> set[str]:
        return {"[NAME]": self.names, "[ID]": self.ids, "[SID]": self.sids,
                "[IP]": self.ips}.get(arg, set())

    def add_users(self, users: list[UserInfo]) -> None:
        self.names.update(u.username for u in users if u.username)
        self.ids.update(str(u.id) for u in users)


@dataclass
class Context:
    socket_path: str
    json: bool = False
    debug: bool = False
    pager: bool = True
    interactive: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    clock: Callable[[], float] = time.time
    cache: Completions = field(default_factory=Completions)
    line: str = ""  # the command line being run, for help on a missing argument

    def emit(self, text: str, page: bool = True) -> None:
        if page and self.pager and text and _isatty(self.out):
            if _page(text, self.err):
                return
        self.out.write(text)
        self.out.flush()

    def error(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _page(text: str, err: TextIO) -> bool:
    """Through $OCCTL_PAGER, $PAGER or less, with LESS=FRSX unless set (as occtl)."""
    pager = os.environ.get("OCCTL_PAGER") or os.environ.get("PAGER") or "less"
    env = dict(os.environ)
    env.setdefault("LESS", "FRSX")
    try:
        proc = subprocess.Popen(pager, shell=True, stdin=subprocess.PIPE, env=env, text=True)
    except OSError:
        err.write("unable to start pager; check your $PAGER environment variable\n")
        return False
    assert proc.stdin is not None
    try:
        proc.stdin.write(text)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    proc.wait()
    return True


Handler = Callable[[Context, str], int]


@dataclass(frozen=True)
class Command:
    name: str
    arg: str | None
    doc: str
    show: int  # 1: always listed, 0: interactive help only, -1: hidden
    run: Handler


def _call(ctx: Context, cmd: str, args: dict[str, Any] | None = None) -> Any:
    with ControlClient(ctx.socket_path) as client:
        return client.call(cmd, args)


def _decode(cls: type, items: Any) -> list[Any]:
    if not isinstance(items, list):
        raise ControlError("expected a list")
    return [from_wire(cls, item) for item in items]


def cmd_status(ctx: Context, arg: str) -> int:
    try:
        data = _call(ctx, "show status")
        status = from_wire(StatusInfo, data)
    except (Unreachable, ServerError, ControlError):
        ctx.emit(offline_status(ctx.json), page=False)
        return 1
    text = status_record(status, ctx.clock(), ctx.json, ctx.debug).render()
    ctx.emit(text + "\n" if ctx.json else text, page=False)  # occtl pages lists only
    return 0


def _user_list(ctx: Context, users: list[UserInfo]) -> int:
    """show user/id: the detail blocks; 2 when there is nothing to show, as occtl."""
    now = ctx.clock()
    ctx.cache.add_users(users)
    if ctx.json:
        ctx.emit(json_array([user_record(u, now, True).fields for u in users]))
    elif users:
        ctx.emit("\n".join(user_record(u, now, False).render() for u in users))
    else:
        ctx.emit("user or ID not found\n")
    return 0 if users else 2


def cmd_users(ctx: Context, arg: str) -> int:
    users = _decode(UserInfo, _call(ctx, "show users"))
    ctx.cache.add_users(users)
    now = ctx.clock()
    if ctx.json:
        ctx.emit(json_array([user_record(u, now, True).fields for u in users]))
    else:
        ctx.emit(users_table(users, now))
    return 0


def cmd_user(ctx: Context, arg: str) -> int:
    if _needs_help(ctx, arg):
        return 1
    return _user_list(ctx, _decode(UserInfo, _call(ctx, "show user", {"name": arg})))


def _parse_id(arg: str) -> int | None:
    try:
        value = int(arg, 10)
    except ValueError:
        return None
    return value if 0 < value < 2**31 else None


def cmd_id(ctx: Context, arg: str) -> int:
    ident = _parse_id(arg)
    if _needs_help(ctx, arg) or ident is None:
        if ident is None and arg.strip() not in ("", "?"):
            help_lines(ctx, ctx.line)
        return 1
    return _user_list(ctx, _decode(UserInfo, _call(ctx, "show id", {"id": ident})))


def _sessions(ctx: Context, which: str) -> int:
    sessions = _decode(SessionInfo, _call(ctx, f"show sessions {which}"))
    ctx.cache.sids.update(short_sid(s.full_session_id) for s in sessions)
    if ctx.json:
        ctx.emit(json_array([session_record(s, True).fields for s in sessions]))
    else:
        ctx.emit(sessions_table(sessions, ctx.clock()))
    return 0


def cmd_sessions_all(ctx: Context, arg: str) -> int:
    return _sessions(ctx, "all")


def cmd_sessions_valid(ctx: Context, arg: str) -> int:
    return _sessions(ctx, "valid")


def cmd_session(ctx: Context, arg: str) -> int:
    if _needs_help(ctx, arg):
        return 1
    sessions = _decode(SessionInfo, _call(ctx, "show session", {"sid": arg}))
    if ctx.json:
        ctx.emit(json_array([session_record(s, True).fields for s in sessions]))
    elif sessions:
        ctx.emit("\n".join(session_record(s, False).render() for s in sessions))
    else:
        ctx.emit("Session ID not found or expired\n")
    return 0  # occtl 1.1.6 exits 0 here even when nothing matched


def _bans(ctx: Context, points: bool) -> int:
    cmd = "show ip ban points" if points else "show ip bans"
    bans = _decode(BanInfo, _call(ctx, cmd))
    ctx.cache.ips.update(b.ip for b in bans)
    ctx.emit(bans_output(bans, ctx.clock(), ctx.json, points))
    return 0


def cmd_bans(ctx: Context, arg: str) -> int:
    return _bans(ctx, points=False)


def cmd_ban_points(ctx: Context, arg: str) -> int:
    return _bans(ctx, points=True)


def cmd_iroutes(ctx: Context, arg: str) -> int:
    data = _call(ctx, "show iroutes")
    keys = {"id": int, "username": str, "vhost": str, "device": str, "ipv4": str, "ipv6": str,
            "iroutes": list}
    if not isinstance(data, list) or not all(
            isinstance(u, dict) and all(isinstance(u.get(k), t) for k, t in keys.items())
            for u in data):
        raise ControlError("malformed iroutes list")
    if ctx.json:
        ctx.emit(json_array([{"ID": u["id"], "Username": u["username"] or NO_USER,
                              "vhost": u["vhost"], "Device": u["device"],
                              "IP": u["ipv4"] or u["ipv6"],
                              "iRoutes": [str(r) for r in u["iroutes"]]} for u in data]))
    else:
        ctx.emit(iroutes_table(data))
    return 0


def cmd_events(ctx: Context, arg: str) -> int:
    with ControlClient(ctx.socket_path, timeout=TIMEOUT) as client:
        data = client.call("show events")
        users = _decode(UserInfo, data.get("users") if isinstance(data, dict) else None)
        now = ctx.clock()
        if ctx.json:
            fields = [user_record(u, now, True).fields for u in users]
            ctx.out.write(json.dumps(fields, ensure_ascii=False) + "\n")
            ctx.err.write("Press 'q' or CTRL+C to quit\n")
        else:
            ctx.out.write(users_table(users, now) + "\nPress 'q' or CTRL+C to quit\n\n")
        ctx.out.flush()
        assert client.sock is not None
        client.sock.settimeout(None)
        with _cbreak(ctx.stdin) as keys:
            return _follow_events(ctx, client, keys)


def _follow_events(ctx: Context, client: ControlClient, keys: TextIO | None) -> int:
    assert client.sock is not None
    stream = client.events()
    try:
        while True:
            ready = [client.sock] if client.buf else select.select(
                [client.sock] + ([keys] if keys else []), [], [])[0]
            if keys is not None and keys in ready and os.read(keys.fileno(), 1) in (
                    b"q", b"Q", b""):
                return 0
            if client.sock not in ready and not client.buf:
                continue
            event = next(stream, None)
            if event is None:
                ctx.error("events: server closed the connection")
                return 0
            try:
                text = event_json(event, ctx.clock()) if ctx.json else event_line(
                    event, ctx.clock())
            except ControlError as exc:
                ctx.error(f"events: malformed event: {exc}")
                continue
            ctx.out.write(text + "\n")
            ctx.out.flush()
    except KeyboardInterrupt:
        return 0


class _cbreak:
    """Read single keys from a terminal while following events ('q' quits, as occtl)."""

    def __init__(self, stdin: TextIO) -> None:
        self.stdin = stdin
        self.saved: list[Any] | None = None

    def __enter__(self) -> TextIO | None:
        if not _isatty(self.stdin):
            return None
        import termios
        fd = self.stdin.fileno()
        self.saved = termios.tcgetattr(fd)
        new = termios.tcgetattr(fd)
        new[3] &= ~(termios.ICANON | termios.ECHO)
        termios.tcsetattr(fd, termios.TCSANOW, new)
        return self.stdin

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.stdin.fileno(), termios.TCSANOW, self.saved)


def _disconnect(ctx: Context, arg: str, cmd: str) -> int:
    if _needs_help(ctx, arg):
        return 1
    count = _call(ctx, cmd, {"name": arg}).get("count", 0)
    if count:
        ctx.emit(f"user '{arg}' was disconnected\n", page=False)
        return 0
    ctx.emit(f"could not disconnect user '{arg}'\n", page=False)
    return 1


def _disconnect_id(ctx: Context, arg: str, cmd: str) -> int:
    ident = _parse_id(arg)
    if _needs_help(ctx, arg) or ident is None:
        if ident is None and arg.strip() not in ("", "?"):
            help_lines(ctx, ctx.line)
        return 1
    if _call(ctx, cmd, {"id": ident}).get("disconnected"):
        ctx.emit(f"connection ID '{arg}' was disconnected\n", page=False)
        return 0
    ctx.emit(f"could not disconnect ID '{arg}'\n", page=False)
    return 1


def cmd_disconnect_user(ctx: Context, arg: str) -> int:
    return _disconnect(ctx, arg, "disconnect user")


def cmd_disconnect_id(ctx: Context, arg: str) -> int:
    return _disconnect_id(ctx, arg, "disconnect id")


def cmd_terminate_user(ctx: Context, arg: str) -> int:
    return _disconnect(ctx, arg, "terminate user")


def cmd_terminate_id(ctx: Context, arg: str) -> int:
    return _disconnect_id(ctx, arg, "terminate id")


def cmd_terminate_session(ctx: Context, arg: str) -> int:
    if _needs_help(ctx, arg):
        return 1
    if _call(ctx, "terminate session", {"sid": arg}).get("count", 0):
        ctx.emit(f"session '{arg}' was terminated\n", page=False)
        return 0
    ctx.emit(f"could not terminate session '{arg}'\n", page=False)
    return 1


def cmd_unban(ctx: Context, arg: str) -> int:
    if _needs_help(ctx, arg):
        return 1
    try:
        ipaddress.ip_address(arg)
    except ValueError:
        ctx.error(f"Cannot parse IP: {arg}")
        return 1
    if _call(ctx, "unban ip", {"ip": arg}).get("unbanned"):
        ctx.emit(f"IP '{arg}' was unbanned\n", page=False)
        return 0
    ctx.emit(f"could not unban IP '{arg}'\n", page=False)
    return 1


def cmd_reload(ctx: Context, arg: str) -> int:
    try:
        reply = _call(ctx, "reload")
    except (Unreachable, ServerError):
        ctx.emit("Error scheduling reload\n", page=False)
        return 1
    ctx.emit("Server scheduled to reload\n", page=False)  # ocserv's line, for scripts
    message = reply.get("message", "") if isinstance(reply, dict) else ""
    if message:
        ctx.emit(f"{message}\n", page=False)
    return 0


def cmd_stop(ctx: Context, arg: str) -> int:
    if arg.strip().lower() != "now":
        help_lines(ctx, "stop")
        return 1
    try:
        _call(ctx, "stop now")
    except (Unreachable, ServerError):
        ctx.emit("Error scheduling server stop\n", page=False)
        return 1
    ctx.emit("Server scheduled to stop\n", page=False)
    return 0


def cmd_help(ctx: Context, arg: str) -> int:
    ctx.out.write(commands_help(interactive=True))
    return 0


def cmd_reset(ctx: Context, arg: str) -> int:
    ctx.out.write("\x1bc")
    ctx.out.flush()
    return 0


def cmd_exit(ctx: Context, arg: str) -> int:
    return EXIT


COMMANDS: list[Command] = [
    Command("disconnect user", "[NAME]", "Disconnect the specified user", 1,
            cmd_disconnect_user),
    Command("disconnect id", "[ID]", "Disconnect the specified ID", 1, cmd_disconnect_id),
    Command("terminate user", "[NAME]", "Disconnect the specified user and end its sessions",
            1, cmd_terminate_user),
    Command("terminate id", "[ID]", "Disconnect the specified ID and end its session", 1,
            cmd_terminate_id),
    Command("terminate session", "[SID]", "End the specified session", 1,
            cmd_terminate_session),
    Command("unban ip", "[IP]", "Unban the specified IP", 1, cmd_unban),
    Command("reload", None, "Reloads the server configuration", 1, cmd_reload),
    Command("show status", None, "Prints the status and statistics of the server", 1,
            cmd_status),
    Command("show users", None, "Prints the connected users", 1, cmd_users),
    Command("show ip bans", None, "Prints the banned IP addresses", 1, cmd_bans),
    Command("show ip ban points", None, "Prints all the known IP addresses which have points",
            1, cmd_ban_points),
    Command("show iroutes", None, "Prints the routes provided by users of the server", 1,
            cmd_iroutes),
    Command("show sessions all", None, "Prints all the session IDs", 1, cmd_sessions_all),
    Command("show sessions valid", None, "Prints all the valid for reconnection sessions", 1,
            cmd_sessions_valid),
    Command("show session", "[SID]", "Prints information on the specified session", 1,
            cmd_session),
    Command("show user", "[NAME]", "Prints information on the specified user", 1, cmd_user),
    Command("show id", "[ID]", "Prints information on the specified ID", 1, cmd_id),
    Command("show events", None, "Provides information about connecting users", 1,
            cmd_events),
    Command("stop", "now", "Terminates the server", 1, cmd_stop),
    Command("reset", None, "Resets the screen and terminal", 0, cmd_reset),
    Command("help", "or ?", "Prints this help", 0, cmd_help),
    Command("exit", None, "Exits this application", 0, cmd_exit),
    Command("?", None, "Prints this help", -1, cmd_help),
    Command("quit", None, "Exits this application", -1, cmd_exit),
    Command("show cookies all", None, "Alias for show sessions all", -1, cmd_sessions_all),
    Command("show cookies valid", None, "Alias for show sessions valid", -1,
            cmd_sessions_valid),
]


def _help_line(cmd: Command) -> str:
    if cmd.arg:
        return f" {cmd.name:>12} {cmd.arg}\t{cmd.doc:>16}\n"
    return f" {cmd.name:>16}\t{cmd.doc:>16}\n"


def commands_help(interactive: bool) -> str:
    return "Available Commands\n" + "".join(
        _help_line(c) for c in COMMANDS if c.show == 1 or (c.show == 0 and interactive))


def help_lines(ctx: Context, line: str) -> bool:
    """occtl's check_cmd_help: list the commands the line is a prefix of (or that prefix it)."""
    text = " ".join(line.split()).rstrip("? ").lower()
    matches = [c for c in COMMANDS
               if c.name.lower()[:len(text)] == text[:len(c.name)]]
    if matches:
        ctx.out.write("".join(_help_line(c) for c in matches))
    return bool(matches)


def _needs_help(ctx: Context, arg: str) -> bool:
    if arg.strip() in ("", "?"):
        help_lines(ctx, ctx.line)
        return True
    return False


def match_command(line: str) -> tuple[Command, str] | None:
    """The longest command whose words start the line, and the rest of the line as argument."""
    words = line.split()
    lowered = [w.lower() for w in words]
    best: tuple[Command, str] | None = None
    best_len = 0
    for cmd in COMMANDS:
        name = cmd.name.split()
        if lowered[:len(name)] == name and len(name) > best_len:
            best, best_len = (cmd, " ".join(words[len(name):])), len(name)
    return best


def run_line(ctx: Context, line: str) -> int:
    """Run one command line; the exit code occtl would give it."""
    line = line.strip()
    if not line:
        return 1
    found = match_command(line)
    if found is None:
        if not help_lines(ctx, line):
            ctx.error(f"unknown command: {line}\n"
                      "use help or '?' to get a list of the available commands")
        return 1
    cmd, arg = found
    ctx.line = line
    try:
        return cmd.run(ctx, arg)
    except KeyboardInterrupt:
        ctx.out.write("\n")
        return 130
    except ConnectFailed as exc:
        ctx.error(str(exc))
    except Unreachable:
        ctx.error(ERR_SERVER_UNREACHABLE)
    except ServerError as exc:
        ctx.error(f"error: {exc}")
    except ControlError as exc:
        ctx.error(f"error: malformed reply from the server: {exc}")
    except (AttributeError, TypeError):
        ctx.error("error: malformed reply from the server")
    return 1


# --- interactive mode -----------------------------------------------------------------------


def completions(line: str, cache: Completions) -> list[str]:
    """Words that may come next at the end of ``line`` (commands first, then arguments)."""
    words = line.split()
    if line and not line[-1].isspace() and words:
        prefix, done = words[-1], [w.lower() for w in words[:-1]]
    else:
        prefix, done = "", [w.lower() for w in words]
    found: set[str] = set()
    for cmd in COMMANDS:
        if cmd.name == "?":
            continue
        name = cmd.name.split()
        if len(done) < len(name) and done == name[:len(done)]:
            if name[len(done)].startswith(prefix.lower()):
                found.add(name[len(done)])
        elif len(done) == len(name) and done == name and cmd.arg:
            found.update(v for v in cmd_values(cmd, cache) if v.startswith(prefix))
    return sorted(found)


def cmd_values(cmd: Command, cache: Completions) -> set[str]:
    if cmd.name == "stop":
        return {"now"}
    return cache.for_arg(cmd.arg or "")


def _banner(err: TextIO) -> None:
    err.write(f"OCGate server control (occtl) version {VERSION}\n"
              "An ocserv-compatible occtl for OCGate.\n\n"
              "For help type ? or 'help'\n"
              "==================================================================\n")


def interactive(ctx: Context) -> int:
    try:
        import readline
    except ImportError:  # pragma: no cover - readline is part of CPython on Linux
        readline = None  # type: ignore[assignment]
    ctx.interactive = True
    history = os.path.expanduser(HISTORY_FILE)
    if readline is not None:
        _setup_readline(readline, ctx.cache, history)
    _banner(ctx.err)
    try:
        while True:
            try:
                line = input("> ")
            except EOFError:
                ctx.out.write("\n")
                return 0
            except KeyboardInterrupt:
                ctx.out.write("\n")
                continue
            if line.strip() and run_line(ctx, line) == EXIT:
                return 0
    finally:
        if readline is not None:
            try:
                readline.write_history_file(history)
            except OSError:
                pass


def _setup_readline(readline: Any, cache: Completions, history: str) -> None:
    try:
        readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(1000)
    readline.set_completer_delims(" \t\n")

    def complete(text: str, state: int) -> str | None:
        line = readline.get_line_buffer()[:readline.get_endidx()]
        options = completions(line, cache)
        # Python's readline appends nothing to a unique match; the space ends the word
        return options[state] + " " if state < len(options) else None

    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")


# --- entry point ----------------------------------------------------------------------------


def usage() -> str:
    return ("occtl: [OPTIONS...] {COMMAND}\n\n"
            "  -s --socket-file       Specify the server's occtl socket file\n"
            "  -h --help              Show this help\n"
            "     --debug             Enable more verbose information in some commands\n"
            "  -v --version           Show the program's version\n"
            "  -j --json              Use JSON formatting for output\n"
            "  -n --no-pager          Do not pipe the output through a pager\n\n"
            + commands_help(interactive=False) + "\n")


def default_socket(config_path: str = DEFAULT_CONFIG) -> str:
    """occtl-socket-file from the server's configuration, else ocserv's default path."""
    from ..config import ConfigError, load_config
    try:
        return load_config(config_path).occtl_socket_file or DEFAULT_SOCKET
    except (ConfigError, OSError):
        return DEFAULT_SOCKET


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ctx = Context(socket_path="")
    socket_path: str | None = None
    while args and args[0].startswith("-") and args[0] != "-":
        opt = args.pop(0)
        if opt in ("-j", "--json"):
            ctx.json = True
        elif opt in ("-n", "--no-pager"):
            ctx.pager = False
        elif opt == "--debug":
            ctx.debug = True
        elif opt in ("-s", "--socket-file") and args:
            socket_path = args.pop(0)
        elif opt.startswith("--socket-file="):
            socket_path = opt.split("=", 1)[1]
        elif opt in ("-v", "--version"):
            _banner(sys.stderr)
            return 0
        elif opt in ("-h", "--help"):
            sys.stdout.write(usage())
            return 0
        elif opt == "--":
            break
        else:
            sys.stderr.write(usage())
            return 1
    ctx.socket_path = socket_path or default_socket()
    if not args:
        return interactive(ctx)
    rc = run_line(ctx, " ".join(args))
    return 0 if rc == EXIT else rc


if __name__ == "__main__":
    sys.exit(main())
