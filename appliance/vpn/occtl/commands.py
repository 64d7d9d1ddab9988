"""occtl's commands, one function each, and the table."""

from __future__ import annotations

import ipaddress
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..control import (
    BanInfo,
    ControlError,
    SessionInfo,
    StatusInfo,
    UserInfo,
    from_wire,
)
from ..control.client import TIMEOUT, ConnectFailed, ControlClient, ServerError, Unreachable
from .format import (
    ERR_SERVER_UNREACHABLE,
    EXIT,
    NO_USER,
    bans_output,
    event_json,
    event_line,
    iroutes_table,
    json_array,
    offline_status,
    session_record,
    sessions_table,
    short_sid,
    status_record,
    user_record,
    users_table,
)

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
