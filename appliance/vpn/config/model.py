"""The parsed configuration (Config) and the parser/validator that builds it."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.tls.priorities import PriorityError, parse_priorities
from .lexer import _entries, _Entry
from .options import (
    _WS,
    DEFAULT_TLS_PRIORITIES,
    IMPLEMENTED_ACCT,
    IMPLEMENTED_AUTH_METHODS,
    IMPLEMENTED_ENABLE_AUTH,
    OPTIONS,
    PASSWORD_AUTH_METHODS,
    REFUSED_UNIMPLEMENTED,
    ConfigError,
    IPNetwork,
    OptionSpec,
    _BadValue,
)
from .values import (
    _BOOLS,
    AuthMethod,
    _convert_item,
    _expected_for,
    _ipv4_prefix,
    _prefix_number,
    _show,
    _to_bool,
    _to_int,
    _to_route,
)
from .vhost import (
    GLOBAL_IN_OCGATE,
    SERVER_WIDE,
    inherit_server_wide,
    vhost_name,
    vhost_refusal,
)

log = logging.getLogger(__name__)


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
    limit_worker_memory: bool = False
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
    # [vhost:NAME] sections (config/vhosts.py): each a whole Config of its own, by
    # canonical name; None on the vhost Configs themselves, which carry their name instead
    vhosts: dict[str, Config] = field(default_factory=dict)
    vhost_name: str | None = None

    def vhost(self, name: str | None) -> Config:
        """The configuration of the virtual host a client asked for (by SNI, or the name a
        session was created under); any other name, or none, gets the default one, as
        ocserv's find_vhost does."""
        if name:
            found = self.vhosts.get(name.lower().rstrip("."))
            if found is not None:
                return found
        return self

    @property
    def label(self) -> str:
        """The name occtl and the scripts show (ocserv's VHOSTNAME)."""
        return self.vhost_name or "default"

    @property
    def full_tunnel(self) -> bool:
        """All traffic goes through the VPN: no routes at all, or a default route."""
        return not self.route or any(net.prefixlen == 0 for net in self.route)

    def where(self, option: str) -> str:
        """``file:line`` of the (last) line that sets ``option``, for error messages."""
        lines = [line for key, _value, line in self.raw if key == option]
        return f"{self.path}:{lines[-1]}" if lines else self.path

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
        if why is None or value == "":
            return
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
        if cfg.udp_listen_host is None:  # ocserv: DTLS listens where TLS does
            cfg.udp_listen_host = cfg.listen_host
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
    sections: dict[str, list[_Entry]] = {}
    for entry in _entries(text, path):
        value = entry.unsanitized if entry.key == "included-http-headers" else entry.value
        if entry.section:
            _section_entry(builder, entry, sections)
            continue
        raw.append((entry.key, value, entry.line))
        spec = OPTIONS.get(entry.key)
        if spec is None:
            builder.warn_once("unknown:" + entry.key, f"unknown option '{entry.key}' (kept)")
            continue
        builder.apply(spec, entry)
    cfg = builder.finish()
    cfg.raw = raw
    for name, entries in sections.items():
        cfg.vhosts[name] = _build_vhost(cfg, name, entries, builder)
    if cfg.vhosts:
        for key, _value, line in raw:
            if key in GLOBAL_IN_OCGATE:
                builder.warn_once("vhglobal:" + key, f"{path}:{line}: '{key}' also applies "
                                  "to the virtual hosts (ocserv 1.1.6 would give them its "
                                  "built-in default)")
    cfg.warnings = builder.warnings
    log.debug("parsed %s: %d settings, %d warnings", path, len(raw), len(cfg.warnings))
    return cfg


def _section_entry(b: _Builder, entry: _Entry, sections: dict[str, list[_Entry]]) -> None:
    if not entry.section.startswith("vhost:"):
        b.warn_once("section:" + entry.section, f"unknown section '[{entry.section}]' "
                    "skipped")
        return
    sections.setdefault(vhost_name(entry.section[6:]), []).append(entry)


def _build_vhost(glob: Config, name: str, entries: list[_Entry], outer: _Builder) -> Config:
    """One [vhost:NAME] section as ocserv builds it: ocserv's built-in defaults plus the
    section's own lines (nothing is inherited from the global part, but the TLS
    priorities), with the server-wide options taken from the global part; vhost.py says
    which options OCGate refuses or, as ocserv, ignores inside a section."""
    b = _Builder(glob.path)
    for entry in entries:
        spec = OPTIONS.get(entry.key)
        if spec is None:
            b.warn_once("unknown:" + entry.key, f"unknown option '{entry.key}' (kept)")
            continue
        target = OPTIONS[spec.alias_of] if spec.alias_of else spec
        refusal = vhost_refusal(target.name)
        if refusal:
            raise b.error(f"[vhost:{name}]: '{entry.key}' cannot be set per virtual host "
                          f"in OCGate ({refusal}); move it to the global part to start",
                          entry.line)
        if target.name in SERVER_WIDE:
            b.warn_once("vh:" + entry.key, f"{glob.path}:{entry.line}: '{entry.key}' is "
                        f"ignored on virtual host {name}, as in ocserv (the global value "
                        "applies)")
            continue
        b.apply(spec, entry)
    try:
        vcfg = b.finish()
    except ConfigError as exc:
        raise ConfigError(f"[vhost:{name}]: {exc.message}", exc.path,
                          exc.line if exc.line is not None else entries[0].line) from None
    inherit_server_wide(vcfg, glob, explicit_priorities="tls_priorities" in b.values)
    vcfg.vhost_name = name
    vcfg.raw = [(e.key, e.value, e.line) for e in entries]
    outer.warnings.extend(b.warnings)
    return vcfg


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
