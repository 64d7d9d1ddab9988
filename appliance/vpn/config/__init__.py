"""ocserv.conf: the option table, the parser/validator, per-user files and safe rewriting.

This is the only module that knows the ocserv configuration format (protocol.md §10).
The server, occtl, the first-boot wizard and the web UI all go through it, so that a
file accepted here means the same thing everywhere, and an existing ocserv.conf keeps
working when OCGate replaces ocserv.

Syntax follows the inih build ocserv uses (§10.1): ``key = value`` (``:`` also separates),
``#``/``;`` start-of-line comments, `` #`` inline comments (a ``#`` inside double quotes is
kept, our one deliberate extension), indented lines continue the previous option as another
value, ``[vhost:NAME]`` sections, a 2046-byte line limit.  Values are trimmed of whitespace
and double quotes like ocserv's ``sanitize_config_value``.  Where ocserv silently accepts
garbage (``strtol`` on "abc", any non-"true" boolean meaning false) we reject it with the
file and line instead: a typo in a VPN config should stop the server loudly, not open it.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...atomicfile import existing_mode_and_owner, write_atomic
from ..protocol.tls.priorities import PriorityError, parse_priorities

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# C isspace() in the "C" locale: what inih and ocserv trim (Python's str.strip() would
# also eat Unicode spaces ocserv keeps).
_WS = " \t\n\r\v\f"
MAX_LINE_BYTES = 2046  # inih is built with INI_MAX_LINE=2048 (newline and NUL included)
MAX_BANNER_BYTES = 256  # ocserv MAX_BANNER_SIZE
MAX_USER_FILE_BYTES = 1 << 20
DEFAULT_TLS_PRIORITIES = "NORMAL:%SERVER_PRECEDENCE:%COMPAT"


class ConfigError(ValueError):
    """A configuration problem, always naming the file and (when known) the line."""

    def __init__(self, message: str, path: str = "ocserv.conf", line: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


class _BadValue(Exception):
    """Internal: a value failed conversion; carries what was expected instead."""

    def __init__(self, expected: str, detail: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.detail = detail  # replaces the generic "invalid value" wording when set


# --------------------------------------------------------------------------------------
# The option table
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """One ocserv.conf option: enough for the parser to check it and the UI to render it.

    ``type`` is one of: int, bool, str, path, choice, ip, network, netmask, auth, list,
    ignored (accepted for compatibility, no effect) or removed (ocserv refuses it too).
    List options carry their element type in ``item`` (str, auth, route, ip, domain).
    ``scope``: 'g' global only, 'v' global or per vhost, 'u' additionally allowed in
    per-user/per-group files (``user_only`` marks options that only work there).
    """

    name: str
    type: str
    default: Any
    help: str
    scope: str
    implemented: bool
    reloadable: bool
    item: str | None = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    alias_of: str | None = None
    deprecated: str | None = None
    user_only: bool = False
    secret: bool = False

    @property
    def multi(self) -> bool:
        """True when repeated lines accumulate instead of overriding each other."""
        return self.type == "list"

    @property
    def attr(self) -> str | None:
        """The Config/UserConfig attribute this option feeds (None for no-op options)."""
        if self.type in ("ignored", "removed"):
            return None
        return (self.alias_of or self.name).replace("-", "_")


# Options the OCGate server acts on today (the rest are parsed, checked and reported).
_IMPLEMENTED = frozenset({
    "tcp-port", "udp-port", "listen-host", "auth", "server-cert", "server-key",
    "ipv4-network", "ipv4-netmask", "route", "no-route", "dns", "default-domain", "split-dns",
    "mtu", "keepalive", "dpd", "mobile-dpd", "mobile-idle-timeout", "idle-timeout",
    "session-timeout", "cookie-timeout",
    "max-clients", "max-same-clients", "banner", "pre-login-banner", "connect-script",
    "disconnect-script", "device", "predictable-ips", "socket-file", "pid-file",
    "run-as-user", "run-as-group", "occtl-socket-file", "use-occtl", "tls-priorities",
    "rekey-time", "rekey-method", "tunnel-all-dns", "compression", "no-compress-limit",
    "compression-algo-priority", "dtls-psk", "dtls-legacy", "switch-to-tcp-timeout",
    "try-mtu-discovery", "iroute", "route-add-cmd", "explicit-ipv4",
    "ipv6-network", "ipv6-subnet-prefix", "explicit-ipv6",
    "restrict-user-to-routes", "restrict-user-to-ports",
    "rx-data-per-sec", "tx-data-per-sec", "max-ban-score", "ban-time",
    "ban-reset-time",
    "ban-points-wrong-password", "ban-points-connection", "rate-limit-ms",
    "persistent-cookies", "auth-timeout", "config-per-user", "config-per-group",
    "default-user-config", "default-group-config", "isolate-workers", "chroot-dir",
    "enable-auth", "ca-cert", "crl", "cert-user-oid", "cert-group-oid",
    "select-group", "default-select-group", "auto-select-group",
    "cisco-client-compat", "user-profile", "select-group-by-url", "listen-proxy-proto",
    "acct", "stats-report-time",  # RADIUS accounting (auth/radius/auth.py)
})

# Options that only take effect on a restart (ocserv's "non-reloadable").
_NOT_RELOADABLE = frozenset({
    "auth", "enable-auth", "acct", "ca-cert", "server-cert", "server-key", "dh-params",
    "pin-file", "srk-pin-file", "key-pin", "srk-pin", "listen-host", "udp-listen-host",
    "listen-netns", "tcp-port", "udp-port", "run-as-user", "run-as-group", "socket-file",
    "occtl-socket-file", "chroot-dir", "sec-mod-scale", "server-stats-reset-time",
    "pid-file", "log-level", "syslog-facility", "debug-no-secmod-stats",
})

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_SYSLOG_FACILITIES = ("daemon", "user", "auth", "authpriv", "local0", "local1", "local2",
                      "local3", "local4", "local5", "local6", "local7")


def _specs() -> dict[str, OptionSpec]:
    """Build the table; defaults are ocserv master's built-in ones (§10), not the sample's."""
    table: dict[str, OptionSpec] = {}

    def opt(name: str, type_: str, default: Any, scope: str, help_: str, **kw: Any) -> None:
        target = kw.get("alias_of") or name
        if type_ == "int":
            kw.setdefault("minimum", 0)
            kw.setdefault("maximum", _U32)
        table[name] = OptionSpec(
            name=name, type=type_, default=default, help=help_, scope=scope,
            implemented=target in _IMPLEMENTED,
            reloadable=target not in _NOT_RELOADABLE, **kw)

    # --- authentication and accounting (§10.2)
    opt("auth", "list", (), "v", "Login methods that must all succeed, one per line, "
        "e.g. plain[passwd=/etc/ocserv/ocpasswd]", item="auth")
    opt("enable-auth", "list", (), "v", "Alternative login methods; any one of them is "
        "enough on its own (e.g. certificate)", item="auth")
    opt("acct", "auth", None, "v", "Accounting back end: radius[config=FILE] or pam")
    opt("ca-cert", "path", None, "v", "CA certificate (PEM) that client certificates "
        "must be signed by")
    opt("crl", "path", None, "v", "Revocation list (PEM) for client certificates; "
        "re-read when the file changes")
    opt("cert-user-oid", "str", None, "v", "Where the user name is taken from in a client "
        "certificate: an OID (2.5.4.3 = CN) or SAN(rfc822name)")
    opt("cert-group-oid", "str", None, "v", "OID of the client certificate field that "
        "holds the user's group(s), e.g. 2.5.4.11 (OU)")
    opt("select-group", "list", (), "v", "Group the user may pick at login: NAME or "
        "NAME[Label shown to the user]; one line per group", item="str")
    opt("default-select-group", "str", None, "v", "Label of an extra login-form entry "
        "meaning 'my default group'")
    opt("auto-select-group", "bool", False, "v", "Offer all groups known to the "
        "authentication back end instead of a fixed select-group list")
    opt("select-group-by-url", "bool", False, "v", "Let https://server/GROUP choose the "
        "group without asking (forced on by cisco-client-compat)")
    opt("pre-login-banner", "str", None, "v", "Text shown on the login page before the "
        "user authenticates")
    opt("banner", "str", None, "v", "Message shown to the user after a successful login "
        "(at most 256 bytes)")
    opt("auth-timeout", "int", 240, "g", "Seconds a connection may stay unauthenticated "
        "before it is dropped")
    opt("max-ban-score", "int", 80, "g", "Score at which a client address is banned; "
        "0 disables banning")
    opt("ban-time", "int", 300, "g", "Seconds a banned address stays banned")
    opt("min-reauth-time", "int", 300, "g", "Old (ocserv 1.1) name of ban-time",
        alias_of="ban-time", deprecated="'min-reauth-time' is the old name of 'ban-time'")
    opt("ban-reset-time", "int", 1200, "g", "Seconds after which an address's ban score "
        "is forgotten")
    opt("ban-points-wrong-password", "int", 10, "g", "Ban score added for each wrong "
        "password")
    opt("ban-points-connection", "int", 1, "g", "Ban score added for each new connection")
    opt("ban-points-kkdcp", "int", 1, "g", "Ban score added for each Kerberos proxy "
        "(KKDCP) request")
    opt("cisco-client-compat", "bool", False, "v", "Compatibility with Cisco AnyConnect "
        "clients: legacy DTLS, cookie-only reconnects, no TLS 1.3 by default")
    opt("always-require-cert", "bool", True, "v", "Obsolete; 'false' is the old spelling "
        "of cisco-client-compat = true", alias_of="cisco-client-compat",
        deprecated="'always-require-cert' was replaced by 'cisco-client-compat'")
    opt("cisco-svc-client-compat", "bool", False, "v", "Support Cisco IP phones that use "
        "the /svc endpoint (requires udp-port 443)")
    opt("kkdcp", "list", (), "v", "Kerberos KDC proxy: 'URL-PATH REALM proto@host:port'; "
        "one line per realm", item="str")
    opt("camouflage", "bool", False, "v", "Hide the VPN: behave like a plain web server "
        "unless the URL carries the camouflage secret")
    opt("camouflage_secret", "str", None, "v", "Secret that must follow '?' in the server "
        "URL when camouflage is on", secret=True)
    opt("camouflage_realm", "str", None, "v", "HTTP authentication realm shown in "
        "camouflage mode (unset: answer 404)")

    # --- listening, processes, logging (§10.3)
    opt("listen-host", "str", None, "g", "Address or host name to accept TCP connections "
        "on (default: all addresses)")
    opt("udp-listen-host", "str", None, "g", "Address or host name for DTLS/UDP (default: "
        "the listen-host value)")
    opt("listen-host-is-dyndns", "bool", False, "v", "Tell clients the server address "
        "may change so they look it up again when reconnecting")
    opt("listen-netns", "str", None, "g", "Network namespace in which the listening "
        "sockets are opened")
    opt("tcp-port", "int", 443, "g", "TCP port for HTTPS logins and the TLS tunnel",
        minimum=1, maximum=65535)
    opt("udp-port", "int", None, "g", "UDP port for the faster DTLS tunnel; unset (or 0) "
        "means TCP only", minimum=1, maximum=65535)
    opt("listen-proxy-proto", "bool", False, "g", "Expect a PROXY protocol header (from "
        "a load balancer) on incoming TCP connections")
    opt("run-as-user", "str", None, "g", "Unprivileged user that per-client worker "
        "processes run as")
    opt("run-as-group", "str", None, "g", "Group that per-client worker processes run as")
    opt("socket-file", "path", None, "g", "Path prefix of the sockets between the main "
        "process and the workers")
    opt("occtl-socket-file", "path", "/var/run/occtl.socket", "g", "Control socket used "
        "by occtl and the web UI")
    opt("use-occtl", "bool", False, "g", "Open the control socket so occtl and the web UI "
        "can see and manage sessions")
    opt("use-dbus", "bool", False, "g", "Obsolete name of use-occtl", alias_of="use-occtl",
        deprecated="'use-dbus' was replaced by 'use-occtl'")
    opt("chroot-dir", "path", None, "g", "Directory the worker processes are confined to")
    opt("isolate-workers", "bool", False, "g", "Confine the per-client worker processes "
        "with a seccomp allow-list")
    opt("use-seccomp", "bool", False, "g", "Obsolete name of isolate-workers",
        alias_of="isolate-workers",
        deprecated="'use-seccomp' was replaced by 'isolate-workers'")
    opt("limit-worker-memory", "bool", True, "g", "Cap each worker's heap as a defence "
        "against memory-exhaustion attacks")
    opt("sec-mod-scale", "int", None, "g", "Number of security-module processes (default: "
        "derived from max-clients)", minimum=1)
    opt("pid-file", "path", None, "g", "File the main process writes its process ID to")
    opt("log-level", "int", 2, "g", "Log detail: 0-1 basic, 2 info, 3 debug, 4 HTTP, "
        "8 sensitive data, 9 TLS internals", maximum=9)
    opt("syslog-facility", "choice", "daemon", "g", "Syslog facility used for log "
        "messages", choices=_SYSLOG_FACILITIES)
    opt("rate-limit-ms", "int", 0, "g", "Minimum milliseconds between accepted "
        "connections while logins are queueing; 0 = no limit")
    opt("server-drain-ms", "int", 0, "g", "Pause between refusing new connections and "
        "dropping clients on shutdown (load-balancer draining)")
    opt("server-stats-reset-time", "int", 604800, "g", "Seconds after which the server "
        "statistics shown by occtl start again from zero")
    opt("stats-report-time", "int", None, "u", "Seconds between usage reports of a "
        "session (used for RADIUS accounting)")
    opt("use-utmp", "bool", True, "g", "Record VPN users in utmp/wtmp so that 'who' and "
        "'last' show them")
    opt("device", "str", "vpns", "g", "Name prefix of the tunnel devices; a number is "
        "appended (ocserv insists on it, we default to vpns)")
    opt("connect-script", "path", None, "g", "Program run when a client connects; a "
        "non-zero exit status refuses the session")
    opt("disconnect-script", "path", None, "g", "Program run after a client disconnects")
    opt("host-update-script", "path", None, "g", "Program run when a client reports its "
        "host name")
    opt("route-add-cmd", "str", None, "g", "Command that installs a route to a client's "
        "iroute; %{R}, %{RI} and %{D} are filled in")
    opt("route-del-cmd", "str", None, "g", "Command that removes such a route again")
    opt("max-clients", "int", 0, "g", "Most clients connected at once; 0 = no limit")
    opt("max-same-clients", "int", 0, "u", "Most simultaneous sessions of one user; "
        "0 = no limit")
    opt("debug-no-secmod-stats", "bool", False, "v", "Debugging aid: do not send "
        "session statistics to the security module")
    opt("sec-mod-db-cleanup-time", "int", None, "g", "Seconds between clean-ups of expired "
        "sessions in the security module")
    opt("session-control", "ignored", None, "g", "Obsolete; has no effect",
        deprecated="the option 'session-control' is deprecated and has no effect")
    opt("cgroup", "ignored", None, "g", "Removed from ocserv; use systemd resource "
        "control instead", deprecated="the option 'cgroup' was removed from ocserv and "
        "is ignored; use systemd resource control")
    opt("listen-clear-file", "removed", None, "g", "Removed in ocserv 1.1.2")

    # --- TLS / DTLS (§10.4)
    opt("server-cert", "path", None, "v", "Server certificate, optionally followed by its "
        "chain (PEM)")
    opt("server-key", "path", None, "v", "Private key of server-cert (PEM)")
    opt("dh-params", "path", None, "v", "Diffie-Hellman parameters for old DHE cipher "
        "suites")
    opt("pin-file", "path", None, "v", "File holding the PIN of a PKCS#11 or TPM key")
    opt("srk-pin-file", "path", None, "v", "File holding the TPM storage-root-key PIN")
    opt("key-pin", "str", None, "v", "PIN that unlocks server-key (instead of pin-file)",
        secret=True)
    opt("srk-pin", "str", None, "v", "TPM storage-root-key PIN (instead of srk-pin-file)",
        secret=True)
    opt("ocsp-response", "path", None, "v", "OCSP response (DER) stapled into the TLS "
        "handshake")
    opt("tls-priorities", "str", DEFAULT_TLS_PRIORITIES, "v", "GnuTLS-style priority "
        "string selecting TLS versions and ciphers")
    opt("dtls-psk", "bool", True, "g", "Allow modern DTLS keyed from the TLS session "
        "(PSK-NEGOTIATE, openconnect 7.08+)")
    opt("dtls-legacy", "bool", True, "v", "Allow the pre-standard Cisco DTLS used by "
        "AnyConnect and old openconnect")
    opt("match-tls-dtls-ciphers", "bool", False, "v", "Make DTLS use the TLS channel's "
        "cipher (cannot be combined with dtls-legacy)")
    opt("no-udp", "bool", False, "u", "Disable DTLS/UDP: clients use the TCP tunnel only")
    opt("try-mtu-discovery", "bool", False, "g", "Probe the path MTU of DTLS sessions "
        "(needs dpd)")
    opt("switch-to-tcp-timeout", "int", 25, "v", "Seconds without UDP traffic after "
        "which data goes over TCP instead; 0 = never")

    # --- network (§10.5)
    opt("ipv4-network", "network", None, "u", "IPv4 address pool for clients: a.b.c.d/len, "
        "or a.b.c.d together with ipv4-netmask")
    opt("ipv4-netmask", "netmask", None, "u", "Netmask of ipv4-network (255.255.255.0 or "
        "24)")
    opt("ipv6-network", "network", None, "u", "IPv6 address pool for clients, as addr/len")
    opt("ipv6-prefix", "int", None, "v", "Old way of giving the prefix length of "
        "ipv6-network", alias_of="ipv6-network", minimum=11, maximum=128,
        deprecated="'ipv6-prefix' is obsolete; write ipv6-network as addr/len")
    opt("ipv6-subnet-prefix", "int", 128, "u", "Prefix length given to each client out "
        "of the IPv6 pool (128 = a single address)", minimum=1, maximum=128)
    opt("explicit-ipv4", "ip", None, "u", "Fixed IPv4 address for this user or group",
        user_only=True)
    opt("explicit-ipv6", "ip", None, "u", "Fixed IPv6 address for this user or group",
        user_only=True)
    opt("predictable-ips", "bool", True, "v", "Give a user the same tunnel address again "
        "whenever possible")
    opt("ping-leases", "bool", False, "g", "Ping an address before handing it out to "
        "make sure nobody else uses it")
    opt("dns", "list", (), "u", "DNS server pushed to clients; one line per server",
        item="ip")
    opt("ipv4-dns", "list", (), "u", "Same as dns", item="ip", alias_of="dns")
    opt("ipv6-dns", "list", (), "u", "Same as dns", item="ip", alias_of="dns")
    opt("nbns", "list", (), "u", "WINS (NetBIOS) server pushed to clients", item="ip")
    opt("ipv4-nbns", "list", (), "u", "Same as nbns", item="ip", alias_of="nbns")
    opt("ipv6-nbns", "list", (), "u", "Same as nbns", item="ip", alias_of="nbns")
    opt("default-domain", "str", None, "v", "DNS search domain(s) for clients, several "
        "separated by spaces")
    opt("split-dns", "list", (), "u", "Domain whose names are resolved by the VPN's DNS "
        "servers (split DNS); one per line", item="domain")
    opt("tunnel-all-dns", "bool", False, "u", "Send all DNS queries through the tunnel "
        "(always the case with a full tunnel)")
    opt("route", "list", (), "u", "Network reached through the VPN (addr/len, "
        "addr/netmask or 'default'); none at all = full tunnel", item="route")
    opt("no-route", "list", (), "u", "Network kept out of the VPN even though a route "
        "covers it", item="route")
    opt("iroute", "list", (), "u", "Network behind this user's device, routed to it on "
        "the server", item="route", user_only=True)
    opt("expose-iroutes", "bool", False, "v", "Offer every user's iroutes to the other "
        "clients as routes")
    opt("append-routes", "bool", False, "v", "Add the global routes to those from "
        "per-user/group files instead of replacing them")
    opt("restrict-user-to-routes", "bool", False, "u", "Firewall clients so they reach "
        "only the networks routed to them")
    opt("restrict-user-to-ports", "str", None, "u", "Firewall clients to these ports, or "
        "away from them with !(...): e.g. tcp(443), udp(53), icmp()")
    opt("client-bypass-protocol", "bool", False, "u", "Tell clients to bypass the VPN for "
        "an IP version the server has no pool for")
    opt("mtu", "int", None, "u", "Tunnel MTU offered to clients (default: derived from "
        "the network)", minimum=576, maximum=65535)
    opt("output-buffer", "int", None, "v", "Socket send buffer in packets of MTU size "
        "(bigger: more throughput, more latency)", minimum=1)
    opt("net-priority", "str", None, "u", "Priority of tunnel packets: 0-6 (SO_PRIORITY) "
        "or a TOS byte written 0xNN")
    opt("rx-data-per-sec", "int", None, "u", "Upload limit per client in bytes per "
        "second (unset = unlimited)", maximum=_U64)
    opt("tx-data-per-sec", "int", None, "u", "Download limit per client in bytes per "
        "second (unset = unlimited)", maximum=_U64)
    opt("proxy-url", "str", None, "v", "Proxy auto-config URL for clients; %{U} and %{G} "
        "become user and group")
    opt("user-profile", "path", None, "u", "AnyConnect XML profile offered to clients")
    opt("custom-header", "list", (), "v", "Extra header in the tunnel set-up reply; %{U} "
        "and %{G} are filled in", item="str")
    opt("included-http-headers", "list", (), "v", "Extra header added to every HTTP "
        "response (e.g. Strict-Transport-Security)", item="str")
    opt("hostname", "str", None, "u", "Host name given to the client, overriding the one "
        "it proposes", user_only=True)
    opt("config-per-user", "path", None, "v", "Directory of per-user settings files, each "
        "named after its user")
    opt("config-per-group", "path", None, "v", "Directory of per-group settings files, "
        "each named after its group")
    opt("default-user-config", "path", None, "v", "Settings file for users without a file "
        "of their own")
    opt("default-group-config", "path", None, "v", "Settings file for groups without a "
        "file of their own")

    # --- timers, cookies, rekey, compression (§10.6)
    opt("keepalive", "int", 32400, "u", "Seconds of silence after which the client sends "
        "a keepalive (keeps NAT mappings alive)")
    opt("dpd", "int", 90, "u", "Dead-peer-detection interval in seconds")
    opt("mobile-dpd", "int", 1800, "u", "Dead-peer-detection interval for phones and "
        "tablets (saves battery); 0 = same as dpd")
    opt("idle-timeout", "int", None, "u", "Disconnect a client after this many seconds "
        "without traffic; unset = never")
    opt("mobile-idle-timeout", "int", None, "u", "Idle timeout for phones and tablets; "
        "unset = same as idle-timeout")
    opt("session-timeout", "int", None, "u", "Seconds after which a session ends and the "
        "user must log in again; unset = no limit")
    opt("cookie-timeout", "int", 300, "v", "Seconds a disconnected client may come back "
        "without logging in again")
    opt("persistent-cookies", "bool", False, "v", "Keep session cookies valid even after "
        "the user disconnects on purpose")
    opt("deny-roaming", "bool", False, "u", "Tie a session to the client's address: no "
        "moving between networks")
    opt("rekey-time", "int", 172800, "v", "Seconds between key renewals; 0 = never (some "
        "clients dislike that)")
    opt("rekey-method", "choice", "new-tunnel", "v", "How keys are renewed: 'ssl' in "
        "place, 'new-tunnel' by reconnecting", choices=("ssl", "new-tunnel"))
    opt("compression", "bool", False, "v", "Offer LZS/LZ4 compression (off by default: "
        "compression can leak information)")
    opt("compression-algo-priority", "str", None, "g", "Override compression algorithm "
        "preference as NAME:NUMBER, e.g. lzs:95")
    opt("no-compress-limit", "int", 256, "v", "Packets up to this many bytes are never "
        "compressed (at least 64)")
    return table


OPTIONS: dict[str, OptionSpec] = _specs()

NOT_IMPLEMENTED: frozenset[str] = frozenset(
    name for name, spec in OPTIONS.items()
    if not spec.implemented and spec.type not in ("ignored", "removed"))

# Parsed but not implemented, and running without them would be less safe than the file
# says: the server refuses to start (issue 15) instead of warning.  A boolean is refused
# only when true (false is what OCGate does anyway), any other option whenever it is set.
# The rest of NOT_IMPLEMENTED cannot weaken security and is only warned about.
REFUSED_UNIMPLEMENTED: dict[str, str] = {
    "append-routes": "clients would not get the global routes, so traffic meant for the "
                     "VPN would bypass it",
    "camouflage": "the VPN would answer everyone, not only URLs carrying the secret",
    "custom-header": "the headers would not be sent to clients",
    "deny-roaming": "a session could move to another client address",
    "expose-iroutes": "clients would not get the other users' iroutes, so that traffic "
                      "would bypass the VPN",
    "included-http-headers": "the headers (e.g. Strict-Transport-Security) would not be "
                             "sent",
    "listen-netns": "the sockets would be opened in the server's own network namespace",
    "match-tls-dtls-ciphers": "DTLS would not be held to the TLS channel's cipher",
    "route-del-cmd": "routes added by route-add-cmd would not be removed when a user "
                     "leaves",
    "udp-listen-host": "DTLS would listen on the listen-host address(es) instead",
}
IMPLEMENTED_ENABLE_AUTH: frozenset[str] = frozenset({"certificate"})
IMPLEMENTED_ACCT: frozenset[str] = frozenset({"radius"})

# Keys accepted in per-user/per-group files (ocserv master, §10.7).
USER_OPTIONS: frozenset[str] = frozenset(
    name for name, spec in OPTIONS.items() if spec.scope == "u")

AUTH_METHODS: frozenset[str] = frozenset(
    {"plain", "pam", "radius", "certificate", "gssapi", "oidc"})
PASSWORD_AUTH_METHODS: frozenset[str] = frozenset({"plain", "pam", "radius"})
IMPLEMENTED_AUTH_METHODS: frozenset[str] = frozenset({"plain", "pam", "certificate",
                                                      "radius"})
ACCT_METHODS: frozenset[str] = frozenset({"radius", "pam"})


# --------------------------------------------------------------------------------------
# Auth method values: plain[passwd=FILE,otp=FILE] and friends
# --------------------------------------------------------------------------------------


@dataclass
class AuthMethod:
    """One ``auth``/``enable-auth``/``acct`` value, with its bracket parameters."""

    name: str
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}[{inner}]"


# Allowed bracket parameters per method and how each is checked.
_AUTH_PARAMS: dict[str, dict[str, str]] = {
    "plain": {"passwd": "path", "otp": "path"},
    "pam": {"gid-min": "uint", "service": "str"},
    "radius": {"config": "path", "groupconfig": "bool", "nas-identifier": "str",
               "group-separator": "separator"},
    "certificate": {},
    "gssapi": {"keytab": "path", "require-local-user-map": "bool",
               "tgt-freshness-time": "posint", "gid-min": "uint"},
    "oidc": {"config": "path"},
}
_AUTH_SYNTAX = "NAME or NAME[key=value,...]"


def parse_auth_method(text: str, *, accounting: bool = False) -> AuthMethod:
    """Parse ``plain[passwd=/etc/ocserv/ocpasswd]``-style text; raises ValueError.

    Stricter than ocserv (which prefix-matches names and ignores text after ``]``) so
    that a mistyped method is reported instead of silently becoming another one.
    """
    try:
        return _parse_auth(text, accounting)
    except _BadValue as exc:
        raise ValueError(exc.detail or f"expected {exc.expected}") from None


def _parse_auth(text: str, accounting: bool) -> AuthMethod:
    s = text.strip(_WS)
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9_-]*)[ \t]*(?:\[(.*)\])?", s, re.DOTALL)
    if m is None:
        if "[" in s and not s.endswith("]"):
            raise _BadValue(_AUTH_SYNTAX, "malformed brackets; expected NAME[key=value,...]")
        raise _BadValue(_AUTH_SYNTAX)
    name = m.group(1).lower()
    known = ACCT_METHODS if accounting else AUTH_METHODS
    if name not in known:
        kind = "accounting" if accounting else "authentication"
        raise _BadValue(_AUTH_SYNTAX, f"unknown {kind} method '{name}'; known: "
                        f"{', '.join(sorted(known))}")
    inner = m.group(2)
    params = _auth_params(name, inner) if inner is not None else {}
    _check_auth_params(name, params, accounting)
    return AuthMethod(name, params)


def _auth_params(name: str, inner: str) -> dict[str, str]:
    if "[" in inner or "]" in inner:
        raise _BadValue(_AUTH_SYNTAX, "malformed brackets in authentication method")
    body = inner.strip(_WS)
    if name in ("plain", "radius") and body[:1] in ("/", "."):
        return _legacy_auth_params(name, body)
    params: dict[str, str] = {}
    if not body:
        return params
    for part in body.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(_WS).lower(), value.strip(_WS)
        if not sep or not key:
            raise _BadValue(_AUTH_SYNTAX, f"expected key=value in '{name}[...]', got "
                            f"'{_show(part.strip(_WS))}'")
        if key in params:
            raise _BadValue(_AUTH_SYNTAX, f"parameter '{key}' given twice for '{name}'")
        params[key] = value
    return params


def _legacy_auth_params(name: str, body: str) -> dict[str, str]:
    """ocserv still accepts ``plain[/path]`` and ``radius[/path,groupconfig]``."""
    parts = [p.strip(_WS) for p in body.split(",")]
    key = "passwd" if name == "plain" else "config"
    params = {key: parts[0]}
    for extra in parts[1:]:
        if name == "radius" and extra.lower() == "groupconfig":
            params["groupconfig"] = "true"
        else:
            raise _BadValue(_AUTH_SYNTAX, f"unexpected '{_show(extra)}' in '{name}[...]'")
    return params


def _check_auth_params(name: str, params: dict[str, str], accounting: bool) -> None:
    allowed = _AUTH_PARAMS[name]
    if accounting and name == "pam":
        allowed = {}
    for key, value in params.items():
        kind = allowed.get(key)
        if kind is None:
            what = "takes no parameters" if not allowed else (
                f"accepts {', '.join(sorted(allowed))}")
            raise _BadValue(_AUTH_SYNTAX, f"unknown parameter '{key}' for '{name}'; "
                            f"{name} {what}")
        _check_auth_param_value(name, key, value, kind)
    if name == "plain" and not params.get("passwd") and not params.get("otp"):
        raise _BadValue(_AUTH_SYNTAX, "plain authentication needs passwd=FILE, otp=FILE "
                        "or both")
    if name == "radius" and not params.get("config"):
        raise _BadValue(_AUTH_SYNTAX, "radius needs config=FILE")


def _check_auth_param_value(name: str, key: str, value: str, kind: str) -> None:
    bad = f"invalid value for '{key}' in '{name}[...]': '{_show(value)}'"
    if not value:
        raise _BadValue(_AUTH_SYNTAX, f"empty value for '{key}' in '{name}[...]'")
    if kind in ("uint", "posint"):
        if not re.fullmatch(r"[0-9]{1,10}", value) or (kind == "posint" and int(value) == 0):
            raise _BadValue(_AUTH_SYNTAX, bad + " (expected a whole number)")
    elif kind == "bool":
        if value.lower() not in _BOOLS:
            raise _BadValue(_AUTH_SYNTAX, bad + " (expected true or false)")
    elif kind == "separator" and value.lower() not in ("semicolon", "comma"):
        raise _BadValue(_AUTH_SYNTAX, bad + " (expected semicolon or comma)")


# --------------------------------------------------------------------------------------
# Value converters (text -> typed value); each raises _BadValue
# --------------------------------------------------------------------------------------

_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _to_int(spec: OptionSpec, value: str) -> int:
    lo = spec.minimum if spec.minimum is not None else 0
    hi = spec.maximum if spec.maximum is not None else _U32
    if not re.fullmatch(r"[0-9]{1,20}", value):
        raise _BadValue("an integer")
    number = int(value)
    if not lo <= number <= hi:
        raise _BadValue(f"an integer from {lo} to {hi}")
    return number


def _to_bool(value: str) -> bool:
    try:
        return _BOOLS[value.lower()]
    except KeyError:
        raise _BadValue("true or false") from None


def _to_ip(value: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise _BadValue("an IPv4 or IPv6 address") from None


def _prefix_number(text: str, maximum: int) -> int | None:
    if re.fullmatch(r"[0-9]{1,3}", text) and int(text) <= maximum:
        return int(text)
    return None


def _mask_to_prefix(text: str) -> int | None:
    """Prefix length of a dotted IPv4 netmask, or None if it is not a contiguous mask."""
    try:
        mask = int(ipaddress.IPv4Address(text))
    except ValueError:
        return None
    prefix = bin(mask).count("1")
    return prefix if mask == (_U32 << (32 - prefix)) & _U32 else None


def _ipv4_prefix(text: str) -> int | None:
    """Accept ``24``, ``/24`` or ``255.255.255.0``."""
    text = text.removeprefix("/")
    return _mask_to_prefix(text) if "." in text else _prefix_number(text, 32)


def _to_route(value: str) -> IPNetwork | None:
    """``addr/len``, ``addr/netmask`` or ``default`` (returned as None, expanded later)."""
    expected = "addr/len, addr/netmask or 'default'"
    if value == "default":
        return None
    addr, sep, prefix_text = value.partition("/")
    if not sep:
        raise _BadValue(expected)
    try:
        if ":" in addr:
            prefix = _prefix_number(prefix_text, 128)
            if prefix is None:
                raise _BadValue(expected)
            return ipaddress.IPv6Network((ipaddress.IPv6Address(addr), prefix), strict=False)
        prefix = _ipv4_prefix(prefix_text) if prefix_text[:1] != "/" else None
        if prefix is None:
            raise _BadValue(expected)
        return ipaddress.IPv4Network((ipaddress.IPv4Address(addr), prefix), strict=False)
    except ValueError:
        raise _BadValue(expected) from None


def _to_domain(value: str) -> str:
    if any(c in _WS or not c.isprintable() for c in value):
        raise _BadValue("a domain name")
    return value


_PORT_ITEM = re.compile(r"[ \t]*(tcp|udp|sctp|icmpv6|icmp|esp)[ \t]*\([ \t]*([0-9]{0,5})"
                        r"[ \t]*\)[ \t]*", re.IGNORECASE)


def _check_ports(value: str) -> str:
    """restrict-user-to-ports: ``tcp(443), udp(53)`` or ``!(tcp(22), ...)``."""
    expected = "a list like tcp(443), udp(53), icmp() or !(...)"
    body = value.strip(_WS)
    if body.startswith("!"):
        inner = body[1:].strip(_WS)
        if not (inner.startswith("(") and inner.endswith(")")):
            raise _BadValue(expected)
        body = inner[1:-1]
    for item in body.split(","):
        m = _PORT_ITEM.fullmatch(item)
        if m is None or (m.group(2) and int(m.group(2)) > 65535):
            raise _BadValue(expected)
    return value


def _check_priority(value: str) -> str:
    if re.fullmatch(r"[0-6]", value) or re.fullmatch(r"0x[0-9a-fA-F]{1,2}", value):
        return value
    raise _BadValue("0 to 6, or a TOS byte such as 0x10")


def _check_device(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,12}", value):
        return value
    raise _BadValue("up to 12 letters, digits, '.', '_' or '-'")


def _check_oid(value: str) -> str:
    if value == "SAN(rfc822name)" or re.fullmatch(r"[0-9]+(\.[0-9]+)+", value):
        return value
    raise _BadValue("a dotted OID such as 2.5.4.3, or SAN(rfc822name)")


def _check_kkdcp(value: str) -> str:
    fields_ = value.split()
    if len(fields_) == 3 and fields_[0].startswith("/") and "@" in fields_[2]:
        return value
    raise _BadValue("'/PATH REALM proto@host:port'")


def _check_banner(value: str) -> str:
    if len(value.encode("utf-8", "surrogatepass")) > MAX_BANNER_BYTES:
        raise _BadValue(f"at most {MAX_BANNER_BYTES} bytes",
                        f"longer than {MAX_BANNER_BYTES} bytes")
    return value


def _check_dns(value: str) -> str:
    if value == "local":
        raise _BadValue("an IP address", "the 'local' DNS keyword is no longer supported")
    return str(_to_ip(value))


def _check_ipv4(value: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise _BadValue("an IPv4 address") from None


def _check_ipv6(value: str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(value)
    except ValueError:
        raise _BadValue("an IPv6 address") from None


_STR_CHECKS: dict[str, Callable[[str], Any]] = {
    "explicit-ipv4": _check_ipv4,
    "explicit-ipv6": _check_ipv6,
    "restrict-user-to-ports": _check_ports,
    "net-priority": _check_priority,
    "device": _check_device,
    "cert-user-oid": _check_oid,
    "kkdcp": _check_kkdcp,
    "banner": _check_banner,
    "dns": _check_dns,
    "nbns": lambda v: str(_to_ip(v)),
}


def _convert_item(spec: OptionSpec, value: str) -> Any:
    """Convert one non-empty value of ``spec`` (list options: one element)."""
    kind = spec.item if spec.type == "list" else spec.type
    check = _STR_CHECKS.get(spec.alias_of or spec.name)
    if kind == "int":
        return _to_int(spec, value)
    if kind == "bool":
        return _to_bool(value)
    if kind == "choice":
        if value not in spec.choices:
            raise _BadValue("one of " + ", ".join(spec.choices))
        return value
    if kind == "ip":
        return check(value) if check else _to_ip(value)
    if kind == "auth":
        return _parse_auth(value, accounting=spec.name == "acct")
    if kind == "route":
        return _to_route(value)
    if kind == "domain":
        return _to_domain(value)
    if any(c in "\x00\n" for c in value):
        raise _BadValue("text on a single line")
    return check(value) if check else value


def _expected_for(spec: OptionSpec) -> str:
    """Wording for an empty value of a typed option."""
    try:
        _convert_item(spec, "")
    except _BadValue as exc:
        return exc.expected
    return "a value"


def _show(value: str, limit: int = 60) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------
# Lexing: the inih rules ocserv relies on, kept with column spans so edits are exact
# --------------------------------------------------------------------------------------


@dataclass
class _Scan:
    """What one physical line is.  ``start:end`` is the raw value span (entries only)."""

    kind: str  # blank, comment, section, entry, cont, bad
    section: str
    key: str = ""
    start: int = 0
    end: int = 0
    error: str = ""


def _stop(line: str, pos: int, chars: str, quotes: bool) -> int:
    """Index of the first char in ``chars`` or of an inline comment (whitespace then '#')."""
    was_space = False
    in_quotes = False
    while pos < len(line):
        c = line[pos]
        if quotes and c == '"':
            in_quotes = not in_quotes
        elif not in_quotes and (c in chars or (was_space and c == "#")):
            return pos
        was_space = c in _WS
        pos += 1
    return len(line)


def _value_span(line: str, pos: int) -> tuple[int, int]:
    end = _stop(line, pos, "", quotes=True)
    while pos < end and line[pos] in _WS:
        pos += 1
    while end > pos and line[end - 1] in _WS:
        end -= 1
    return pos, end


def _scan_lines(lines: list[str]) -> list[_Scan]:
    """Classify every physical line as inih would, tracking section and continuations."""
    out: list[_Scan] = []
    section = ""
    prev_key = ""
    for number, line in enumerate(lines):
        off = 1 if number == 0 and line.startswith("\ufeff") else 0
        scan = _scan_one(line, off, section, prev_key)
        if scan.kind == "section":
            section, prev_key = scan.section, ""
        elif scan.kind == "entry":
            prev_key = scan.key
        elif scan.kind == "cont":
            scan.key = prev_key
        out.append(scan)
    return out


def _scan_one(line: str, off: int, section: str, prev_key: str) -> _Scan:
    if len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        return _Scan("bad", section, error=f"line too long (ocserv reads at most "
                     f"{MAX_LINE_BYTES} bytes per line)")
    if "\x00" in line:
        return _Scan("bad", section, error="NUL character in line")
    begin = off
    while begin < len(line) and line[begin] in _WS:
        begin += 1
    if begin == len(line):
        return _Scan("blank", section)
    first = line[begin]
    if first in "#;":
        return _Scan("comment", section)
    if prev_key and begin > off:
        start, end = _value_span(line, begin)
        return _Scan("cont", section, start=start, end=end)
    if first == "[":
        close = _stop(line, begin + 1, "]", quotes=False)
        if close == len(line) or line[close] != "]":
            return _Scan("bad", section, error="section header without closing ']'")
        return _Scan("section", line[begin + 1:close])
    sep = _stop(line, begin, "=:", quotes=False)
    if sep == len(line) or line[sep] not in "=:":
        return _Scan("bad", section, error="expected 'option = value'")
    key = line[begin:sep].rstrip(_WS)
    if not key:
        return _Scan("bad", section, error="missing option name before '='")
    start, end = _value_span(line, sep + 1)
    return _Scan("entry", section, key=key, start=start, end=end)


def _sanitize(raw: str) -> str:
    """ocserv's sanitize_config_value: trim whitespace and double quotes at both ends."""
    return raw.strip(_WS + '"')


def _split(text: str) -> list[str]:
    """Physical lines as fgets() sees them: only '\\n' ends a line."""
    return text.split("\n")


@dataclass
class _Entry:
    key: str
    value: str  # sanitized
    unsanitized: str
    line: int
    section: str
    continuation: bool


def _entries(text: str, path: str) -> list[_Entry]:
    lines = _split(text)
    result: list[_Entry] = []
    for number, (line, scan) in enumerate(zip(lines, _scan_lines(lines), strict=True), start=1):
        if scan.kind == "bad":
            raise ConfigError(scan.error, path, number)
        if scan.kind in ("entry", "cont"):
            raw = line[scan.start:scan.end]
            result.append(_Entry(scan.key, _sanitize(raw), raw, number, scan.section,
                                 scan.kind == "cont"))
        elif scan.kind == "section" and scan.section.startswith("vhost:"):
            if not scan.section[6:].strip(_WS):
                raise ConfigError("virtual host name is empty", path, number)
    return result


# --------------------------------------------------------------------------------------
# The parsed configuration
# --------------------------------------------------------------------------------------


@dataclass
class Config:
    """A validated ocserv.conf: one typed attribute per option, ocserv master defaults.

    Attributes hold *effective* values: derived defaults are applied (mobile-dpd 0 means
    dpd, mobile-idle-timeout falls back to idle-timeout, cisco-client-compat forces
    dtls-legacy and select-group-by-url, udp-listen-host falls back to listen-host, the
    TLS 1.3 exclusion cisco-client-compat adds to the default priorities).  What the file
    literally says is in ``raw`` (and editable through ConfigDocument).
    """

    # authentication and accounting
    auth: list[AuthMethod] = field(default_factory=list)
    enable_auth: list[AuthMethod] = field(default_factory=list)
    acct: AuthMethod | None = None
    ca_cert: str | None = None
    crl: str | None = None
    cert_user_oid: str | None = None
    cert_group_oid: str | None = None
    select_group: list[str] = field(default_factory=list)
    default_select_group: str | None = None
    auto_select_group: bool = False
    select_group_by_url: bool = False
    pre_login_banner: str | None = None
    banner: str | None = None
    auth_timeout: int = 240
    max_ban_score: int = 80
    ban_time: int = 300
    ban_reset_time: int = 1200
    ban_points_wrong_password: int = 10
    ban_points_connection: int = 1
    ban_points_kkdcp: int = 1
    cisco_client_compat: bool = False
    cisco_svc_client_compat: bool = False
    kkdcp: list[str] = field(default_factory=list)
    camouflage: bool = False
    camouflage_secret: str | None = None
    camouflage_realm: str | None = None
    # listening, processes, logging
    listen_host: str | None = None
    udp_listen_host: str | None = None
    listen_host_is_dyndns: bool = False
    listen_netns: str | None = None
    tcp_port: int = 443
    udp_port: int | None = None
    listen_proxy_proto: bool = False
    run_as_user: str | None = None
    run_as_group: str | None = None
    socket_file: str | None = None
    occtl_socket_file: str = "/var/run/occtl.socket"
    use_occtl: bool = False
    chroot_dir: str | None = None
    isolate_workers: bool = False
    limit_worker_memory: bool = True
    sec_mod_scale: int | None = None
    pid_file: str | None = None
    log_level: int = 2
    syslog_facility: str = "daemon"
    rate_limit_ms: int = 0
    server_drain_ms: int = 0
    server_stats_reset_time: int = 604800
    stats_report_time: int | None = None
    use_utmp: bool = True
    device: str = "vpns"
    connect_script: str | None = None
    disconnect_script: str | None = None
    host_update_script: str | None = None
    route_add_cmd: str | None = None
    route_del_cmd: str | None = None
    max_clients: int = 0
    max_same_clients: int = 0
    debug_no_secmod_stats: bool = False
    sec_mod_db_cleanup_time: int | None = None
    # TLS / DTLS
    server_cert: str | None = None
    server_key: str | None = None
    dh_params: str | None = None
    pin_file: str | None = None
    srk_pin_file: str | None = None
    key_pin: str | None = None
    srk_pin: str | None = None
    ocsp_response: str | None = None
    tls_priorities: str = DEFAULT_TLS_PRIORITIES
    dtls_psk: bool = True
    dtls_legacy: bool = True
    match_tls_dtls_ciphers: bool = False
    no_udp: bool = False
    try_mtu_discovery: bool = False
    switch_to_tcp_timeout: int = 25
    # network
    ipv4_network: ipaddress.IPv4Network | None = None
    ipv4_netmask: str | None = None
    ipv6_network: ipaddress.IPv6Network | None = None
    ipv6_subnet_prefix: int = 128
    explicit_ipv4: ipaddress.IPv4Address | None = None
    explicit_ipv6: ipaddress.IPv6Address | None = None
    predictable_ips: bool = True
    ping_leases: bool = False
    dns: list[str] = field(default_factory=list)
    nbns: list[str] = field(default_factory=list)
    default_domain: str | None = None
    split_dns: list[str] = field(default_factory=list)
    tunnel_all_dns: bool = False
    route: list[IPNetwork] = field(default_factory=list)
    no_route: list[IPNetwork] = field(default_factory=list)
    iroute: list[IPNetwork] = field(default_factory=list)
    expose_iroutes: bool = False
    append_routes: bool = False
    restrict_user_to_routes: bool = False
    restrict_user_to_ports: str | None = None
    client_bypass_protocol: bool = False
    mtu: int | None = None
    output_buffer: int | None = None
    net_priority: str | None = None
    rx_data_per_sec: int | None = None
    tx_data_per_sec: int | None = None
    proxy_url: str | None = None
    user_profile: str | None = None
    custom_header: list[str] = field(default_factory=list)
    included_http_headers: list[str] = field(default_factory=list)
    hostname: str | None = None
    config_per_user: str | None = None
    config_per_group: str | None = None
    default_user_config: str | None = None
    default_group_config: str | None = None
    # timers, cookies, rekey, compression
    keepalive: int = 32400
    dpd: int = 90
    mobile_dpd: int = 1800
    idle_timeout: int | None = None
    mobile_idle_timeout: int | None = None
    session_timeout: int | None = None
    cookie_timeout: int = 300
    persistent_cookies: bool = False
    deny_roaming: bool = False
    rekey_time: int = 172800
    rekey_method: str = "new-tunnel"
    compression: bool = False
    compression_algo_priority: str | None = None
    no_compress_limit: int = 256
    # bookkeeping (not options)
    path: str = "ocserv.conf"
    warnings: list[str] = field(default_factory=list)
    raw: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def full_tunnel(self) -> bool:
        """All traffic goes through the VPN: no routes at all, or a default route."""
        return not self.route or any(net.prefixlen == 0 for net in self.route)

    @property
    def min_reauth_time(self) -> int:
        """ocserv 1.1 name of ban_time (Debian 12's ocserv.conf still uses it)."""
        return self.ban_time

    @property
    def select_groups(self) -> list[tuple[str, str]]:
        """select-group entries as (group name, label shown in the login form)."""
        result = []
        for entry in self.select_group:
            name, _, rest = entry.partition("[")
            label = rest[:-1] if rest.endswith("]") else rest
            result.append((name.strip(_WS), label.strip(_WS) or name.strip(_WS)))
        return result


class _Builder:
    """Accumulates values of one file in order, then applies ocserv's cross-checks."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[str, Any] = {}
        self.lines: dict[str, int] = {}  # option (target) name -> last line seen
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self.routes: dict[str, list[tuple[IPNetwork | None, int]]] = {}
        self.certs: list[tuple[str, int]] = []
        self.keys: list[tuple[str, int]] = []
        self.password_auth: list[tuple[str, int]] = []
        self.net4: tuple[ipaddress.IPv4Address, int | None, int] | None = None
        self.mask4: tuple[int, int] | None = None
        self.net6: tuple[ipaddress.IPv6Address, int | None, int] | None = None
        self.prefix6: tuple[int, int] | None = None

    def warn_once(self, tag: str, message: str) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            self.warnings.append(message)

    def error(self, message: str, line: int | None) -> ConfigError:
        return ConfigError(message, self.path, line)

    def invalid(self, spec: OptionSpec, value: str, exc: _BadValue, entry: _Entry) -> ConfigError:
        why = exc.detail or f"expected {exc.expected}"
        if value == "":
            message = f"empty value for '{spec.name}' ({why})"
        elif spec.secret:
            message = f"invalid value for '{spec.name}' ({why})"
        else:
            message = f"invalid value for '{spec.name}': '{_show(value)}' ({why})"
        if entry.continuation:
            message += " (an indented line continues the previous option)"
        return self.error(message, entry.line)

    # -- per line
    def apply(self, spec: OptionSpec, entry: _Entry) -> None:
        if spec.type == "removed":
            raise self.error(f"the option '{spec.name}' was removed from ocserv", entry.line)
        if spec.deprecated:
            self.warn_once("dep:" + spec.name, spec.deprecated)
        if spec.type == "ignored":
            return
        target = OPTIONS[spec.alias_of] if spec.alias_of else spec
        value = entry.unsanitized if spec.name == "included-http-headers" else entry.value
        try:
            self._store(spec, target, value, entry)
        except _BadValue as exc:
            raise self.invalid(spec, value, exc, entry) from None
        self.refuse_unimplemented(spec, target, value, entry)
        if spec.user_only:
            self.warn_once("user:" + spec.name, f"option '{spec.name}' only has an effect "
                           "in per-user/per-group files (ignored here)")
        elif not target.implemented and target.name not in REFUSED_UNIMPLEMENTED:
            self.warn_once("ni:" + spec.name, f"option '{spec.name}' is not implemented "
                           "yet (ignored)")

    def refuse_unimplemented(self, spec: OptionSpec, target: OptionSpec, value: str,
                             entry: _Entry) -> None:
        """Stop at a REFUSED_UNIMPLEMENTED option that is on (see there)."""
        why = REFUSED_UNIMPLEMENTED.get(target.name)
        if why is None or value == "" or target.name == "udp-listen-host":
            return  # udp-listen-host: refused in _finish_derived, if not = listen-host
        if target.type == "bool":
            if not _BOOLS[value.lower()]:
                return
            hint = "remove it or set it to false"
        else:
            hint = "remove it"
        raise self.error(f"option '{spec.name}' is not implemented: {why}; {hint} to "
                         "start", entry.line)

    def _store(self, spec: OptionSpec, target: OptionSpec, value: str, entry: _Entry) -> None:
        special = _SPECIAL.get(spec.name)
        if special is not None:
            special(self, spec, value, entry)
            return
        if value == "":
            self._store_empty(spec, target, entry)
            return
        converted = _convert_item(spec, value)
        attr = target.attr
        assert attr is not None
        if target.multi:
            self.values.setdefault(attr, []).append(converted)
        else:
            if target.name in self.lines:
                self.warn_once("dup:" + target.name, f"option '{target.name}' is set more "
                               "than once; the last value is used")
            self.values[attr] = converted
        self.lines[target.name] = entry.line
        if target.name in ("auth", "enable-auth", "acct"):
            self._note_auth(target.name, converted, entry)

    def _store_empty(self, spec: OptionSpec, target: OptionSpec, entry: _Entry) -> None:
        """An empty value unsets text options; for numbers and booleans it is a typo."""
        if spec.type in ("int", "bool", "choice") or (spec.multi and spec.item == "auth"):
            raise _BadValue(_expected_for(spec))
        if not target.multi:
            attr = target.attr
            assert attr is not None
            self.values[attr] = None
            self.lines[target.name] = entry.line

    def _note_auth(self, option: str, method: AuthMethod, entry: _Entry) -> None:
        """An authentication or accounting method that is not implemented refuses to
        start: ignoring it would let users in differently from what the file says."""
        if option == "acct":
            if method.name not in IMPLEMENTED_ACCT:
                raise self.error(f"accounting method '{method.name}' is not implemented "
                                 f"(only {', '.join(sorted(IMPLEMENTED_ACCT))}); remove "
                                 "the 'acct' line to start", entry.line)
            return
        if method.name in PASSWORD_AUTH_METHODS:
            self.password_auth.append((method.name, entry.line))
        implemented = IMPLEMENTED_AUTH_METHODS if option == "auth" \
            else IMPLEMENTED_ENABLE_AUTH
        if method.name not in implemented:
            raise self.error(f"{option} = {method.name}: this authentication method is not "
                             f"implemented (for '{option}': "
                             f"{', '.join(sorted(implemented))}); remove the line to start",
                             entry.line)

    # -- after the last line
    def finish(self) -> Config:
        cfg = Config(path=self.path)
        for attr, value in self.values.items():
            setattr(cfg, attr, value)
        for spec in OPTIONS.values():  # an emptied option falls back to its default
            if spec.attr and not spec.alias_of and getattr(cfg, spec.attr) is None:
                setattr(cfg, spec.attr, spec.default)
        self._finish_auth(cfg)
        self._finish_networks(cfg)
        self._finish_routes(cfg)
        self._finish_certs(cfg)
        self._finish_chroot(cfg)
        self._finish_derived(cfg)
        return cfg

    def _finish_chroot(self, cfg: Config) -> None:
        """Workers enter chroot-dir after they fork; a directory that is not there would
        make every worker fail, so the server refuses to start instead."""
        if cfg.chroot_dir is None:
            return
        line = self.lines.get("chroot-dir")
        if not os.path.isabs(cfg.chroot_dir):
            raise self.error(f"'chroot-dir' must be an absolute path, not '{cfg.chroot_dir}'",
                             line)
        if not os.path.isdir(cfg.chroot_dir):
            raise self.error(f"'chroot-dir' {cfg.chroot_dir} is not a directory", line)

    def _finish_auth(self, cfg: Config) -> None:
        if not cfg.auth:
            raise self.error("the 'auth' option is required, e.g. "
                             "auth = \"plain[passwd=/etc/ocserv/ocpasswd]\"", None)
        if len(self.password_auth) > 1:
            name, line = self.password_auth[1]
            raise self.error(f"only one password-based authentication method may be "
                             f"configured ('{self.password_auth[0][0]}' and '{name}')", line)
        modules = [m.name for m in cfg.auth if m.name != "certificate"]
        if len(modules) > 1:
            raise self.error(f"'auth' lines combine '{modules[0]}' and '{modules[1]}'; use "
                             "enable-auth for alternatives", self.lines.get("auth"))
        uses_cert = any(m.name == "certificate" for m in cfg.auth + cfg.enable_auth)
        if uses_cert and cfg.cert_user_oid is None:
            raise self.error("certificate authentication needs 'cert-user-oid'",
                             self.lines.get("auth"))
        if uses_cert and not cfg.ca_cert:
            raise self.error("certificate authentication needs 'ca-cert' (the CA that "
                             "signs the client certificates)", self.lines.get("auth"))

    def _finish_networks(self, cfg: Config) -> None:
        if self.mask4 is not None and self.net4 is None:
            raise self.error("'ipv4-netmask' is set but 'ipv4-network' is not", self.mask4[1])
        if self.net4 is not None:
            addr, prefix, line = self.net4
            if self.mask4 is not None and (prefix is None or self.mask4[1] > line):
                prefix = self.mask4[0]
            if prefix is None:
                raise self.error("'ipv4-network' needs a prefix length (a.b.c.d/len) or "
                                 "an 'ipv4-netmask'", line)
            if not 1 <= prefix <= 30:
                raise self.error(f"IPv4 pool /{prefix} is unusable (prefix must be 1 to "
                                 "30)", line)
            cfg.ipv4_network = ipaddress.IPv4Network((addr, prefix), strict=False)
            cfg.ipv4_netmask = str(cfg.ipv4_network.netmask)
        if self.prefix6 is not None and self.net6 is None:
            raise self.error("'ipv6-prefix' is set but 'ipv6-network' is not",
                             self.prefix6[1])
        if self.net6 is not None:
            addr6, prefix6, line6 = self.net6
            if self.prefix6 is not None and (prefix6 is None or self.prefix6[1] > line6):
                prefix6 = self.prefix6[0]
            if prefix6 is None:
                raise self.error("'ipv6-network' needs a prefix length (addr/len)", line6)
            cfg.ipv6_network = ipaddress.IPv6Network((addr6, prefix6), strict=False)
            if cfg.ipv6_subnet_prefix <= prefix6:
                raise self.error(f"'ipv6-subnet-prefix' ({cfg.ipv6_subnet_prefix}) must be "
                                 f"longer than the IPv6 pool prefix ({prefix6})",
                                 self.lines.get("ipv6-subnet-prefix", line6))
        if cfg.ipv4_network is None and cfg.ipv6_network is None:
            raise self.error("no address pool: set 'ipv4-network' and/or 'ipv6-network'",
                             None)
        if cfg.ipv4_network is None:  # main and the workers assume an IPv4 lease
            raise self.error("an IPv6-only pool is not supported yet: set 'ipv4-network' "
                             "as well", None)

    def _finish_routes(self, cfg: Config) -> None:
        ipv6 = cfg.ipv6_network is not None
        for name, items in self.routes.items():
            setattr(cfg, name.replace("-", "_"), _expand_routes(items, ipv6))

    def _finish_certs(self, cfg: Config) -> None:
        if bool(self.certs) != bool(self.keys):
            present, missing = ("server-cert", "server-key") if self.certs else (
                "server-key", "server-cert")
            line = (self.certs or self.keys)[0][1]
            raise self.error(f"'{present}' is set but '{missing}' is not", line)
        if len(self.certs) != len(self.keys):
            last = max(line for _value, line in self.certs + self.keys)
            raise self.error("the number of 'server-key' lines does not match the number "
                             "of 'server-cert' lines", last)
        if self.certs:
            cfg.server_cert, cfg.server_key = self.certs[0][0], self.keys[0][0]
        if len(self.certs) > 1:
            self.warn_once("certs", "only the first server-cert/server-key pair is used")

    def _finish_derived(self, cfg: Config) -> None:
        if cfg.mobile_dpd == 0:
            cfg.mobile_dpd = cfg.dpd
        if "mobile_idle_timeout" not in self.values:
            cfg.mobile_idle_timeout = cfg.idle_timeout
        for attr in ("idle_timeout", "mobile_idle_timeout", "session_timeout"):
            if getattr(cfg, attr) == 0:
                setattr(cfg, attr, None)  # ocserv: 0 means "no limit", like unset
        cfg.no_compress_limit = max(cfg.no_compress_limit, 64)
        if cfg.udp_listen_host is None:
            cfg.udp_listen_host = cfg.listen_host
        elif cfg.udp_listen_host != cfg.listen_host:
            raise self.error("option 'udp-listen-host' is not implemented: "
                             f"{REFUSED_UNIMPLEMENTED['udp-listen-host']}; remove it or "
                             "make it equal to listen-host to start",
                             self.lines.get("udp-listen-host"))
        if cfg.cisco_client_compat or cfg.cisco_svc_client_compat:
            cfg.dtls_legacy = True
        if cfg.cisco_client_compat:
            cfg.select_group_by_url = True
            if self.values.get("tls_priorities") is None:  # ocserv issue #318
                cfg.tls_priorities = DEFAULT_TLS_PRIORITIES + ":-VERS-TLS1.3"
        try:
            parse_priorities(cfg.tls_priorities)
        except PriorityError as exc:
            raise self.error(f"tls-priorities: {exc}", self.lines.get("tls-priorities")) from None
        if cfg.cisco_svc_client_compat and cfg.udp_port not in (None, 443):
            raise self.error("cisco-svc-client-compat requires udp-port = 443",
                             self.lines.get("udp-port"))


def _expand_routes(items: list[tuple[IPNetwork | None, int]], ipv6: bool) -> list[IPNetwork]:
    """Turn 'default' markers into 0.0.0.0/0 (and ::/0 with an IPv6 pool), dropping repeats."""
    result: list[IPNetwork] = []
    for net, _line in items:
        candidates: list[IPNetwork]
        if net is None:
            candidates = [ipaddress.IPv4Network("0.0.0.0/0")]
            if ipv6:
                candidates.append(ipaddress.IPv6Network("::/0"))
        else:
            candidates = [net]
        result.extend(c for c in candidates if c not in result)
    return result


# Options whose values need more than a per-value conversion.
def _sp_ipv4_network(b: _Builder, spec: OptionSpec, value: str, entry: _Entry) -> None:
    if not value:
        b.net4 = None
        return
    addr, sep, prefix_text = value.partition("/")
    prefix = _ipv4_prefix(prefix_text) if sep else None
    try:
        address = ipaddress.IPv4Address(addr)
    except ValueError:
        address = None
    if address is None or (sep and prefix is None):
        raise _BadValue("an IPv4 network such as 192.168.1.0/24")
    b.net4 = (address, prefix, entry.line)
    b.lines[spec.name] = entry.line


def _sp_ipv4_netmask(b: _Builder, spec: OptionSpec, value: str, entry: _Entry) -> None:
    prefix = _ipv4_prefix(value)
    if prefix is None:
        raise _BadValue("a netmask such as 255.255.255.0 or a prefix length such as 24")
    b.mask4 = (prefix, entry.line)


def _sp_ipv6_network(b: _Builder, spec: OptionSpec, value: str, entry: _Entry) -> None:
    if not value:
        b.net6 = None
        return
    addr, sep, prefix_text = value.partition("/")
    prefix = _prefix_number(prefix_text, 128) if sep else None
    try:
        address = ipaddress.IPv6Address(addr)
    except ValueError:
        address = None
    if address is None or (sep and (prefix is None or prefix == 0)):
        raise _BadValue("an IPv6 network such as fda9:4efe:7e3b:3ea::/48")
    b.net6 = (address, prefix, entry.line)


def _sp_ipv6_prefix(b: _Builder, spec: OptionSpec, value: str, entry: _Entry) -> None:
    b.prefix6 = (_to_int(spec, value), entry.line)


def _sp_route(b: _Builder, spec: OptionSpec, value: str, entry: _Entry) -> None:
    if value:
        b.routes.setdefault(spec.name, []).append((_to_route(value), entry.line))


def _sp_udp_port(b: _Builder, spec: OptionSpec, value: str, entry: _Entry) -> None:
    """udp-port = 0 is how ocserv configs switch DTLS off; keep that meaning as None."""
    b.values["udp_port"] = None if value in ("", "0") else _to_int(spec, value)
    b.lines[spec.name] = entry.line


def _sp_cert(b: _Builder, spec: OptionSpec, value: str, entry: _Entry) -> None:
    if value:
        (b.certs if spec.name == "server-cert" else b.keys).append((value, entry.line))


def _sp_always_require_cert(b: _Builder, spec: OptionSpec, value: str, entry: _Entry) -> None:
    if not _to_bool(value):
        b.values["cisco_client_compat"] = True


_SPECIAL: dict[str, Callable[[_Builder, OptionSpec, str, _Entry], None]] = {
    "ipv4-network": _sp_ipv4_network,
    "ipv4-netmask": _sp_ipv4_netmask,
    "ipv6-network": _sp_ipv6_network,
    "ipv6-prefix": _sp_ipv6_prefix,
    "route": _sp_route,
    "no-route": _sp_route,
    "iroute": _sp_route,
    "udp-port": _sp_udp_port,
    "server-cert": _sp_cert,
    "server-key": _sp_cert,
    "always-require-cert": _sp_always_require_cert,
}


def parse_config(text: str, path: str = "ocserv.conf") -> Config:
    """Parse and validate ocserv.conf text; raises ConfigError naming file and line."""
    builder = _Builder(path)
    raw: list[tuple[str, str, int]] = []
    for entry in _entries(text, path):
        value = entry.unsanitized if entry.key == "included-http-headers" else entry.value
        if entry.section:
            _vhost_entry(builder, entry)
            continue
        raw.append((entry.key, value, entry.line))
        spec = OPTIONS.get(entry.key)
        if spec is None:
            builder.warn_once("unknown:" + entry.key, f"unknown option '{entry.key}' (kept)")
            continue
        builder.apply(spec, entry)
    cfg = builder.finish()
    cfg.raw = raw
    cfg.warnings = builder.warnings
    log.debug("parsed %s: %d settings, %d warnings", path, len(raw), len(cfg.warnings))
    return cfg


def _vhost_entry(b: _Builder, entry: _Entry) -> None:
    if not entry.section.startswith("vhost:"):
        b.warn_once("section:" + entry.section, f"unknown section '[{entry.section}]' "
                    "skipped")
        return
    spec = OPTIONS.get(entry.key)
    if spec is not None and spec.scope == "g":
        raise b.error(f"'{entry.key}' cannot be set inside a virtual host section",
                      entry.line)
    name = entry.section[6:].strip(_WS).lower()
    raise b.error(f"virtual host sections are not implemented: clients of '{name}' would "
                  "get the global settings instead of this section's; remove the "
                  f"[{entry.section}] section to start", entry.line)


def _read_text(path: str, limit: int | None = None) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read() if limit is None else fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path) from None
    if limit is not None and len(data) > limit:
        raise ConfigError(f"file is larger than {limit} bytes", path)
    return _decode(data, path)


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("file is not valid UTF-8", path, line) from None


def load_config(path: str) -> Config:
    """Read and validate an ocserv.conf file."""
    return parse_config(_read_text(path), path)


# --------------------------------------------------------------------------------------
# Per-user / per-group files (§10.7)
# --------------------------------------------------------------------------------------


@dataclass
class UserConfig:
    """Settings from a per-user or per-group file; None (or an absent list) = not set."""

    dns: list[str] | None = None
    nbns: list[str] | None = None
    ipv4_network: ipaddress.IPv4Network | None = None
    ipv4_netmask: str | None = None
    ipv6_network: ipaddress.IPv6Network | None = None
    ipv6_subnet_prefix: int | None = None
    explicit_ipv4: ipaddress.IPv4Address | None = None
    explicit_ipv6: ipaddress.IPv6Address | None = None
    route: list[IPNetwork] | None = None
    no_route: list[IPNetwork] | None = None
    iroute: list[IPNetwork] | None = None
    split_dns: list[str] | None = None
    tunnel_all_dns: bool | None = None
    rx_data_per_sec: int | None = None
    tx_data_per_sec: int | None = None
    net_priority: str | None = None
    deny_roaming: bool | None = None
    no_udp: bool | None = None
    keepalive: int | None = None
    dpd: int | None = None
    mobile_dpd: int | None = None
    max_same_clients: int | None = None
    restrict_user_to_routes: bool | None = None
    restrict_user_to_ports: str | None = None
    stats_report_time: int | None = None
    mtu: int | None = None
    idle_timeout: int | None = None
    mobile_idle_timeout: int | None = None
    session_timeout: int | None = None
    hostname: str | None = None
    user_profile: str | None = None
    client_bypass_protocol: bool | None = None


def parse_user_config(text: str, path: str, *, ipv6: bool = False) -> UserConfig:
    """Parse a per-user/per-group file; any key not allowed there is an error.

    ``ipv6`` says whether 'route = default' should also cover ::/0.
    """
    builder = _Builder(path)
    for entry in _entries(text, path):
        if entry.section:
            raise ConfigError("sections are not allowed in per-user/per-group files",
                              path, entry.line)
        spec = OPTIONS.get(entry.key)
        if spec is None or spec.scope != "u":
            raise ConfigError(f"option '{entry.key}' is not allowed in per-user/per-group "
                              "files", path, entry.line)
        target = OPTIONS[spec.alias_of] if spec.alias_of else spec
        try:
            builder._store(spec, target, entry.value, entry)
        except _BadValue as exc:
            raise builder.invalid(spec, entry.value, exc, entry) from None
        builder.refuse_unimplemented(spec, target, entry.value, entry)
    return _user_config_from(builder, ipv6)


def _user_config_from(b: _Builder, ipv6: bool) -> UserConfig:
    user = UserConfig()
    for attr, value in b.values.items():
        setattr(user, attr, value)
    if b.mask4 is not None and b.net4 is None:
        raise b.error("'ipv4-netmask' is set but 'ipv4-network' is not", b.mask4[1])
    if b.net4 is not None:
        addr, prefix, line = b.net4
        if b.mask4 is not None and (prefix is None or b.mask4[1] > line):
            prefix = b.mask4[0]
        if prefix is None or not 1 <= prefix <= 30:
            raise b.error("'ipv4-network' needs a prefix length from 1 to 30 (a.b.c.d/len "
                          "or ipv4-netmask)", line)
        user.ipv4_network = ipaddress.IPv4Network((addr, prefix), strict=False)
        user.ipv4_netmask = str(user.ipv4_network.netmask)
    if b.net6 is not None:
        addr6, prefix6, line6 = b.net6
        if prefix6 is None:
            raise b.error("'ipv6-network' needs a prefix length (addr/len)", line6)
        user.ipv6_network = ipaddress.IPv6Network((addr6, prefix6), strict=False)
    ipv6 = ipv6 or user.ipv6_network is not None
    for name, items in b.routes.items():
        setattr(user, name.replace("-", "_"), _expand_routes(items, ipv6))
    return user


def _check_name(name: str, kind: str, directory: str) -> None:
    if not name or "/" in name or name.startswith(".") or "\x00" in name:
        raise ConfigError(f"refusing to load settings for illegal {kind} name "
                          f"'{_show(name)}'", directory)


def _open_in_dir(directory: str, name: str) -> int | None:
    """Open directory/name without following symlinks; None if there is no such file."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        log.warning("cannot open settings directory %s", directory)
        return None
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            raise ConfigError(f"cannot open '{_show(name)}': {exc.strerror}",
                              directory) from None
        return None
    finally:
        os.close(dir_fd)


def _read_fd(fd: int, path: str) -> str:
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_USER_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path) from None
    if len(data) > MAX_USER_FILE_BYTES:
        raise ConfigError(f"file is larger than {MAX_USER_FILE_BYTES} bytes", path)
    return _decode(data, path)


def _load_sup_file(directory: str, name: str, fallback: str | None, kind: str,
                   ipv6: bool) -> UserConfig:
    _check_name(name, kind, directory)
    fd = _open_in_dir(directory, name)
    if fd is not None:
        path = os.path.join(directory, name)
        return parse_user_config(_read_fd(fd, path), path, ipv6=ipv6)
    if fallback is not None:
        if os.path.exists(fallback):
            return parse_user_config(_read_text(fallback, MAX_USER_FILE_BYTES), fallback,
                                     ipv6=ipv6)
        log.warning("default %s settings file %s does not exist", kind, fallback)
    return UserConfig()


def merge_user_configs(group: UserConfig, user: UserConfig) -> UserConfig:
    """Combine group then user settings the way ocserv does.

    Single values from the user file win.  Lists are concatenated (group entries first),
    because ocserv appends both files' lines to the same lists.
    """
    merged = UserConfig()
    for f in dataclasses.fields(UserConfig):
        g, u = getattr(group, f.name), getattr(user, f.name)
        if isinstance(g, list) and isinstance(u, list):
            value: Any = g + [x for x in u if x not in g]
        else:
            value = u if u is not None else g
        setattr(merged, f.name, value)
    return merged


def load_user_config(cfg: Config, username: str, groupname: str | None) -> UserConfig:
    """Settings for one login: group file (or default-group-config), then user file.

    As in ocserv, files are looked up only when config-per-user/config-per-group is set,
    the default-*-config file is used when the named file does not exist, and names that
    could escape the directory are refused.  Missing files simply mean no settings.
    """
    ipv6 = cfg.ipv6_network is not None
    group = UserConfig()
    if groupname and cfg.config_per_group is not None:
        group = _load_sup_file(cfg.config_per_group, groupname, cfg.default_group_config,
                               "group", ipv6)
    user = UserConfig()
    if cfg.config_per_user is not None:
        user = _load_sup_file(cfg.config_per_user, username, cfg.default_user_config,
                              "user", ipv6)
    return merge_user_configs(group, user)


# --------------------------------------------------------------------------------------
# Rendering values and editing documents
# --------------------------------------------------------------------------------------


def render_value(spec: OptionSpec, value: Any) -> str:
    """Text for one value of ``spec`` (one element for list options), checked by re-parsing."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        text = value.with_prefixlen
    else:
        text = str(value)
    text = text.strip(_WS)
    if text:
        special = _SPECIAL.get(spec.name)
        try:
            if special is not None:
                special(_Builder("render"), spec, text, _Entry(spec.name, text, text, 0, "",
                                                              False))
            else:
                _convert_item(spec, text)
        except _BadValue as exc:
            raise ConfigError(f"invalid value for '{spec.name}': '{_show(text)}' "
                              f"(expected {exc.expected})") from None
    return text


def render_values(spec: OptionSpec, value: Any) -> list[str]:
    """All lines' values for ``spec``: None -> [], lists -> one entry per element."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [render_value(spec, v) for v in value]
    return [render_value(spec, value)]


def _quote_for_file(value: str, quoted: bool) -> str:
    """Make ``value`` survive the parser unchanged, quoting only when needed or asked."""
    if any(c in value for c in "\n\r\x00"):
        raise ConfigError(f"value '{_show(value)}' spans several lines")
    if value != value.strip(_WS + '"') and value != "":
        raise ConfigError(f"value '{_show(value)}' cannot start or end with spaces or "
                          "double quotes in ocserv.conf")
    if value.count('"') % 2:
        raise ConfigError(f"value '{_show(value)}' has an unbalanced double quote")
    needs = value == "" or value.startswith("#") or bool(re.search(r"[ \t\v\f]#", value))
    if needs and '"' in value:
        raise ConfigError(f"value '{_show(value)}' cannot be written: it contains both "
                          "'#' and double quotes")
    return f'"{value}"' if needs or quoted else value


_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class ConfigDocument:
    """ocserv.conf text that can be edited while comments, order and unknown lines stay.

    ``section`` arguments name a ``[section]`` header's content (e.g. "vhost:example.com");
    the default "" is the global part before the first header.
    """

    def __init__(self, text: str, path: str = "ocserv.conf") -> None:
        self.path = path
        self._lines = _split(text)
        self._crlf = bool(self._lines) and self._lines[0].endswith("\r")

    @classmethod
    def load(cls, path: str) -> ConfigDocument:
        return cls(_read_text(path), path)

    def text(self) -> str:
        return "\n".join(self._lines)

    def _value_lines(self, key: str, section: str) -> list[tuple[int, _Scan]]:
        return [(i, s) for i, s in enumerate(_scan_lines(self._lines))
                if s.kind in ("entry", "cont") and s.key == key and s.section == section]

    def get(self, key: str, section: str = "") -> list[str]:
        """Values of every line of ``key`` in file order (quotes and spaces trimmed)."""
        values = []
        for i, scan in self._value_lines(key, section):
            raw = self._lines[i][scan.start:scan.end]
            values.append(raw if key == "included-http-headers" else _sanitize(raw))
        return values

    def set(self, key: str, value: str | list[str], section: str = "") -> None:
        """Replace the key's lines in place; extra values go after the last one."""
        self._check_key(key)
        values = [value] if isinstance(value, str) else list(value)
        spec = OPTIONS.get(key)
        if spec is not None and not spec.multi and len(values) > 1:
            raise ConfigError(f"'{key}' takes a single value", self.path)
        existing = self._value_lines(key, section)
        texts = [v.strip(_WS) for v in values]
        for t in texts:  # refuse before touching anything, so a failed set() changes nothing
            _quote_for_file(t, True)
            _quote_for_file(t, False)
        for i, scan in existing[: len(texts)]:
            line = self._lines[i]
            old = line[scan.start:scan.end]
            quoted = len(old) >= 2 and old.startswith('"') and old.endswith('"')
            new = _quote_for_file(texts.pop(0), quoted)
            self._lines[i] = line[: scan.start] + new + line[scan.end:]
        for i, _scan in reversed(existing[len(values):]):
            del self._lines[i]
        if texts:
            where = (existing[-1][0] + 1 if existing else self._insert_point(section))
            where = self._clear_continuation(where)
            ending = "\r" if self._crlf else ""
            new_lines = [f"{key} = {_quote_for_file(t, False)}{ending}" for t in texts]
            self._lines[where:where] = new_lines

    def _clear_continuation(self, where: int) -> int:
        """Where new lines can go at ``where`` without changing what follows: inih reads an
        indented line as a continuation of the setting before it. A continuation already
        there is skipped; an indented line that continues nothing (no setting before it)
        loses its indent, which means the same to inih and keeps it off our new line."""
        scans = _scan_lines(self._lines)
        while where < len(scans) and scans[where].kind == "cont":
            where += 1
        if where < len(self._lines):
            line = self._lines[where]
            body = line.lstrip(_WS)
            if body and body != line and body[0] not in ";#":
                self._lines[where] = body
        return where

    def remove(self, key: str, section: str = "") -> None:
        """Delete every line of ``key`` (continuation lines included)."""
        for i, _scan in reversed(self._value_lines(key, section)):
            del self._lines[i]

    def _check_key(self, key: str) -> None:
        if not _KEY_RE.fullmatch(key):
            raise ConfigError(f"invalid option name '{_show(key)}'", self.path)

    def _insert_point(self, section: str) -> int:
        """Where a new line for ``section`` goes: after its last setting, or at its end."""
        scans = _scan_lines(self._lines)
        end = len(self._lines) - 1 if self._lines and self._lines[-1] == "" else len(
            self._lines)
        headers = [i for i, s in enumerate(scans) if s.kind == "section"]
        owned = [i for i, s in enumerate(scans)
                 if s.kind in ("entry", "cont") and s.section == section]
        if section == "" and not headers:
            return end
        if owned:
            return owned[-1] + 1
        if section == "":
            first = headers[0]
            while first > 0 and scans[first - 1].kind == "comment":
                first -= 1
            return first
        mine = [i for i in headers if scans[i].section == section]
        if mine:
            return mine[-1] + 1
        ending = "\r" if self._crlf else ""
        self._lines[end:end] = ["" + ending, f"[{section}]{ending}"]
        return end + 2


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


def _keep_backup(path: str) -> None:
    """Make path + '.bak' the current file, atomically (hard link, copy if links fail)."""
    backup = path + ".bak"
    staging = f"{backup}.{os.getpid()}.tmp"
    if os.path.lexists(staging):
        os.unlink(staging)
    try:
        os.link(path, staging)
    except OSError:
        shutil.copy2(path, staging)
    os.replace(staging, backup)


def write_config_atomic(path: str, text: str) -> Config:
    """Validate ``text``, then replace ``path`` so readers see the old or the new file.

    Nothing is touched when validation fails.  The previous file is kept as
    ``path + '.bak'``; new files are created 0600 (keys and secrets may be inside),
    existing files keep their mode and owner.
    """
    cfg = parse_config(text, path)
    mode, owner = existing_mode_and_owner(path)
    write_atomic(path, text.encode("utf-8"), 0o600 if mode is None else mode, owner=owner,
                 before_replace=None if mode is None else lambda: _keep_backup(path))
    log.info("wrote %s%s", path, " (previous version kept as .bak)" if mode is not None else "")
    return cfg
