"""Detection of addresses, routes and resolvers from `ip -j` output (parsers + fuzz)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.firstboot.network import (
    NetworkParseError,
    detect_network,
    parse_ip_addr,
    parse_ip_route,
    parse_resolv_conf,
    suggest_dns,
    suggest_hostname,
)

ADDR = json.dumps([
    {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"], "link_type": "loopback",
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"},
                   {"family": "inet6", "local": "::1", "prefixlen": 128, "scope": "host"}]},
    {"ifindex": 2, "ifname": "eth0", "flags": ["UP"], "link_type": "ether",
     "addr_info": [{"family": "inet", "local": "198.18.2.10", "prefixlen": 24,
                    "scope": "global"},
                   {"family": "inet6", "local": "2001:db8::10", "prefixlen": 64,
                    "scope": "global"},
                   {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
    {"ifindex": 3, "ifname": "wan0", "flags": ["UP"],
     "addr_info": [{"family": "inet", "local": "100.64.7.9", "prefixlen": 10}]},
    {"ifindex": 4, "ifname": "can0", "addr_info": [{"family": "packet"}]},
])
ROUTES4 = json.dumps([
    {"dst": "default", "gateway": "198.18.2.1", "dev": "eth0", "flags": []},
    {"dst": "198.18.2.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link"},
    {"type": "local", "dst": "198.18.2.10", "dev": "eth0", "table": "local"},
])


def runner(outputs: dict[str, str]):  # noqa: ANN201
    def run(argv):  # noqa: ANN001, ANN202
        key = " ".join(argv)
        if key not in outputs:
            raise OSError(f"{key}: not available")
        return outputs[key]
    return run


def test_parse_and_derive(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# x\nnameserver 127.0.0.53\nnameserver 198.18.2.53\nsearch lan\n")
    info = detect_network(runner({
        "ip -j addr show": ADDR,
        "ip -j -4 route show table all": ROUTES4,
        "ip -j -6 route show table all": "[]",
    }), resolv, hostname="Box.lan")
    assert info.errors == []
    assert [str(a.address) for a in info.lan_addresses] == ["198.18.2.10", "2001:db8::10",
                                                            "100.64.7.9"]
    assert str(info.default_gateway) == "198.18.2.1" and info.default_interface == "eth0"
    assert info.online and info.behind_cgnat
    assert [str(a) for a in info.public_addresses] == []  # documentation space is not global
    assert str(info.primary_address) == "198.18.2.10"
    assert info.hostname == "box"
    assert suggest_dns(info) == ["198.18.2.53"]
    assert ipaddress.ip_network("198.18.2.0/24") in info.occupied()
    assert ipaddress.ip_network("198.18.2.1/32") in info.occupied()


def test_detection_failures_are_reported_not_raised(tmp_path: Path) -> None:
    info = detect_network(runner({"ip -j addr show": "{not json"}), tmp_path / "missing")
    assert len(info.errors) == 4 and not info.online and info.addresses == []
    assert suggest_dns(info) == []


def test_dns_falls_back_to_gateway_then_self() -> None:
    info = detect_network(runner({"ip -j addr show": ADDR,
                                  "ip -j -4 route show table all": ROUTES4,
                                  "ip -j -6 route show table all": "[]"}),
                          Path("/nonexistent"))
    assert suggest_dns(info) == ["198.18.2.1"]
    info.routes = []
    assert suggest_dns(info) == ["198.18.2.10"]


@pytest.mark.parametrize("text", [
    "{}", "[1]", '[{"ifname": 3}]', '[{"ifname": "x", "addr_info": {}}]',
    '[{"ifname": "x", "addr_info": [{"family": "inet", "local": "1.2.3.4"}]}]',
    '[{"ifname": "x", "addr_info": [{"family": "inet", "local": "1.2.3.4", "prefixlen": 40}]}]',
    '[{"ifname": "x", "addr_info": [{"family": "inet", "local": "nope", "prefixlen": 8}]}]',
    "[" * 100000,
])
def test_malformed_addr_output(text: str) -> None:
    with pytest.raises(NetworkParseError):
        parse_ip_addr(text)


@pytest.mark.parametrize("text", [
    '[{"gateway": "1.2.3.4"}]', '[{"dst": "1.2.3.0/33"}]', '[{"dst": "default", '
    '"gateway": "x"}]', '[{"dst": "10.0.0.0/8", "table": 254}]', "null",
])
def test_malformed_route_output(text: str) -> None:
    with pytest.raises(NetworkParseError):
        parse_ip_route(text)


def test_routes_keep_type_and_table() -> None:
    routes = parse_ip_route('[{"type": "blackhole", "dst": "203.0.113.0/26"},'
                            '{"dst": "198.51.100.7", "table": "local", "type": "local"}]')
    assert routes[0].type == "blackhole" and str(routes[0].destination) == "203.0.113.0/26"
    assert routes[1].table == "local" and str(routes[1].destination) == "198.51.100.7/32"


def test_resolv_conf() -> None:
    text = "nameserver 198.18.2.53\nnameserver fe80::1%eth0\nnameserver junk\n" \
           "nameserver 198.18.2.53\n  nameserver\n"
    assert [str(a) for a in parse_resolv_conf(text)] == ["198.18.2.53", "fe80::1"]


@pytest.mark.parametrize("raw, expected", [
    ("raspberrypi", "ocgate"), ("localhost", "ocgate"), ("My-Box.lan", "my-box"),
    ("-bad", "ocgate"), ("naïve", "ocgate"), ("", "ocgate"),
])
def test_suggest_hostname(raw: str, expected: str) -> None:
    assert suggest_hostname(raw) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["ifname", "addr_info", "family", "local", "prefixlen", "scope",
                         "flags", "dst", "gateway", "dev", "table", "type", "x"]),
        inner, max_size=6),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_parsers_only_raise_their_own_error(value: object) -> None:
    text = json.dumps(value)
    for parser in (parse_ip_addr, parse_ip_route):
        try:
            parser(text)
        except NetworkParseError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parsers_survive_arbitrary_text(text: str) -> None:
    for parser in (parse_ip_addr, parse_ip_route):
        try:
            parser(text)
        except NetworkParseError:
            pass
    parse_resolv_conf(text)
