"""The ocserv.conf option table: every option's type, default, scope and help text."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

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
    "tcp-port", "udp-port", "listen-host", "udp-listen-host", "listen-netns", "auth",
    "server-cert", "server-key",
    "key-pin", "pin-file",  # an encrypted server-key (protocol/tls/credentials.py)
    "ipv4-network", "ipv4-netmask", "route", "no-route", "dns", "default-domain", "split-dns",
    "mtu", "keepalive", "dpd", "mobile-dpd", "mobile-idle-timeout", "idle-timeout",
    "session-timeout", "cookie-timeout",
    "max-clients", "max-same-clients", "banner", "pre-login-banner", "connect-script",
    "disconnect-script", "device", "predictable-ips", "socket-file", "pid-file",
    "run-as-user", "run-as-group", "occtl-socket-file", "use-occtl", "tls-priorities",
    "rekey-time", "rekey-method", "tunnel-all-dns", "compression", "no-compress-limit",
    "compression-algo-priority", "dtls-psk", "dtls-legacy", "switch-to-tcp-timeout",
    "try-mtu-discovery", "iroute", "route-add-cmd", "route-del-cmd", "explicit-ipv4",
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
    "nbns",  # pushed as X-CSTP-NBNS (main/sessions.py, protocol/cstp.py)
    "syslog-facility",  # background mode (main/daemon.py)
    "acct", "stats-report-time",  # RADIUS (auth/radius/) and PAM (auth/pam.py) accounting
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
    # not in ocserv 1.1.6; OCGate sets no such cap, so its default here is what it does
    opt("limit-worker-memory", "bool", False, "g", "Cap each worker's heap as a defence "
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
    opt("route-add-cmd", "str", None, "g", "Shell command routing a client's iroute: "
        "%{R} route as net/mask, %{RI} as CIDR, %{D} device")
    opt("route-del-cmd", "str", None, "g", "Shell command that removes such a route when "
        "the session ends (same placeholders)")
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
    opt("pin-file", "path", None, "v", "File holding the PIN of server-key (encrypted "
        "PEM; PKCS#11 and TPM keys are not supported)")
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
    "limit-worker-memory": "the workers' memory would not be capped (a defence against "
                           "memory exhaustion)",
    "match-tls-dtls-ciphers": "DTLS would not be held to the TLS channel's cipher",
    "ping-leases": "an address still used by another host (a proxy-ARP LAN) could be "
                   "leased to a client, which would then receive that host's traffic",
}
IMPLEMENTED_ENABLE_AUTH: frozenset[str] = frozenset({"certificate", "plain", "pam", "radius"})
IMPLEMENTED_ACCT: frozenset[str] = frozenset({"radius", "pam"})

# Keys accepted in per-user/per-group files (ocserv master, §10.7).
USER_OPTIONS: frozenset[str] = frozenset(
    name for name, spec in OPTIONS.items() if spec.scope == "u")

AUTH_METHODS: frozenset[str] = frozenset(
    {"plain", "pam", "radius", "certificate", "gssapi", "oidc"})
PASSWORD_AUTH_METHODS: frozenset[str] = frozenset({"plain", "pam", "radius"})
IMPLEMENTED_AUTH_METHODS: frozenset[str] = frozenset({"plain", "pam", "certificate",
                                                      "radius"})
ACCT_METHODS: frozenset[str] = frozenset({"radius", "pam"})
