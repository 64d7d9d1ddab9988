"""The VPN subnet chooser against many route tables, and validation of typed pools."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.firstboot.network import NetworkInfo, parse_ip_addr, parse_ip_route
from appliance.firstboot.subnets import (
    COMMON_RANGES,
    DOCUMENTATION_POLICY,
    HOME_POLICY,
    NoFreeSubnetError,
    SubnetError,
    check_ipv6_pool,
    check_subnet,
    choose_subnet,
    conflicts,
    propose_ipv6,
    random_ula,
)

N = ipaddress.ip_network


def table(*nets: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [N(n) for n in nets]


# Route tables of typical places the appliance lands in, as `ip -j` prints them.
ROUTE_TABLES = {
    "fritzbox": ["192.168.178.0/24"],
    "plain home": ["192.168.1.0/24", "192.168.1.1/32"],
    "isp box 10.0": ["10.0.0.0/24"],
    "docker host": ["192.168.0.0/24", "172.17.0.0/16", "172.18.0.0/16", "10.73.0.0/24"],
    "k3s": ["10.42.0.0/16", "10.43.0.0/16", "10.0.2.0/24"],
    "another vpn": ["10.73.0.0/24", "10.73.1.0/24", "10.73.4.0/22"],
    "big corporate": ["10.0.0.0/10", "10.73.0.0/16", "10.74.0.0/15"],
    "def1 vpn trick": ["0.0.0.0/1", "128.0.0.0/1", "192.168.2.0/24"],
}


@pytest.mark.parametrize("name", sorted(ROUTE_TABLES))
def test_choice_overlaps_nothing_and_avoids_common_ranges(name: str) -> None:
    occupied = table(*ROUTE_TABLES[name])
    usable = [n for n in occupied if n.prefixlen >= 8]  # as NetworkInfo.occupied() does
    net = choose_subnet(usable)
    assert not conflicts(net, usable)
    assert not any(net.overlaps(r) for r, _why in COMMON_RANGES)
    assert net.prefixlen == 24 and net.is_private


def test_first_choice_on_an_empty_table_is_stable() -> None:
    assert str(choose_subnet([])) == "10.73.0.0/24"
    assert str(choose_subnet(table("10.73.0.0/24"))) == "10.73.1.0/24"
    assert str(choose_subnet(table("10.73.0.0/16"))) == "10.74.0.0/24"


def test_documentation_policy_skips_a_colliding_route() -> None:
    assert str(choose_subnet([], DOCUMENTATION_POLICY)) == "203.0.113.0/26"
    assert str(choose_subnet(table("203.0.113.0/26"), DOCUMENTATION_POLICY)) == "203.0.113.64/26"


def test_no_free_subnet() -> None:
    with pytest.raises(NoFreeSubnetError):
        choose_subnet(table("10.64.0.0/10"))


def test_occupied_comes_from_addresses_and_all_route_tables() -> None:
    addrs = parse_ip_addr(json.dumps([
        {"ifname": "lo", "flags": ["LOOPBACK"], "addr_info": [
            {"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
        {"ifname": "eth0", "flags": ["UP"], "addr_info": [
            {"family": "inet", "local": "10.73.0.5", "prefixlen": 24, "scope": "global"}]},
    ]))
    routes = parse_ip_route(json.dumps([
        {"dst": "default", "gateway": "10.73.0.1", "dev": "eth0"},
        {"type": "blackhole", "dst": "10.73.1.0/24"},
        {"dst": "10.73.2.0/24", "dev": "wg0", "table": "51820"},
        {"type": "broadcast", "dst": "10.73.3.255", "table": "local"},
        {"dst": "0.0.0.0/1", "dev": "tun0"},
    ]))
    info = NetworkInfo(addresses=addrs, routes=routes)
    occupied = info.occupied()
    assert N("10.73.0.0/24") in occupied and N("10.73.1.0/24") in occupied
    assert N("10.73.2.0/24") in occupied
    assert N("0.0.0.0/1") not in occupied
    assert str(choose_subnet(occupied)) == "10.73.3.0/24"  # broadcast entries do not count


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), max_size=40))
def test_chosen_subnet_never_overlaps_random_tables(routes: list[tuple[int, int]]) -> None:
    occupied = [ipaddress.IPv4Network((addr, plen), strict=False) for addr, plen in routes]
    try:
        net = choose_subnet(occupied)
    except NoFreeSubnetError:
        assert any(o.prefixlen <= 12 for o in occupied)
        return
    assert not conflicts(net, occupied)
    assert any(net.subnet_of(block) for block in HOME_POLICY.candidate_blocks)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_typed_subnets_never_crash(text: str) -> None:
    try:
        net, _warnings = check_subnet(text, [])
    except SubnetError:
        return
    assert net.is_private or net.subnet_of(N("100.64.0.0/10"))


@pytest.mark.parametrize("text, message", [
    ("10.73.0.0", "prefix length"),
    ("banana/24", "not an IPv4 network"),
    ("10.0.0.0/8", "too big"),
    ("10.73.0.0/30", "too small"),
    ("8.8.8.0/24", "not a private range"),
    ("192.168.1.0/24", "overlaps 192.168.1.0/24"),
])
def test_bad_typed_subnets(text: str, message: str) -> None:
    with pytest.raises(SubnetError, match=message):
        check_subnet(text, table("192.168.1.0/24"))


def test_typed_subnet_in_a_common_range_warns() -> None:
    net, warnings = check_subnet("192.168.77.0/24", table("10.73.0.0/24"))
    assert str(net) == "192.168.77.0/24"
    assert warnings and "home routers" in warnings[0]
    _net, none = check_subnet("10.77.0.0/24", [])
    assert none == []


def test_cgnat_is_allowed_unless_the_uplink_uses_it() -> None:
    net, warnings = check_subnet("100.100.0.0/24", [])
    assert str(net) == "100.100.0.0/24" and warnings
    with pytest.raises(SubnetError, match="carrier-grade NAT"):
        check_subnet("100.100.0.0/24", [], uplink_in_cgnat=True)


def test_documentation_policy_allows_only_documentation_ranges() -> None:
    check_subnet("203.0.113.64/26", [], DOCUMENTATION_POLICY)
    with pytest.raises(SubnetError):
        check_subnet("10.73.0.0/24", [], DOCUMENTATION_POLICY)


def test_random_ula_follows_rfc_4193() -> None:
    prefix, pool = random_ula(0x1234567890)
    assert str(prefix) == "fd12:3456:7890::/48" and str(pool) == "fd12:3456:7890::/64"
    seen = {random_ula()[0] for _ in range(20)}
    assert len(seen) == 20 and all(p.subnet_of(N("fd00::/8")) for p in seen)


def test_ipv6_pool_checks() -> None:
    assert str(check_ipv6_pool("fd12:3456:789a::/64", [])) == "fd12:3456:789a::/64"
    for bad, message in (("2001:db8::/64", "unique local"), ("fd00::/40", "between"),
                         ("nope", "not an IPv6")):
        with pytest.raises(SubnetError, match=message):
            check_ipv6_pool(bad, [])
    with pytest.raises(SubnetError, match="overlaps"):
        check_ipv6_pool("fd12:3456:789a::/64", table("fd12:3456:789a::/48"))
    pool = propose_ipv6(table("fd00::/8"), DOCUMENTATION_POLICY)
    assert pool.subnet_of(N("2001:db8::/32")) and pool.prefixlen == 64
    with pytest.raises(NoFreeSubnetError):
        propose_ipv6(table("fd00::/8"))
