"""Tests for appliance.vpn.config: the ocserv.conf parser, validator, editor and writer."""

from __future__ import annotations

import dataclasses
import ipaddress
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.vpn.config import (
    NOT_IMPLEMENTED,
    OPTIONS,
    REFUSED_UNIMPLEMENTED,
    USER_OPTIONS,
    AuthMethod,
    Config,
    ConfigDocument,
    ConfigError,
    OptionSpec,
    UserConfig,
    load_config,
    load_user_config,
    parse_auth_method,
    parse_config,
    parse_user_config,
    render_value,
    render_values,
    write_config_atomic,
)
from tests.prereqs import needs, require_path

BASE = 'auth = "plain[passwd=/etc/ocserv/ocpasswd]"\nipv4-network = 192.168.1.0/24\n'
DEBIAN_CONF = "/etc/ocserv/ocserv.conf"
V4 = ipaddress.IPv4Network
V6 = ipaddress.IPv6Network


def cfg_of(extra: str = "", base: str = BASE) -> Config:
    return parse_config(base + extra)


def error_of(extra: str = "", base: str = BASE, path: str = "ocserv.conf") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(base + extra, path)
    return info.value


# ------------------------------------------------------------------ the option table


def test_table_defaults_match_config_defaults() -> None:
    default = Config()
    for name, spec in OPTIONS.items():
        if spec.attr is None or spec.alias_of:
            continue
        expected = list(spec.default) if spec.type == "list" else spec.default
        assert getattr(default, spec.attr) == expected, name


def test_every_config_option_field_is_in_the_table() -> None:
    attrs = {spec.attr for spec in OPTIONS.values()}
    bookkeeping = {"path", "warnings", "raw", "vhosts", "vhost_name"}
    for f in dataclasses.fields(Config):
        assert f.name in attrs or f.name in bookkeeping, f.name


def test_table_entries_are_well_formed() -> None:
    for name, spec in OPTIONS.items():
        assert isinstance(spec, OptionSpec)
        assert spec.name == name
        assert spec.scope in ("g", "v", "u")
        assert spec.help and "\n" not in spec.help and len(spec.help) < 140
        assert spec.help[0].isupper()
        if spec.alias_of:
            assert spec.alias_of in OPTIONS
        if spec.choices:
            assert spec.default in spec.choices


def test_ocserv_master_defaults() -> None:
    cfg = cfg_of()
    assert cfg.tcp_port == 443 and cfg.udp_port is None
    assert (cfg.keepalive, cfg.dpd, cfg.mobile_dpd) == (32400, 90, 1800)
    assert (cfg.cookie_timeout, cfg.auth_timeout, cfg.rekey_time) == (300, 240, 172800)
    assert (cfg.max_ban_score, cfg.ban_time, cfg.ban_reset_time) == (80, 300, 1200)
    assert cfg.switch_to_tcp_timeout == 25 and cfg.log_level == 2
    assert cfg.idle_timeout is None and cfg.session_timeout is None and cfg.mtu is None
    assert cfg.dtls_psk and cfg.dtls_legacy and cfg.predictable_ips
    assert not cfg.compression and cfg.no_compress_limit == 256
    assert cfg.ipv6_subnet_prefix == 128
    assert cfg.tls_priorities == "NORMAL:%SERVER_PRECEDENCE:%COMPAT"
    assert cfg.occtl_socket_file == "/var/run/occtl.socket"
    assert cfg.rekey_method == "new-tunnel"
    assert cfg.warnings == []


def test_not_implemented_and_user_options() -> None:
    assert "nbns" not in NOT_IMPLEMENTED and "syslog-facility" not in NOT_IMPLEMENTED
    assert "ping-leases" in REFUSED_UNIMPLEMENTED
    for name in ("cisco-client-compat", "user-profile", "select-group-by-url"):
        assert name not in NOT_IMPLEMENTED  # AnyConnect behaviour (anyconnect*.py)
    for name in ("tcp-port", "auth", "route", "dns", "ipv4-dns", "compression-algo-priority"):
        assert name not in NOT_IMPLEMENTED and OPTIONS[name].implemented
    assert "session-control" not in NOT_IMPLEMENTED  # a no-op, not a missing feature
    section_10_7 = {
        "dns", "ipv4-dns", "ipv6-dns", "nbns", "ipv4-nbns", "ipv6-nbns", "ipv4-network",
        "ipv4-netmask", "ipv6-network", "ipv6-subnet-prefix", "explicit-ipv4",
        "explicit-ipv6", "route", "no-route", "iroute", "split-dns", "tunnel-all-dns",
        "rx-data-per-sec", "tx-data-per-sec", "net-priority", "deny-roaming", "no-udp",
        "keepalive", "dpd", "mobile-dpd", "max-same-clients", "restrict-user-to-routes",
        "restrict-user-to-ports", "stats-report-time", "mtu", "idle-timeout",
        "mobile-idle-timeout", "session-timeout", "hostname", "user-profile",
        "client-bypass-protocol"}
    assert USER_OPTIONS == section_10_7
    assert {f.name for f in dataclasses.fields(UserConfig)} == {
        OPTIONS[n].attr for n in USER_OPTIONS}


def test_reloadable_flags() -> None:
    assert not OPTIONS["tcp-port"].reloadable and not OPTIONS["auth"].reloadable
    assert OPTIONS["route"].reloadable and OPTIONS["dpd"].reloadable


# ------------------------------------------------------------------ real configurations


@needs(lambda: require_path(DEBIAN_CONF, "ocserv"))
def test_debian_sample_config_parses() -> None:
    cfg = load_config(DEBIAN_CONF)
    assert cfg.auth == [AuthMethod("plain", {"passwd": "/etc/ocserv/passwd"})]
    assert (cfg.tcp_port, cfg.udp_port) == (443, 443)
    assert cfg.ipv4_network == V4("192.168.1.0/24") and cfg.ipv4_netmask == "255.255.255.0"
    assert cfg.route == [V4("10.0.0.0/8"), V4("172.16.0.0/12"), V4("192.168.0.0/16")]
    assert not cfg.full_tunnel
    assert cfg.dns == ["192.168.1.1"] and cfg.default_domain == "example.com"
    assert cfg.ban_time == 300 == cfg.min_reauth_time
    assert cfg.run_as_user == "ocserv" and cfg.device == "vpns" and cfg.use_occtl
    assert cfg.tls_priorities.endswith(":-VERS-TLS1.3")
    assert "'min-reauth-time' is the old name of 'ban-time'" in cfg.warnings
    unimplemented = {w.split("'")[1] for w in cfg.warnings if "not implemented" in w}
    assert unimplemented == {k for k, _, _ in cfg.raw
                             if k in OPTIONS and (OPTIONS[k].alias_of or k) in NOT_IMPLEMENTED
                             and k not in REFUSED_UNIMPLEMENTED}
    assert "deny-roaming" not in unimplemented  # false: what OCGate does anyway
    assert "cisco-client-compat" not in unimplemented
    assert not any(w.startswith("unknown") for w in cfg.warnings)
    assert [v for k, v, _ in cfg.raw if k == "tcp-port"] == ["443"]
    assert ConfigDocument.load(DEBIAN_CONF).text() == Path(DEBIAN_CONF).read_text()


RIG_CONF = """\
# generated by vpnrig.sh - minimal ocserv configuration for the test rig
auth = "plain[passwd=/tmp/rig/passwd]"
tcp-port = 4443
udp-port = 4443
run-as-user = nobody
run-as-group = nogroup
socket-file = /tmp/rig/ocserv.sock
occtl-socket-file = /tmp/rig/occtl.sock
use-occtl = true
server-cert = /tmp/rig/server-cert.pem
server-key = /tmp/rig/server-key.pem
isolate-workers = false
banner = "vpnrig test server"
max-same-clients = 0
max-ban-score = 0
min-reauth-time = 0
rekey-method = ssl
tls-priorities = "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-TLS1.3"
ipv4-network = 10.77.0.0
ipv4-netmask = 255.255.255.0
dns = 10.99.0.53
route = 10.99.0.0/24
cisco-client-compat = true
compression = false
"""


def test_rig_config() -> None:
    cfg = parse_config(RIG_CONF)
    assert cfg.server_cert == "/tmp/rig/server-cert.pem"
    assert cfg.server_key == "/tmp/rig/server-key.pem"
    assert cfg.banner == "vpnrig test server" and cfg.rekey_method == "ssl"
    assert cfg.ipv4_network == V4("10.77.0.0/24") and cfg.route == [V4("10.99.0.0/24")]
    assert cfg.ban_time == 0 and cfg.max_ban_score == 0
    assert cfg.dtls_legacy and cfg.select_group_by_url


# ------------------------------------------------------------------ error messages


def test_error_message_format() -> None:
    err = error_of("tcp-port = abc\n")
    assert str(err) == "ocserv.conf:3: invalid value for 'tcp-port': 'abc' (expected an integer)"
    assert (err.path, err.line) == ("ocserv.conf", 3)
    assert isinstance(err, ValueError)
    err = error_of("\n\n# c\ndpd = 1x\n", path="/etc/ocserv/ocserv.conf")
    assert str(err).startswith("/etc/ocserv/ocserv.conf:6: invalid value for 'dpd': '1x'")
    assert str(ConfigError("boom", "f.conf")) == "f.conf: boom"


@pytest.mark.parametrize("line, fragment", [
    ("tcp-port = 0", "from 1 to 65535"),
    ("tcp-port = 65536", "from 1 to 65535"),
    ("udp-port = 70000", "from 1 to 65535"),
    ("mtu = 575", "from 576 to 65535"),
    ("mtu = 65536", "from 576 to 65535"),
    ("idle-timeout = -5", "expected an integer"),
    ("session-timeout = 1.5", "expected an integer"),
    ("dpd = 0x10", "expected an integer"),
    ("keepalive = 99999999999999999999999", "expected an integer"),
    ("log-level = 10", "from 0 to 9"),
    ("isolate-workers = maybe", "expected true or false"),
    ("rekey-method = SSL", "one of ssl, new-tunnel"),
    ("syslog-facility = kern", "one of daemon"),
    ("tcp-port =", "empty value for 'tcp-port'"),
    ("use-occtl = \"\"", "empty value for 'use-occtl'"),
    ("dns = 1.2.3", "expected an IPv4 or IPv6 address"),
    ("dns = local", "'local' DNS keyword"),
    ("explicit-ipv4 = ::1", "expected an IPv4 address"),
    ("net-priority = 7", "0 to 6"),
    ("restrict-user-to-ports = tcp(443), foo(1)", "tcp(443)"),
    ("device = tun/0", "letters, digits"),
    ("cert-user-oid = CN", "dotted OID"),
    ("banner = " + "x" * 257, "longer than 256 bytes"),
    ("listen-clear-file = /x", "was removed"),
])
def test_invalid_values_name_the_line(line: str, fragment: str) -> None:
    err = error_of(line + "\n")
    assert err.line == 3
    assert fragment in str(err)


@pytest.mark.parametrize("text", ["true", "TRUE", "yes", "Yes", "1"])
def test_bool_true_forms(text: str) -> None:
    assert cfg_of(f"use-occtl = {text}\n").use_occtl is True


@pytest.mark.parametrize("text", ["false", "False", "no", "NO", "0"])
def test_bool_false_forms(text: str) -> None:
    assert cfg_of(f"dtls-psk = {text}\n").dtls_psk is False


def test_secrets_are_flagged_for_the_ui() -> None:
    secrets = {name for name, spec in OPTIONS.items() if spec.secret}
    assert secrets == {"key-pin", "srk-pin", "camouflage_secret"}


# ------------------------------------------------------------------ cross-field checks


def test_missing_auth_and_pool() -> None:
    err = error_of("", base="ipv4-network = 10.0.0.0/24\n")
    assert err.line is None and "'auth' option is required" in str(err)
    err = error_of("", base='auth = "plain[passwd=/x]"\n')
    assert err.line is None and "ipv4-network" in str(err)


def test_tcp_port_defaults_to_443() -> None:
    assert cfg_of().tcp_port == 443


def test_server_cert_and_key_go_together() -> None:
    err = error_of("server-cert = /c.pem\n")
    assert err.line == 3 and "'server-key' is not" in str(err)
    err = error_of("server-key = /k.pem\n")
    assert err.line == 3 and "'server-cert' is not" in str(err)
    err = error_of("server-cert = /a\nserver-key = /b\nserver-cert = /c\n")
    assert "does not match" in str(err) and err.line == 5
    cfg = cfg_of("server-cert = /a\nserver-key = /b\nserver-cert = /c\nserver-key = /d\n")
    assert (cfg.server_cert, cfg.server_key) == ("/a", "/b")
    assert "only the first server-cert/server-key pair is used" in cfg.warnings


def test_banner_and_derived_values() -> None:
    cfg = cfg_of("mobile-dpd = 0\ndpd = 40\nidle-timeout = 600\nno-compress-limit = 10\n")
    assert cfg.mobile_dpd == 40 and cfg.mobile_idle_timeout == 600
    assert cfg.no_compress_limit == 64
    cfg = cfg_of("idle-timeout = 0\nsession-timeout = 0\n")
    assert cfg.idle_timeout is None and cfg.session_timeout is None
    cfg = cfg_of("listen-host = 198.51.100.1\nudp-port = 0\n")
    assert cfg.udp_listen_host == "198.51.100.1" and cfg.udp_port is None
    cfg = cfg_of("listen-host = 198.51.100.1\nudp-listen-host = 198.51.100.2\n"
                 "listen-netns = outside\n")
    assert (cfg.listen_host, cfg.udp_listen_host) == ("198.51.100.1", "198.51.100.2")
    assert cfg.listen_netns == "outside" and cfg.warnings == []
    cfg = cfg_of("device =\ntls-priorities = \"\"\n")
    assert cfg.device == "vpns" and cfg.tls_priorities == "NORMAL:%SERVER_PRECEDENCE:%COMPAT"


def test_cisco_compat_implications() -> None:
    cfg = cfg_of("cisco-client-compat = true\ndtls-legacy = false\n")
    assert cfg.dtls_legacy and cfg.select_group_by_url
    assert cfg.tls_priorities == "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-TLS1.3"
    cfg = cfg_of("cisco-client-compat = true\ntls-priorities = NORMAL\n")
    assert cfg.tls_priorities == "NORMAL"
    assert cfg_of("always-require-cert = false\n").cisco_client_compat
    assert not cfg_of("match-tls-dtls-ciphers = false\n").match_tls_dtls_ciphers
    err = error_of("cisco-svc-client-compat = true\nudp-port = 4443\n")
    assert "udp-port = 443" in str(err) and err.line == 4


# ------------------------------------------------------------------ networks and routes


@pytest.mark.parametrize("lines, expected", [
    ("ipv4-network = 203.0.113.0/24", "203.0.113.0/24"),
    ("ipv4-network = 203.0.113.0\nipv4-netmask = 255.255.255.0", "203.0.113.0/24"),
    ("ipv4-netmask = 255.255.0.0\nipv4-network = 203.0.0.0", "203.0.0.0/16"),
    ("ipv4-network = 203.0.113.0\nipv4-netmask = 24", "203.0.113.0/24"),
    ("ipv4-network = 203.0.113.0\nipv4-netmask = /25", "203.0.113.0/25"),
    ("ipv4-network = 203.0.113.0/255.255.255.128", "203.0.113.0/25"),
    ("ipv4-network = 203.0.113.77/24", "203.0.113.0/24"),
    ("ipv4-network = 10.0.0.0/24\nipv4-netmask = 255.255.0.0", "10.0.0.0/16"),
])
def test_ipv4_pool_forms(lines: str, expected: str) -> None:
    cfg = parse_config('auth = "plain[passwd=/x]"\n' + lines + "\n")
    assert cfg.ipv4_network == V4(expected)
    assert cfg.ipv4_netmask == str(V4(expected).netmask)


@pytest.mark.parametrize("lines, line, fragment", [
    ("ipv4-netmask = 255.255.255.0", 2, "'ipv4-network' is not"),
    ("ipv4-network = 10.0.0.0", 2, "needs a prefix length"),
    ("ipv4-network = 10.0.0.0\nipv4-netmask = 255.0.255.0", 3, "netmask"),
    ("ipv4-network = 10.0.0.0/33", 2, "IPv4 network"),
    ("ipv4-network = 10.0.0/8", 2, "IPv4 network"),
    ("ipv4-network = 10.0.0.0/31", 2, "unusable"),
    ("ipv6-network = fd00::", 2, "needs a prefix length"),
    ("ipv6-network = fd00::/129", 2, "IPv6 network"),
    ("ipv6-network = 10.0.0.0/8", 2, "IPv6 network"),
    ("ipv6-network = fd00::/64\nipv6-subnet-prefix = 64", 3, "must be longer"),
    ("ipv6-prefix = 64", 2, "'ipv6-network' is not"),
])
def test_pool_errors(lines: str, line: int, fragment: str) -> None:
    err = error_of("", base='auth = "plain[passwd=/x]"\n' + lines + "\n")
    assert err.line == line and fragment in str(err)


def test_ipv6_pool() -> None:
    v4 = "ipv4-network = 203.0.113.0/24\n"
    cfg = parse_config('auth = "plain[passwd=/x]"\nipv6-network = fda9:4efe:7e3b:3ea::/48\n'
                       "ipv6-subnet-prefix = 64\n" + v4)
    assert cfg.ipv6_network == V6("fda9:4efe:7e3b::/48")
    assert cfg.ipv6_subnet_prefix == 64
    only6 = parse_config('auth = "plain[passwd=/x]"\nipv6-network = fda9:4efe:7e3b:3ea::/48\n')
    assert only6.ipv4_network is None and only6.ipv6_network == V6("fda9:4efe:7e3b::/48")
    cfg = parse_config('auth = "plain[passwd=/x]"\nipv6-network = fd00::\nipv6-prefix = 56\n'
                       + v4)
    assert cfg.ipv6_network == V6("fd00::/56")
    assert "'ipv6-prefix' is obsolete; write ipv6-network as addr/len" in cfg.warnings


def test_route_forms() -> None:
    cfg = cfg_of("route = 10.10.10.0/255.255.255.0\nroute = 192.168.0.0/16\n"
                 "route = fef4:db8:1000:1001::/64\nroute = 10.1.2.3/8\n"
                 "no-route = 192.168.5.0/255.255.255.0\n")
    assert cfg.route == [V4("10.10.10.0/24"), V4("192.168.0.0/16"),
                         V6("fef4:db8:1000:1001::/64"), V4("10.0.0.0/8")]
    assert cfg.no_route == [V4("192.168.5.0/24")]
    assert not cfg.full_tunnel


def test_default_route_and_full_tunnel() -> None:
    assert cfg_of().full_tunnel and cfg_of().route == []
    cfg = cfg_of("route = default\n")
    assert cfg.route == [V4("0.0.0.0/0")] and cfg.full_tunnel
    cfg = cfg_of("route = default\nipv6-network = fd00::/48\n")
    assert cfg.route == [V4("0.0.0.0/0"), V6("::/0")]
    cfg = cfg_of("route = 10.0.0.0/8\nroute = 0.0.0.0/0\n")
    assert cfg.full_tunnel


@pytest.mark.parametrize("value", [
    "10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/255.0.255.0", "10.0.0.0//8",
    "fd00::/129", "fd00::", "999.0.0.0/8", "default6", "10.0.0.0/+8", "10.0.0.0/8#x",
])
def test_bad_routes(value: str) -> None:
    err = error_of(f"route = {value}\n")
    assert err.line == 3 and "'route'" in str(err)


def test_inline_comment_after_route_is_stripped() -> None:
    assert cfg_of("route = 10.0.0.0/8 # office\n").route == [V4("10.0.0.0/8")]


def test_dns_and_aliases() -> None:
    cfg = cfg_of("dns = 192.168.1.2\nipv6-dns = fc00::4be0\nipv4-dns = 1.1.1.1\n"
                 "split-dns = example.com\nsplit-dns = corp.example\n"
                 "default-domain = \"example.com one.example.com\"\n")
    assert cfg.dns == ["192.168.1.2", "fc00::4be0", "1.1.1.1"]
    assert cfg.split_dns == ["example.com", "corp.example"]
    assert cfg.default_domain == "example.com one.example.com"
    assert error_of("split-dns = a b\n").line == 3


# ------------------------------------------------------------------ auth methods


@pytest.mark.parametrize("text, name, params", [
    ("plain[otp=/etc/ocserv/users.oath]", "plain", {"otp": "/etc/ocserv/users.oath"}),
    ("plain[passwd=/etc/ocserv/ocpasswd,otp=/x]", "plain",
     {"passwd": "/etc/ocserv/ocpasswd", "otp": "/x"}),
    ("plain[ passwd = /p ]", "plain", {"passwd": "/p"}),
    ("PLAIN[passwd=/p]", "plain", {"passwd": "/p"}),
    ("plain[/etc/ocserv/ocpasswd]", "plain", {"passwd": "/etc/ocserv/ocpasswd"}),
    ("pam", "pam", {}),
    ("pam[gid-min=1000]", "pam", {"gid-min": "1000"}),
    ("pam[service=ocserv,gid-min=100]", "pam", {"service": "ocserv", "gid-min": "100"}),
    ("certificate", "certificate", {}),
    ("radius[config=/etc/radcli/radiusclient.conf,groupconfig=true]", "radius",
     {"config": "/etc/radcli/radiusclient.conf", "groupconfig": "true"}),
    ("radius[/etc/radcli/radiusclient.conf,groupconfig]", "radius",
     {"config": "/etc/radcli/radiusclient.conf", "groupconfig": "true"}),
    ("gssapi[keytab=/etc/key.tab,require-local-user-map=true,tgt-freshness-time=900]",
     "gssapi", {"keytab": "/etc/key.tab", "require-local-user-map": "true",
                "tgt-freshness-time": "900"}),
    ("oidc[config=/etc/ocserv/oidc.json]", "oidc", {"config": "/etc/ocserv/oidc.json"}),
])
def test_auth_methods(text: str, name: str, params: dict[str, str]) -> None:
    method = parse_auth_method(text)
    assert method == AuthMethod(name, params)
    assert parse_auth_method(str(method)) == method


@pytest.mark.parametrize("text, fragment", [
    ("foo", "unknown authentication method 'foo'"),
    ("plainx[passwd=/x]", "unknown authentication method"),
    ("plain[passwd=/x", "malformed brackets"),
    ("plain[passwd=/x]]", "malformed brackets"),
    ("plain[passwd=/x]extra", "expected NAME"),
    ("plain", "needs passwd=FILE, otp=FILE or both"),
    ("plain[passwd=]", "empty value"),
    ("plain[passwd=/x,]", "expected key=value"),
    ("plain[passwd=/x,passwd=/y]", "given twice"),
    ("plain[password=/x]", "unknown parameter 'password'"),
    ("certificate[x=y]", "takes no parameters"),
    ("pam[gid-min=-1]", "whole number"),
    ("radius[groupconfig=true]", "needs config=FILE"),
    ("radius[config=/x,group-separator=tab]", "semicolon or comma"),
    ("gssapi[tgt-freshness-time=0]", "whole number"),
    ("", "expected NAME"),
])
def test_bad_auth_methods(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_auth_method(text)
    assert fragment in str(info.value)
    err = error_of("", base=f'auth = "{text}"\nipv4-network = 10.0.0.0/24\n')
    assert err.line == 1 and "'auth'" in str(err)


def test_auth_combinations() -> None:
    err = error_of("auth = radius[config=/r]\n")
    assert err.line == 3 and "only one password-based" in str(err)
    err = error_of("auth = pam\n")
    assert err.line == 3 and "only one password-based" in str(err)
    err = error_of("auth = certificate\n")
    assert "cert-user-oid" in str(err)
    err = error_of("auth = certificate\ncert-user-oid = 2.5.4.3\n")
    assert "needs 'ca-cert'" in str(err)
    cfg = cfg_of("auth = certificate\ncert-user-oid = 2.5.4.3\nca-cert = /ca.pem\n"
                 "enable-auth = certificate\n")
    assert [m.name for m in cfg.auth] == ["plain", "certificate"]
    assert cfg.enable_auth == [AuthMethod("certificate", {})]
    assert cfg.warnings == []
    cfg = cfg_of("acct = \"radius[config=/etc/radcli/radiusclient.conf]\"\n")
    assert cfg.acct == AuthMethod("radius", {"config": "/etc/radcli/radiusclient.conf"})
    assert error_of("acct = plain[passwd=/x]\n").line == 3
    assert error_of("auth =\n").line == 3


# ------------------------------------------------------------------ syntax


def test_comments_quotes_and_whitespace() -> None:
    cfg = cfg_of('banner = "Hello #1"   # trailing comment\n'
                 "pre-login-banner = a#b\n"
                 "; a semicolon comment line\n"
                 "   # indented comment\n"
                 "user-profile = \"/etc/ocserv/profile #2.xml\"\n"
                 "proxy-url=http://example.com/%{U}/\n"
                 "dpd\t=\t60\t\n"
                 "route-add-cmd: ip route add %{R} dev %{D}\n"
                 "\tkeepalive = 5\n")
    assert cfg.banner == "Hello #1"
    assert cfg.pre_login_banner == "a#b"
    assert cfg.user_profile == "/etc/ocserv/profile #2.xml"
    assert cfg.proxy_url == "http://example.com/%{U}/"
    assert cfg.dpd == 60
    # inih: an indented line continues the previous option, even if it looks like one;
    # for a single-valued option the later value wins, as in ocserv
    assert cfg.route_add_cmd == "keepalive = 5" and cfg.keepalive == 32400
    assert "option 'route-add-cmd' is set more than once; the last value is used" \
        in cfg.warnings


def test_value_only_comment_is_empty() -> None:
    cfg = cfg_of("banner = # nothing\n")
    assert cfg.banner is None


def test_included_http_headers_are_refused() -> None:
    """Not implemented, and security headers (HSTS) silently missing would be a hole."""
    err = error_of('included-http-headers = Clear-Site-Data: "cache","cookies"\n')
    assert err.line == 3 and "option 'included-http-headers' is not implemented" in str(err)


def test_crlf_bom_and_continuation_lines() -> None:
    text = "\ufeff" + BASE.replace("\n", "\r\n") + "dns = 1.1.1.1\r\n  8.8.8.8\r\n"
    cfg = parse_config(text)
    assert cfg.dns == ["1.1.1.1", "8.8.8.8"]
    assert cfg.auth[0].params["passwd"] == "/etc/ocserv/ocpasswd"
    err = error_of("dns = 1.1.1.1\n  route = 10.0.0.0/8\n")
    assert err.line == 4 and "indented line continues the previous option" in str(err)


@pytest.mark.parametrize("line, fragment", [
    ("this is not an option", "expected 'option = value'"),
    ("[vhost:example.com", "without closing ']'"),
    ("= value", "missing option name"),
    ("foo # = bar", "expected 'option = value'"),
    ("banner = " + "y" * 2100, "line too long"),
    ("banner = a\x00b", "NUL"),
    ("[vhost: ]", "virtual host name is empty"),
])
def test_syntax_errors(line: str, fragment: str) -> None:
    err = error_of(line + "\n")
    assert err.line == 3 and fragment in str(err)


def test_unknown_and_unimplemented_warn_once() -> None:
    cfg = cfg_of("foo = 1\nfoo = 2\nbar = x\ncompression-algo-priority = lzs:95\n"
                 "select-group = a\nselect-group = b[Group B]\nnbns = 198.51.100.9\n"
                 "ipv4-nbns = 198.51.100.8\nproxy-url = /p\noutput-buffer = 10\n")
    assert cfg.warnings == [
        "unknown option 'foo' (kept)",
        "unknown option 'bar' (kept)",
        "option 'proxy-url' is not implemented yet (ignored)",
        "option 'output-buffer' is not implemented yet (ignored)",
    ]
    assert cfg.select_groups == [("a", "a"), ("b", "Group B")]
    assert cfg.nbns == ["198.51.100.9", "198.51.100.8"]
    assert [(k, v) for k, v, _ in cfg.raw][2:5] == [("foo", "1"), ("foo", "2"), ("bar", "x")]
    assert [line for _, _, line in cfg.raw] == list(range(1, 13))


def test_repeated_scalar_last_wins() -> None:
    cfg = cfg_of("dpd = 10\ndpd = 20\n")
    assert cfg.dpd == 20
    assert "option 'dpd' is set more than once; the last value is used" in cfg.warnings
    cfg = cfg_of("min-reauth-time = 5\n")
    assert cfg.ban_time == 5 and cfg.min_reauth_time == 5


def test_deprecated_and_user_only_options() -> None:
    cfg = cfg_of("use-seccomp = true\nuse-dbus = true\nsession-control = true\n"
                 "cgroup = cpuset,cpu:test\niroute = 10.9.0.0/16\n")
    assert cfg.isolate_workers and cfg.use_occtl
    assert cfg.iroute == [V4("10.9.0.0/16")]
    assert "option 'iroute' only has an effect in per-user/per-group files (ignored here)" \
        in cfg.warnings
    assert any("session-control" in w for w in cfg.warnings)
    assert any("cgroup" in w for w in cfg.warnings)


VHOST = ('[vhost:www.Example.com]\nauth = "plain[passwd=/etc/ocserv/www]"\n'
         "server-cert = /etc/ocserv/www.pem\nserver-key = /etc/ocserv/www.key\n"
         "ipv4-network = 203.0.113.64/26\n")


def test_vhost_sections() -> None:
    """A section is a whole configuration of its own, as ocserv builds it: built-in
    defaults plus its own lines, the server-wide options from the global part."""
    cfg = cfg_of("dns = 198.51.100.53\ndpd = 33\nmax-clients = 7\ntcp-port = 4443\n"
                 "tls-priorities = SECURE256\n" + VHOST + "route = 198.51.100.0/24\n")
    vh = cfg.vhost("WWW.example.COM")
    assert list(cfg.vhosts) == ["www.example.com"] and vh.vhost_name == "www.example.com"
    assert vh.auth == [AuthMethod("plain", {"passwd": "/etc/ocserv/www"})]
    assert vh.server_cert == "/etc/ocserv/www.pem"
    assert vh.ipv4_network == V4("203.0.113.64/26") and cfg.ipv4_network == V4("192.168.1.0/24")
    assert vh.dns == [] and vh.dpd == Config().dpd  # not inherited (ocserv: defaults)
    assert vh.route == [V4("198.51.100.0/24")] and cfg.route == []
    assert (vh.max_clients, vh.tcp_port) == (7, 4443)  # server-wide: the global value
    assert vh.tls_priorities == "SECURE256"  # the one per-host option a section inherits
    assert cfg.vhost("other.test") is cfg and cfg.vhost(None) is cfg  # ocserv's find_vhost
    assert cfg.label == "default" and vh.label == "www.example.com"
    empty = cfg_of("[vhost:empty.example.com]\n[other]\nx = 1\n[]\ndpd = 33\n")
    assert "unknown section '[other]' skipped" in empty.warnings and not empty.vhosts
    assert empty.dpd == 33  # "[]" returns to the global section, as in inih


def test_vhost_server_wide_option_is_warned_as_in_ocserv() -> None:
    cfg = cfg_of(VHOST + "tcp-port = 8443\nconnect-script = /bin/x\n")
    vh = cfg.vhost("www.example.com")
    assert vh.tcp_port == 443 and vh.connect_script is None
    assert ("ocserv.conf:8: 'tcp-port' is ignored on virtual host www.example.com, as in "
            "ocserv (the global value applies)") in cfg.warnings


def test_vhost_gets_a_server_wide_ocgate_option_and_is_told() -> None:
    cfg = cfg_of("cookie-timeout = 600\n" + VHOST)
    assert cfg.vhost("www.example.com").cookie_timeout == 600
    assert ("ocserv.conf:3: 'cookie-timeout' also applies to the virtual hosts (ocserv "
            "1.1.6 would give them its built-in default)") in cfg.warnings
    assert not any("also applies" in w for w in cfg_of("cookie-timeout = 600\n").warnings)
    six = cfg_of("ipv6-network = fd00::/48\n" + VHOST)  # a section has no IPv6 pool
    assert six.vhost("www.example.com").ipv6_network is None
    assert not any("also applies" in w for w in six.warnings)


@pytest.mark.parametrize("line, fragment", [
    ("ipv6-network = fd00::/48", "the IPv6 pool is server-wide"),
    ("cookie-timeout = 60", "the cookie store is server-wide"),
    ("acct = pam", "accounting is server-wide"),
])
def test_vhost_option_ocgate_cannot_serve_per_host_refuses(line: str, fragment: str) -> None:
    err = error_of(VHOST + line + "\n")
    assert err.line == 8 and fragment in str(err)
    assert "[vhost:www.example.com]: '" in str(err) and "move it to the global part" in str(err)


@pytest.mark.parametrize("body, fragment, line", [
    ('auth = "plain[passwd=/x]"\n', "no address pool", 4),
    ("ipv4-network = 203.0.113.0/26\n", "the 'auth' option is required", 4),
    ('auth = "plain[passwd=/x]"\nipv4-network = 203.0.113.0/26\nserver-key = /k\n',
     "'server-key' is set but 'server-cert' is not", 6),
])
def test_vhost_needs_what_ocserv_needs(body: str, fragment: str, line: int) -> None:
    err = error_of("[vhost:a.test]\n" + body)
    assert fragment in str(err) and err.line == line and "[vhost:a.test]" in str(err)


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "missing.conf"))
    assert "cannot read file" in str(info.value)
    bad = tmp_path / "bad.conf"
    bad.write_bytes(BASE.encode() + b"banner = caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    assert info.value.line == 3 and "UTF-8" in str(info.value)
    good = tmp_path / "good.conf"
    good.write_text(BASE)
    assert load_config(str(good)).path == str(good)


# ------------------------------------------------------------------ per-user / per-group


USER_FILE = """\
# per-user settings
dns = 10.0.0.53
ipv6-dns = fd00::53
route = 10.1.0.0/255.255.0.0
no-route = 10.1.5.0/24
iroute = 192.168.77.0/24
explicit-ipv4 = 192.168.1.77
ipv4-network = 192.168.1.0
ipv4-netmask = 255.255.255.0
tunnel-all-dns = true
rx-data-per-sec = 40000
net-priority = 0x20
restrict-user-to-ports = "!(tcp(22), udp(53))"
idle-timeout = 1200
mtu = 1400
hostname = laptop
no-udp = yes
"""


def test_parse_user_config() -> None:
    user = parse_user_config(USER_FILE, "alice")
    assert user.dns == ["10.0.0.53", "fd00::53"]
    assert user.route == [V4("10.1.0.0/16")] and user.no_route == [V4("10.1.5.0/24")]
    assert user.iroute == [V4("192.168.77.0/24")]
    assert user.explicit_ipv4 == ipaddress.IPv4Address("192.168.1.77")
    assert user.ipv4_network == V4("192.168.1.0/24") and user.ipv4_netmask == "255.255.255.0"
    assert user.tunnel_all_dns is True and user.no_udp is True
    assert (user.rx_data_per_sec, user.idle_timeout, user.mtu) == (40000, 1200, 1400)
    assert user.net_priority == "0x20" and user.hostname == "laptop"
    assert user.restrict_user_to_ports == "!(tcp(22), udp(53))"
    assert user.dpd is None and user.split_dns is None and user.session_timeout is None
    assert parse_user_config("", "empty") == UserConfig()


@pytest.mark.parametrize("text, line, fragment", [
    ("dns = 1.1.1.1\ntcp-port = 443\n", 2, "not allowed"),
    ("frobnicate = 1\n", 1, "not allowed"),
    ("cookie-timeout = 5\n", 1, "not allowed"),
    ("[vhost:x]\ndns = 1.1.1.1\n", 2, "sections are not allowed"),
    ("dpd = soon\n", 1, "invalid value for 'dpd'"),
    ("route = 10.0.0.0\n", 1, "invalid value for 'route'"),
    ("ipv4-netmask = 255.0.0.0\n", 1, "'ipv4-network' is not"),
    ("mtu = 100\n", 1, "from 576"),
])
def test_user_config_errors(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_user_config(text, "/etc/ocserv/config-per-user/bob")
    assert info.value.line == line and fragment in str(info.value)
    assert str(info.value).startswith(f"/etc/ocserv/config-per-user/bob:{line}: ")


def test_user_default_route() -> None:
    assert parse_user_config("route = default\n", "u").route == [V4("0.0.0.0/0")]
    assert parse_user_config("route = default\n", "u", ipv6=True).route == [
        V4("0.0.0.0/0"), V6("::/0")]


def make_dirs(tmp_path: Path, default_user: bool = False) -> Config:
    users, groups = tmp_path / "users", tmp_path / "groups"
    users.mkdir()
    groups.mkdir()
    extra = f"config-per-user = {users}/\nconfig-per-group = {groups}/\n"
    if default_user:
        (tmp_path / "default-user.conf").write_text("dpd = 77\nroute = 10.200.0.0/16\n")
        extra += f"default-user-config = {tmp_path / 'default-user.conf'}\n"
    return cfg_of(extra)


def test_load_user_config_merges_group_then_user(tmp_path: Path) -> None:
    cfg = make_dirs(tmp_path)
    (tmp_path / "groups" / "staff").write_text(
        "dpd = 40\nkeepalive = 100\nroute = 10.1.0.0/16\ndns = 10.0.0.1\n")
    (tmp_path / "users" / "alice").write_text("dpd = 20\nroute = 10.2.0.0/16\n")
    user = load_user_config(cfg, "alice", "staff")
    assert user.dpd == 20 and user.keepalive == 100
    assert user.route == [V4("10.1.0.0/16"), V4("10.2.0.0/16")]
    assert user.dns == ["10.0.0.1"]
    only_group = load_user_config(cfg, "bob", "staff")
    assert only_group.dpd == 40 and only_group.route == [V4("10.1.0.0/16")]
    assert load_user_config(cfg, "bob", None) == UserConfig()
    assert load_user_config(cfg, "carol", "nogroup") == UserConfig()


def test_load_user_config_default_file(tmp_path: Path) -> None:
    cfg = make_dirs(tmp_path, default_user=True)
    user = load_user_config(cfg, "nobody-special", None)
    assert user.dpd == 77 and user.route == [V4("10.200.0.0/16")]
    (tmp_path / "users" / "dave").write_text("keepalive = 5\n")
    user = load_user_config(cfg, "dave", None)
    assert user.keepalive == 5 and user.dpd is None


def test_load_user_config_without_dirs(tmp_path: Path) -> None:
    default = tmp_path / "d.conf"
    default.write_text("dpd = 1\n")
    cfg = cfg_of(f"default-user-config = {default}\n")
    assert load_user_config(cfg, "alice", "staff") == UserConfig()


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", ".hidden", "..", ".", ""])
def test_load_user_config_rejects_unsafe_names(tmp_path: Path, name: str) -> None:
    cfg = make_dirs(tmp_path, default_user=True)
    with pytest.raises(ConfigError):
        load_user_config(cfg, name, None)
    if name:  # an empty group name just means "no group"
        with pytest.raises(ConfigError):
            load_user_config(cfg, "alice", name)


def test_load_user_config_ignores_symlinks(tmp_path: Path) -> None:
    cfg = make_dirs(tmp_path, default_user=True)
    secret = tmp_path / "outside"
    secret.write_text("dpd = 5\n")
    (tmp_path / "users" / "eve").symlink_to(secret)
    assert load_user_config(cfg, "eve", None).dpd == 77  # fell back to the default file


def test_load_user_config_reports_bad_files(tmp_path: Path) -> None:
    cfg = make_dirs(tmp_path)
    (tmp_path / "users" / "mallory").write_text("dpd = 1\nauth = pam\n")
    with pytest.raises(ConfigError) as info:
        load_user_config(cfg, "mallory", None)
    assert info.value.line == 2 and info.value.path.endswith("users/mallory")


# ------------------------------------------------------------------ rendering


def test_render_value() -> None:
    assert render_value(OPTIONS["use-occtl"], True) == "true"
    assert render_value(OPTIONS["tcp-port"], 8443) == "8443"
    assert render_value(OPTIONS["ipv4-network"], V4("10.0.0.0/24")) == "10.0.0.0/24"
    assert render_value(OPTIONS["route"], V6("fd00::/64")) == "fd00::/64"
    assert render_value(OPTIONS["route"], "default") == "default"
    method = AuthMethod("plain", {"passwd": "/etc/ocserv/ocpasswd"})
    assert render_value(OPTIONS["auth"], method) == "plain[passwd=/etc/ocserv/ocpasswd]"
    assert render_values(OPTIONS["dns"], ["1.1.1.1", ipaddress.ip_address("::1")]) == [
        "1.1.1.1", "::1"]
    assert render_values(OPTIONS["mtu"], None) == []
    for spec_name, bad in [("tcp-port", 0), ("route", "10.0.0.0"), ("dns", "x"),
                           ("rekey-method", "fast"), ("auth", "plain")]:
        with pytest.raises(ConfigError):
            render_value(OPTIONS[spec_name], bad)


def test_rendered_defaults_parse_back() -> None:
    """Every default the UI might show can be written and read again."""
    lines = [BASE]
    for name, spec in OPTIONS.items():
        if spec.alias_of or spec.attr is None or spec.user_only or spec.deprecated:
            continue
        for text in render_values(spec, spec.default):
            lines.append(f"{name} = {text}\n")
    cfg = parse_config("".join(lines))
    assert cfg.dpd == 90 and cfg.rekey_method == "new-tunnel"


# ------------------------------------------------------------------ ConfigDocument


DOC = """\
# main settings
auth = "plain[passwd=/etc/ocserv/ocpasswd]"   # who may log in
ipv4-network = 192.168.1.0
ipv4-netmask = 255.255.255.0
route = 10.0.0.0/8
# keep this comment
route = 172.16.0.0/12
futuristic-option = 42
dns = 10.0.0.1
  10.0.0.2

# the example section
[other]
banner = section banner
"""


def test_document_round_trip_without_edits() -> None:
    assert ConfigDocument(DOC).text() == DOC
    odd = "\ufeffa = 1\r\n\r\n  b\r\n[x\r\n\x00 weird\nno newline at end"
    assert ConfigDocument(odd).text() == odd
    assert ConfigDocument("").text() == ""


def test_document_get() -> None:
    doc = ConfigDocument(DOC)
    assert doc.get("auth") == ["plain[passwd=/etc/ocserv/ocpasswd]"]
    assert doc.get("route") == ["10.0.0.0/8", "172.16.0.0/12"]
    assert doc.get("dns") == ["10.0.0.1", "10.0.0.2"]
    assert doc.get("banner") == []
    assert doc.get("banner", section="other") == ["section banner"]
    assert doc.get("futuristic-option") == ["42"]


def test_document_set_in_place_keeps_comments_and_quotes() -> None:
    doc = ConfigDocument(DOC)
    doc.set("auth", "plain[passwd=/srv/pw]")
    doc.set("ipv4-netmask", "255.255.0.0")
    text = doc.text()
    assert 'auth = "plain[passwd=/srv/pw]"   # who may log in\n' in text
    assert "ipv4-netmask = 255.255.0.0\n" in text
    assert text.count("\n") == DOC.count("\n")
    assert parse_config(text).ipv4_network == V4("192.168.0.0/16")


def test_document_set_list_shrink_and_grow() -> None:
    doc = ConfigDocument(DOC)
    doc.set("route", ["10.1.0.0/16"])
    assert doc.get("route") == ["10.1.0.0/16"]
    assert "# keep this comment\n" in doc.text()
    doc.set("route", ["10.1.0.0/16", "10.2.0.0/16", "default"])
    assert doc.get("route") == ["10.1.0.0/16", "10.2.0.0/16", "default"]
    lines = doc.text().splitlines()
    assert lines[4:7] == ["route = 10.1.0.0/16", "route = 10.2.0.0/16", "route = default"]
    doc.set("dns", "10.9.9.9")
    assert doc.get("dns") == ["10.9.9.9"] and "10.0.0.2" not in doc.text()
    assert parse_config(doc.text()).route[-1] == V4("0.0.0.0/0")


def test_document_append_goes_before_sections() -> None:
    doc = ConfigDocument(DOC)
    doc.set("tcp-port", "8443")
    doc.set("banner", "Welcome #1")
    text = doc.text()
    head, _, tail = text.partition("[other]")
    assert "tcp-port = 8443\n" in head and 'banner = "Welcome #1"\n' in head
    assert tail == "\nbanner = section banner\n"
    assert head.endswith("# the example section\n")
    cfg = parse_config(text)
    assert (cfg.tcp_port, cfg.banner) == (8443, "Welcome #1")


def test_document_append_at_end_without_sections() -> None:
    doc = ConfigDocument("a = 1\n# trailing comment\n")
    doc.set("b", "2")
    assert doc.text() == "a = 1\n# trailing comment\nb = 2\n"
    doc = ConfigDocument("a = 1")
    doc.set("b", ["2", "3"])
    assert doc.text() == "a = 1\nb = 2\nb = 3"
    doc = ConfigDocument("")
    doc.set("dpd", "5")
    assert doc.text() == "dpd = 5\n"


def test_document_sections_and_crlf() -> None:
    doc = ConfigDocument("a = 1\r\n[vhost:x]\r\nb = 2\r\n")
    doc.set("c", "3", section="vhost:x")
    doc.set("d", "4", section="vhost:new")
    doc.set("e", "5")
    assert doc.text() == ("a = 1\r\ne = 5\r\n[vhost:x]\r\nb = 2\r\nc = 3\r\n"
                          "\r\n[vhost:new]\r\nd = 4\r\n")
    assert doc.get("d", section="vhost:new") == ["4"]


def test_document_remove() -> None:
    doc = ConfigDocument(DOC)
    doc.remove("route")
    doc.remove("dns")
    doc.remove("not-there")
    text = doc.text()
    assert "route" not in text and "10.0.0.2" not in text
    assert "# keep this comment\n" in text and "futuristic-option = 42\n" in text
    doc.set("route", [])
    assert doc.text() == text


def test_document_refuses_unwritable_values() -> None:
    doc = ConfigDocument(DOC)
    for bad in ["two\nlines", '"quoted"', 'a "b #c"', 'odd " quote']:
        with pytest.raises(ConfigError):
            doc.set("banner", bad)
    with pytest.raises(ConfigError):
        doc.set("tcp-port", ["1", "2"])
    for key in ["", "a b", "a=b", "[x]", "#x"]:
        with pytest.raises(ConfigError):
            doc.set(key, "1")
    assert doc.text() == DOC


def test_document_set_then_parse_matches_get() -> None:
    doc = ConfigDocument(BASE)
    doc.set("default-domain", "example.com corp.example")
    doc.set("pre-login-banner", "#1 VPN")
    cfg = parse_config(doc.text())
    assert cfg.default_domain == "example.com corp.example"
    assert cfg.pre_login_banner == "#1 VPN"


# ------------------------------------------------------------------ atomic writes


def test_write_new_file(tmp_path: Path) -> None:
    path = tmp_path / "ocserv.conf"
    cfg = write_config_atomic(str(path), BASE)
    assert path.read_text() == BASE and cfg.ipv4_network == V4("192.168.1.0/24")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "ocserv.conf.bak").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ocserv.conf"]


def test_write_keeps_backup_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "ocserv.conf"
    path.write_text(BASE)
    path.chmod(0o640)
    new = BASE + "dpd = 30\n"
    assert write_config_atomic(str(path), new).dpd == 30
    assert path.read_text() == new
    assert (tmp_path / "ocserv.conf.bak").read_text() == BASE
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    newer = BASE + "dpd = 31\n"
    write_config_atomic(str(path), newer)
    assert (tmp_path / "ocserv.conf.bak").read_text() == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ocserv.conf", "ocserv.conf.bak"]


def test_write_refuses_invalid_text(tmp_path: Path) -> None:
    path = tmp_path / "ocserv.conf"
    path.write_text(BASE)
    with pytest.raises(ConfigError) as info:
        write_config_atomic(str(path), BASE + "tcp-port = many\n")
    assert info.value.line == 3 and info.value.path == str(path)
    assert path.read_text() == BASE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ocserv.conf"]


def test_document_edit_and_atomic_write_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ocserv.conf"
    path.write_text(DOC)
    doc = ConfigDocument.load(str(path))
    doc.set("max-clients", render_value(OPTIONS["max-clients"], 32))
    cfg = write_config_atomic(str(path), doc.text())
    assert cfg.max_clients == 32
    assert "futuristic-option = 42" in path.read_text()
    assert "unknown option 'futuristic-option' (kept)" in cfg.warnings


# ------------------------------------------------------------------ property / fuzz tests

_KEYS = sorted(OPTIONS) + ["foo", "[vhost:x]", "[x", "=", " ", "\t"]
_ALPHABET = ('0123456789abcdefx./:[]=,"# \t\r;-%' + "default plain passwd ffe\u00e9\x00\x85"
             "\u2028\ufeff")
_line = st.tuples(st.sampled_from(_KEYS), st.sampled_from([" = ", "=", ":", " ", "\n  "]),
                  st.text(alphabet=_ALPHABET, max_size=40)).map("".join)
_doc = st.lists(st.one_of(_line, st.text(max_size=30)), max_size=12).map("\n".join)
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@_FUZZ
@given(_doc, st.booleans())
def test_fuzz_parse_config_only_raises_config_error(text: str, with_base: bool) -> None:
    try:
        cfg = parse_config(BASE + text if with_base else text)
    except ConfigError as exc:
        assert exc.line is None or exc.line >= 1
    else:
        assert isinstance(cfg, Config)


@_FUZZ
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text(text: str) -> None:
    for parse in (parse_config, lambda t: parse_user_config(t, "u")):
        try:
            parse(text)
        except ConfigError:
            pass
    assert ConfigDocument(text).text() == text


@_FUZZ
@given(_doc)
def test_fuzz_user_config_and_document_round_trip(text: str) -> None:
    try:
        parse_user_config(text, "user-file")
    except ConfigError:
        pass
    assert ConfigDocument(text).text() == text


@_FUZZ
@given(st.text(alphabet='abcpluginxdr[]=,/ .-"\t' + "0123", max_size=40))
def test_fuzz_auth_method_only_raises_value_error(text: str) -> None:
    try:
        method = parse_auth_method(text)
    except ValueError:
        return
    assert parse_auth_method(str(method)) == method


_safe_value = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@_FUZZ
@given(_doc, st.sampled_from(["banner", "dns", "route", "x-unknown", "custom-header"]),
       st.lists(_safe_value, min_size=1, max_size=3))
def test_fuzz_document_set_then_get(text: str, key: str, values: list[str]) -> None:
    doc = ConfigDocument(text)
    if OPTIONS.get(key) is not None and not OPTIONS[key].multi:
        values = values[:1]
    try:
        doc.set(key, values)
    except ConfigError:
        assert doc.text() == text  # a refused edit leaves the document untouched
        return
    expected = [v.strip(" \t\n\r\v\f") for v in values]
    assert doc.get(key) == expected


# ------------------------------------------------------------------ fail closed (issue 15)

# What is parsed but not implemented and can be ignored without weakening anything: only
# these warn. A new unimplemented option must be put here or into REFUSED_UNIMPLEMENTED.
HARMLESS_UNIMPLEMENTED = {
    "ban-points-kkdcp", "kkdcp",  # no KKDCP endpoint at all
    "camouflage_realm", "camouflage_secret",  # camouflage itself is refused when on
    "cisco-svc-client-compat",  # a feature (the /svc endpoint) that is simply absent
    "client-bypass-protocol",  # without it clients keep that traffic in the tunnel
    "debug-no-secmod-stats", "log-level", "use-utmp",  # logging (login records stay
    # in the server log; utmp is an audit copy, no access control)
    "dh-params",  # OCGate offers no finite-field DHE suites
    "host-update-script", "hostname", "listen-host-is-dyndns", "proxy-url",  # hints
    "srk-pin", "srk-pin-file",  # TPM keys only, which server-key refuses to load
    "ocsp-response",  # no stapled OCSP response: clients may still check themselves
    "output-buffer", "net-priority",  # tuning
    "sec-mod-scale", "sec-mod-db-cleanup-time", "server-drain-ms",
    "server-stats-reset-time",
    "no-udp",  # DTLS stays available; it is encrypted like TLS
}


def test_every_unimplemented_option_is_classified() -> None:
    assert set(REFUSED_UNIMPLEMENTED) <= NOT_IMPLEMENTED
    assert NOT_IMPLEMENTED - set(REFUSED_UNIMPLEMENTED) == HARMLESS_UNIMPLEMENTED


def _on_value(name: str) -> str:
    return "true" if OPTIONS[name].type == "bool" else "/x"


@pytest.mark.parametrize("name", sorted(REFUSED_UNIMPLEMENTED))
def test_unsafe_unimplemented_option_refuses_with_its_line(name: str) -> None:
    err = error_of(f"dpd = 60\n{name} = {_on_value(name)}\n", path="/etc/ocserv/x.conf")
    assert err.line == 4 and str(err).startswith("/etc/ocserv/x.conf:4: ")
    assert f"option '{name}' is not implemented: {REFUSED_UNIMPLEMENTED[name]}" in str(err)


def test_unsafe_unimplemented_option_when_off_is_silent() -> None:
    off = [f"{n} = false" for n in REFUSED_UNIMPLEMENTED if OPTIONS[n].type == "bool"]
    cfg = cfg_of("\n".join(off) + "\nlisten-host = 198.51.100.1\n"
                 "udp-listen-host = 198.51.100.1\n")
    assert cfg.warnings == []
    assert cfg.udp_listen_host == "198.51.100.1"


@pytest.mark.parametrize("name", sorted(HARMLESS_UNIMPLEMENTED - {"hostname"}))
def test_harmless_unimplemented_option_warns(name: str) -> None:
    value = {"int": "5", "bool": "true", "choice": "daemon"}.get(OPTIONS[name].type, "/x")
    value = {"kkdcp": "/KdcProxy VPN.TEST udp@198.51.100.9:88", "net-priority": "3"}.get(
        name, "198.51.100.53" if OPTIONS[name].item == "ip" else value)
    cfg = cfg_of(f"{name} = {value}\n")
    assert f"option '{name}' is not implemented yet (ignored)" in cfg.warnings


def test_enable_auth_password_alternative() -> None:
    """auth = certificate with enable-auth = a password method: either one logs in."""
    for method in ("plain[passwd=/p]", "pam", "radius[config=/r]"):
        cfg = parse_config(f"auth = certificate\nenable-auth = {method}\nca-cert = /ca\n"
                           "cert-user-oid = 2.5.4.3\nipv4-network = 203.0.113.0/24\n")
        assert [m.name for m in cfg.enable_auth] == [method.split("[")[0]]
        assert cfg.warnings == []


@pytest.mark.parametrize("line, fragment", [
    ("auth = gssapi", "auth = gssapi: this authentication method is not implemented"),
    ("auth = oidc[config=/etc/ocserv/oidc.json]", "auth = oidc: this authentication"),
    ("enable-auth = gssapi", "enable-auth = gssapi: this authentication method is not "
                             "implemented (for 'enable-auth': certificate, pam, plain, "
                             "radius)"),
    ("enable-auth = pam", "only one password-based authentication method may be "
                          "configured ('plain' and 'pam')"),  # ocserv refuses it too
    ("acct = pam[service=x]", "unknown parameter 'service' for 'pam'; pam takes no "
                              "parameters"),
])
def test_unimplemented_auth_and_accounting_refuse(line: str, fragment: str) -> None:
    err = error_of(line + "\n", path="/etc/ocserv/ocserv.conf")
    assert err.line == 3 + line.count("\n") and fragment in str(err)
    assert str(err).startswith(f"/etc/ocserv/ocserv.conf:{err.line}: ")


def test_unimplemented_per_user_option_refuses_the_login() -> None:
    with pytest.raises(ConfigError) as info:
        parse_user_config("dns = 198.51.100.53\ndeny-roaming = true\n", "/etc/ocserv/u/bob")
    err = info.value
    assert err.line == 2 and "option 'deny-roaming' is not implemented" in str(err)
    assert parse_user_config("deny-roaming = false\n", "u").deny_roaming is False


def test_plain_otp_parameters() -> None:
    cfg = cfg_of(base='auth = "plain[passwd=/etc/ocserv/ocpasswd,otp=/etc/ocserv/users.oath]"'
                 "\nipv4-network = 192.168.1.0/24\n")
    assert cfg.auth == [AuthMethod("plain", {"passwd": "/etc/ocserv/ocpasswd",
                                             "otp": "/etc/ocserv/users.oath"})]
    assert cfg.warnings == []
    cfg = cfg_of(base='auth = "plain[otp=/etc/ocserv/users.oath]"\n'
                 "ipv4-network = 192.168.1.0/24\n")
    assert cfg.auth == [AuthMethod("plain", {"otp": "/etc/ocserv/users.oath"})]


@pytest.mark.parametrize("extra, expect_rc, why", [
    ("", 0, ""), ("acct = pam\n", 0, ""), ("enable-auth = gssapi\n", 1, "is not implemented"),
    ("chroot-dir = /\n", 0, ""), ("chroot-dir = /nonexistent/jail\n", 1, "is not a directory"),
    ("chroot-dir = jail\n", 1, "must be an absolute path")])
def test_cli_test_mode_says_the_same(tmp_path: Path, extra: str, expect_rc: int,
                                     why: str) -> None:
    """``python3 -m appliance.vpn -t -c FILE``: the same refusal, with file:line."""
    import subprocess
    import sys

    conf = tmp_path / "ocserv.conf"
    conf.write_text(BASE + "dpd = 60\n" + extra + "server-cert = /etc/ocserv/server.pem\n"
                    "server-key = /etc/ocserv/server.key\n")
    done = subprocess.run([sys.executable, "-m", "appliance.vpn", "-t", "-c", str(conf)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == expect_rc, done.stderr
    if expect_rc:
        assert f"error: {conf}:4: " in done.stderr
        assert why in done.stderr
    else:
        assert f"{conf}: configuration is valid" in done.stdout
