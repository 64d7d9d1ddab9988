"""How occtl formats numbers, sizes, times, JSON and records, as ocserv's occtl."""

from __future__ import annotations

import json
import time
from typing import Any

from ..control import (
    BanInfo,
    SessionInfo,
    StatusInfo,
    UserInfo,
    from_wire,
)

VERSION = "0.1.0"
DEFAULT_CONFIG = "/etc/ocserv/ocserv.conf"
DEFAULT_SOCKET = "/var/run/occtl.socket"
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
