"""restrict-user-to-routes/ports rulesets, checked as text and by nft itself."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.main.firewall import FirewallError, parse_ports, removal, ruleset
from tests.prereqs import needs_command


def test_port_lists_as_ocserv_writes_them():
    allow = parse_ports("tcp(443), udp(53), icmp()")
    assert not allow.deny and [(r.proto, r.port) for r in allow.rules] == [
        ("tcp", 443), ("udp", 53), ("icmp", None)]
    deny = parse_ports("!(tcp(22), udp(161))")
    assert deny.deny and [r.port for r in deny.rules] == [22, 161]
    for bad in ("", "tcp(99999)", "ftp(21)", "!(tcp(22)", "tcp(22); drop"):
        with pytest.raises(FirewallError):
            parse_ports(bad)


def test_ruleset_only_touches_the_users_tun():
    text = ruleset("vpns3", ["198.51.100.0/24"], ["198.51.100.53"], True,
                   parse_ports("tcp(443)"))
    assert 'iifname != "vpns3" return' in text
    assert "ip daddr != { 198.51.100.0/24, 198.51.100.53/32 } drop" in text
    assert "meta nfproto ipv6 drop" in text
    assert "tcp dport 443 accept" in text and text.rstrip().endswith("drop")
    assert ruleset("vpns3", [], [], False, None) == ""
    assert "delete chain inet ocgate_fw forward_vpns3" in removal("vpns3")
    with pytest.raises(FirewallError):
        ruleset('x"; flush ruleset', [], [], True, None)


@needs_command("nft", "nftables")
def test_nft_accepts_the_ruleset():
    text = ruleset("vpns7", ["198.51.100.0/24"], [], True, parse_ports("!(tcp(22))"))
    check = subprocess.run(["nft", "--check", "-f", "-"], input=text, text=True,
                           capture_output=True)
    assert check.returncode == 0, check.stderr


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parse_ports_only_raises_its_error(value):
    try:
        parse_ports(value)
    except FirewallError:
        pass
