"""IPv6 in the tunnel (issue #10): leases, the MTU rule, CONNECT headers, GRO, scripts, occtl.

docs/protocol.md §3.3, §8.2, §8.3, §9, §11 item 18.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn import ipc
from appliance.vpn.config import parse_config, parse_user_config
from appliance.vpn.main.bans import BanSettings, BanTable
from appliance.vpn.main.ipv6 import (
    Ipv6Lease,
    Ipv6Leases,
    agent_kind,
    ban_key,
    grant_ipv6,
    ipv6_allowed,
    occtl_ipv6,
    offered_lease,
    script_ipv6,
    tun_ipv6,
)
from appliance.vpn.main.leases import Ipv6LeasePool, LeaseError
from appliance.vpn.main.scripts import script_env
from appliance.vpn.main.sessions import effective_settings
from appliance.vpn.protocol import cstp
from appliance.vpn.worker.dialogue import connect_params
from appliance.vpn.worker.gro import PLAIN, coalesce
from tests.prereqs import needs, needs_command, require_tun
from tests.support.tun import run_in, scratch_netns

POOL = IPv6Network("2001:db8:7::/48")
OC_UA = "Open AnyConnect VPN Agent v9.01-3"
BASE = ('auth = "plain[passwd=/x]"\nipv4-network = 203.0.113.0/24\nserver-cert = /a\n'
        "server-key = /b\n")


class Headers:
    """The HTTP layer's header lookup, enough for parse_connect_request."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self._items if k.lower() == name.lower()]


def connect_request(user_agent: str = OC_UA, *, full_ipv6: bool = True,
                    address_type: str = "IPv6,IPv4") -> cstp.ConnectRequest:
    items = [("Cookie", "webvpn=abc"), ("User-Agent", user_agent),
             ("X-CSTP-Base-MTU", "1500"), ("X-CSTP-Address-Type", address_type)]
    if full_ipv6:
        items.append(("X-CSTP-Full-IPv6-Capability", "true"))
    return cstp.parse_connect_request("CONNECT", "/CSCOSSLC/tunnel", Headers(items))


def grant(mtu: int = 1434, routes: tuple[str, ...] = ("198.51.100.0/24", "2001:db8:5::/48"),
          dns: tuple[str, ...] = ("198.51.100.53", "2001:db8:5::53"),
          **fields: object) -> ipc.ConnectGrant:
    settings = ipc.SessionSettings(dpd=90, keepalive=32400, rekey_time=172800,
                                   rekey_method="new-tunnel", base_mtu=1500, mtu=mtu,
                                   routes=list(routes), dns=list(dns), tunnel_all_dns=False)
    return ipc.ConnectGrant(ok=True, status=200, ipv4="203.0.113.50",
                            ipv4_netmask="255.255.255.0", settings=settings, **fields)


def header_lines(raw: bytes) -> list[str]:
    return raw.decode().split("\r\n")


# --------------------------------------------------------------------------- leases


def test_slash_128_pool_never_hands_out_the_network_or_server_address() -> None:
    pool = Ipv6LeasePool(IPv6Network("2001:db8::/125"), 128, rng=random.Random(1))
    got = {pool.acquire(f"s{i}", f"user{i}") for i in range(6)}
    assert got == {IPv6Address(f"2001:db8::{n}") for n in range(2, 8)}
    with pytest.raises(LeaseError):
        pool.acquire("s6", "one-too-many")
    for bad in ("2001:db8::", "2001:db8::1"):
        assert not Ipv6LeasePool(IPv6Network("2001:db8::/125"), 128)._usable(IPv6Address(bad))


def test_small_pool_is_walked_after_the_candidates() -> None:
    # 16 subnets of /64 in a /60: hash candidates collide soon, the walk finds the rest
    pool = Ipv6LeasePool(IPv6Network("2001:db8:0:10::/60"), 64, rng=random.Random(3))
    got = [pool.acquire(f"s{i}", "same-user") for i in range(15)]
    subnets = {int(a) >> 64 for a in got}
    assert len(subnets) == 15 and (0x20010DB800000010 not in subnets)
    # a walked lease is never a subnet's all-zero address
    assert all(int(a) & 0xFFFFFFFFFFFFFFFF for a in got)
    with pytest.raises(LeaseError):
        pool.acquire("s15", "x")
    assert pool.release("s3") == got[3]
    assert int(pool.acquire("again", "x")) >> 64 == int(got[3]) >> 64  # the one free /64


def test_big_pool_is_not_walked() -> None:
    pool = Ipv6LeasePool(IPv6Network("2001:db8::/32"), 128)
    assert list(pool._scan()) == []


def test_explicit_ipv6_and_address_of() -> None:
    pool = Ipv6LeasePool(POOL, 64)
    addr = IPv6Address("2001:db8:7:42::9")
    assert pool.acquire("s1", "alice", explicit=addr) == addr
    assert pool.address_of("s1") == addr and pool.holder(IPv6Address("2001:db8:7:42::1")) == "s1"
    with pytest.raises(LeaseError):  # same /64
        pool.acquire("s2", "bob", explicit=IPv6Address("2001:db8:7:42::8"))
    with pytest.raises(LeaseError):
        pool.acquire("s3", "bob", explicit="not an address")  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=60))
def test_fuzz_subnets_stay_disjoint(ops: list[tuple[bool, int]]) -> None:
    pool = Ipv6LeasePool(IPv6Network("2001:db8:0:10::/60"), 64, rng=random.Random(0))
    held: dict[str, IPv6Address] = {}
    for take, n in ops:
        sid = f"s{n}"
        if take:
            try:
                held[sid] = pool.acquire(sid, f"u{n % 3}")
            except LeaseError:
                assert len(held) == 15
        else:
            assert pool.release(sid) == held.pop(sid, None)
        subnets = [int(a) >> 64 for a in held.values()]
        assert len(set(subnets)) == len(subnets) == pool.in_use()
        assert 0x20010DB800000010 not in subnets


def test_leases_follow_the_session_and_per_user_pools() -> None:
    leases = Ipv6Leases(POOL, 64)
    first = leases.acquire("s1", "alice")
    assert first is not None and first.address in POOL and first.prefix == 64
    assert first.local == IPv6Address("2001:db8:7::1")
    assert first.subnet == IPv6Network((first.address, 64), strict=False)
    assert leases.acquire("s1", "alice") == first  # a reconnect gets the same lease
    assert Ipv6Leases(POOL, 64).acquire("x", "alice") == first  # predictable-ips
    group = SimpleNamespace(ipv6_network=IPv6Network("2001:db8:9::/56"), ipv6_subnet_prefix=None,
                            explicit_ipv6=None)
    other = leases.acquire("s2", "bob", group)
    assert other is not None and other.address in IPv6Network("2001:db8:9::/56")
    assert other.prefix == 64 and other.local == IPv6Address("2001:db8:9::1")
    assert leases.in_use() == 2
    assert leases.release("s1") == first.address and leases.release("s1") is None
    pinned = SimpleNamespace(ipv6_network=None, ipv6_subnet_prefix=None,
                             explicit_ipv6=IPv6Address("2001:db8:7:99::5"))
    assert leases.acquire("s3", "carol", pinned).address == IPv6Address("2001:db8:7:99::5")


def test_no_pool_and_bad_per_user_prefix() -> None:
    assert Ipv6Leases(None, 128).acquire("s", "alice") is None
    bad = SimpleNamespace(ipv6_network=IPv6Network("2001:db8:9::/64"), ipv6_subnet_prefix=64,
                          explicit_ipv6=None)
    with pytest.raises(LeaseError):
        Ipv6Leases(POOL, 128).acquire("s", "alice", bad)


def test_from_config() -> None:
    cfg = parse_config(BASE + f"ipv6-network = {POOL}\nipv6-subnet-prefix = 64\n")
    lease = Ipv6Leases.from_config(cfg).acquire("s", "alice")
    assert lease is not None and lease.prefix == 64 and lease.address in POOL
    assert Ipv6Leases.from_config(parse_config(BASE)).acquire("s", "alice") is None


# --------------------------------------------------------------------------- MTU and glue


def test_mtu_rule_and_main_helpers(caplog: pytest.LogCaptureFixture) -> None:
    lease = Ipv6Lease(IPv6Address("2001:db8:7:1::5"), 64, IPv6Address("2001:db8:7::1"))
    assert ipv6_allowed(1280) and not ipv6_allowed(1279)
    assert offered_lease(lease, 1280, "alice") is lease
    assert offered_lease(None, 1500, "alice") is None
    with caplog.at_level("INFO"):
        assert offered_lease(lease, 1234, "alice") is None
    assert "not sufficient for IPv6" in caplog.text
    assert tun_ipv6(lease) == {"ipv6_local": lease.local,
                               "ipv6_peer": IPv6Network("2001:db8:7:1::/64")}
    assert tun_ipv6(None) == {}
    assert grant_ipv6(lease, lease) == {"ipv6": "2001:db8:7:1::5", "ipv6_prefix": 64}
    assert grant_ipv6(lease, None) == {"ipv6_withheld": True}
    assert grant_ipv6(None, None) == {"ipv6_withheld": False}
    assert occtl_ipv6(lease) == {"ipv6": "2001:db8:7:1::5", "ptp_ipv6": "2001:db8:7::1"}
    assert occtl_ipv6(None) == {}


def test_script_variables_as_ocserv() -> None:
    lease = Ipv6Lease(IPv6Address("2001:db8:7:1::5"), 64, IPv6Address("2001:db8:7::1"))
    common = dict(reason="connect", username="alice", groupname="", hostname="h",
                  device="vpns0", user_agent="ua", device_type="", platform="",
                  ip_real="2001:db8:1:1::2", ip_real_local="2001:db8:1:1::1",
                  ip_local=None, ip_remote=None, worker_id=7)
    env = script_env(**common, **script_ipv6(lease))
    assert env["IPV6_LOCAL"] == "2001:db8:7::1" and env["IPV6_REMOTE"] == "2001:db8:7:1::5"
    assert env["IPV6_PREFIX"] == "64" and env["IP_REAL"] == "2001:db8:1:1::2"
    assert not {"IPV6_LOCAL", "IPV6_REMOTE", "IPV6_PREFIX"} & set(script_env(**common))


@pytest.mark.parametrize(("ua", "kind"), [
    (OC_UA, "openconnect"),
    ("Open AnyConnect VPN Agent v3.02", None),
    ("OpenConnect VPN Agent (Android)", "openconnect"),
    ("Cisco AnyConnect VPN Agent for Windows 4.10", "anyconnect"),
    ("AnyConnect Darwin_i386 4.10", "anyconnect"),
    ("curl/8.0", None),
    ("", None),
])
def test_agent_kind(ua: str, kind: str | None) -> None:
    assert agent_kind(ua) == kind


def test_ipv6_default_route_is_not_a_full_tunnel() -> None:
    cfg = parse_config(BASE + f"ipv6-network = {POOL}\nroute = 198.51.100.0/24\n"
                       "route = ::/0\n")
    s = effective_settings(cfg, None, 0, 0)
    assert s.routes == ["198.51.100.0/24", "::/0"] and s.tunnel_all_dns is not True
    user = parse_user_config("route = default\n", "alice", ipv6=True)
    assert effective_settings(cfg, user, 0, 0).routes == []


# --------------------------------------------------------------------------- CONNECT bytes


def test_connect_response_carries_ipv6_as_ocserv() -> None:
    g = grant(ipv6="2001:db8:7:8e4f::5", ipv6_prefix=64)
    raw = cstp.build_connect_response(connect_params(g, connect_request()))
    lines = header_lines(raw)
    i = lines.index("X-CSTP-Address: 203.0.113.50")
    # ocserv order: Address, Netmask (IPv4 pool mask, untouched), Address-IP6, DNS…
    assert lines[i:i + 5] == [
        "X-CSTP-Address: 203.0.113.50",
        "X-CSTP-Netmask: 255.255.255.0",
        "X-CSTP-Address-IP6: 2001:db8:7:8e4f::5/64",
        "X-CSTP-DNS: 198.51.100.53",
        "X-CSTP-DNS: 2001:db8:5::53",  # openconnect: X-CSTP-DNS, not DNS-IP6
    ]
    assert b"X-CSTP-Split-Include: 198.51.100.0/255.255.255.0\r\n" \
           b"X-CSTP-Split-Include-IP6: 2001:db8:5::/48\r\n" in raw
    assert raw.count(b"X-CSTP-Netmask") == 1


def test_connect_response_of_an_ipv6_only_pool_has_no_ipv4() -> None:
    g = grant(ipv6="2001:db8:7:8e4f::5", ipv6_prefix=64, routes=("2001:db8:5::/48",),
              dns=("2001:db8:5::53",))
    g = ipc.ConnectGrant(**{**g.__dict__, "ipv4": "", "ipv4_netmask": ""})
    raw = cstp.build_connect_response(connect_params(g, connect_request()))
    assert b"X-CSTP-Address: " not in raw and b"X-CSTP-Netmask" not in raw
    assert b"X-CSTP-Address-IP6: 2001:db8:7:8e4f::5/64\r\n" in raw


def test_connect_response_ipv6_default_route() -> None:
    g = grant(ipv6="2001:db8:7:8e4f::5", ipv6_prefix=64, routes=("198.51.100.0/24", "::/0"))
    raw = cstp.build_connect_response(connect_params(g, connect_request()))
    assert b"X-CSTP-Split-Include-IP6: ::/0\r\n" in raw
    assert b"X-CSTP-Tunnel-All-DNS: false\r\n" in raw


def test_withheld_ipv6_sends_no_address_routes_or_dns() -> None:
    g = grant(mtu=1234, ipv6_withheld=True)
    raw = cstp.build_connect_response(connect_params(g, connect_request()))
    assert b"IP6" not in raw and b"2001:db8" not in raw
    assert b"X-CSTP-Address: 203.0.113.50\r\n" in raw and b"X-CSTP-MTU: 1234\r\n" in raw


def test_ipv6_routes_without_a_pool_still_go_to_full_ipv6_clients() -> None:
    raw = cstp.build_connect_response(connect_params(grant(), connect_request()))
    assert b"Address-IP6" not in raw and b"X-CSTP-Split-Include-IP6: 2001:db8:5::/48" in raw


def test_clients_that_may_not_get_ipv6_routes() -> None:
    g = grant(ipv6="2001:db8:7:8e4f::5", ipv6_prefix=64)
    # no full-IPv6 capability: legacy Address/Netmask form, no IPv6 routes or DNS
    raw = cstp.build_connect_response(connect_params(g, connect_request(full_ipv6=False)))
    assert b"X-CSTP-Address: 2001:db8:7:8e4f::5\r\nX-CSTP-Netmask: 2001:db8:7:8e4f::/64\r\n" in raw
    assert b"Split-Include-IP6" not in raw and b"X-CSTP-DNS: 2001" not in raw
    # an unknown agent gets the address only
    raw = cstp.build_connect_response(connect_params(g, connect_request("curl/8")))
    assert b"X-CSTP-Address-IP6: 2001:db8:7:8e4f::5/64\r\n" in raw
    assert b"Split-Include-IP6" not in raw and b"X-CSTP-DNS: 2001" not in raw
    # X-CSTP-Address-Type without IPv6: nothing IPv6 at all
    raw = cstp.build_connect_response(connect_params(g, connect_request(address_type="IPv4")))
    assert b"IP6" not in raw and b"2001:db8" not in raw


def test_anyconnect_gets_dns_ip6() -> None:
    g = grant(ipv6="2001:db8:7:8e4f::5", ipv6_prefix=64)
    creq = connect_request("Cisco AnyConnect VPN Agent for Windows 4.10")
    raw = cstp.build_connect_response(connect_params(g, creq))
    assert b"X-CSTP-DNS-IP6: 2001:db8:5::53\r\n" in raw and b"X-CSTP-DNS: 198.51.100.53\r\n" in raw


# --------------------------------------------------------------------------- data path


def ipv6_tcp_segment(seq: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 40000, 443, seq, 1, 5 << 4, 0x10, 65535, 0, 0) + payload
    header = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64)
    src = IPv6Address("2001:db8:7:1::5").packed
    dst = IPv6Address("2001:db8:5::1").packed
    return header + src + dst + tcp


def test_gro_passes_ipv6_through_untouched() -> None:
    run = [ipv6_tcp_segment(1000 + i * 1000, bytes(1000)) for i in range(4)]
    assert coalesce(run) == [PLAIN + p for p in run]


def test_mtu_floor_with_an_ipv6_pool() -> None:
    # a client Base-MTU below 1280 is ignored when IPv6 is on offer (§3.4 MIN_MTU)
    assert cstp.compute_mtu(base_mtu=1000, requested_mtu=None, link_mtu=None, tcp_pmtu=None,
                            peer_is_ipv6=False, have_ipv6_pool=True, dtls_overhead=38) \
        == (1500, 1434)
    assert cstp.compute_mtu(base_mtu=1000, requested_mtu=None, link_mtu=None, tcp_pmtu=None,
                            peer_is_ipv6=False, have_ipv6_pool=False, dtls_overhead=38) \
        == (1000, 934)


# --------------------------------------------------------------------------- bans


def test_ban_key_as_ocserv() -> None:
    assert ban_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::"
    assert ban_key("2001:DB8:1:2::1") == "2001:db8:1:2::"
    assert ban_key("::ffff:198.18.0.2") == "198.18.0.2"
    assert ban_key("fe80::1%eth0") == "fe80::"
    assert ban_key("198.18.0.2") == "198.18.0.2" and ban_key("junk") == "junk"


def test_ipv6_clients_are_banned_by_their_slash_64() -> None:
    table = BanTable(BanSettings(max_score=3, points_connection=1))
    assert not table.add("2001:db8:1:2::10", 2, now=0)
    assert table.add("2001:db8:1:2::99", 1, now=1)  # same /64: the score adds up
    assert table.banned("2001:db8:1:2:ffff::1", now=2)
    assert not table.banned("2001:db8:1:3::10", now=2)
    assert table.unban("2001:DB8:1:2::") and not table.banned("2001:db8:1:2::10", now=3)
    assert table.add("::ffff:198.18.0.2", 3, now=4) and table.banned("198.18.0.2", now=5)


# --------------------------------------------------------------------------- tun (root only)


@pytest.fixture
def tun_ns() -> Iterator[str]:
    """A throw-away network namespace (``ocg-`` prefix, deleted afterwards)."""
    with scratch_netns("ocg-t6-", ipv6=True) as name:
        yield name


@needs(require_tun)
@needs_command("ip", "iproute2")
def test_taken_over_subnet_follows_the_new_tun(tun_ns: str) -> None:
    """A session taken over gets its IPv6 subnet routed to the new tun even while the old
    one still exists (main removes the old device only around the same moment)."""
    result = run_in(tun_ns, """
    lease = dict(ipv6_local=IPv6Address("2001:db8:7::1"),
                 ipv6_peer=IPv6Network("2001:db8:7:1::/64"))
    fd0, old = open_tun("vpns%d")
    configure_tun(old, local=IPv4Address("203.0.113.1"), peer=IPv4Address("203.0.113.50"),
                  mtu=1434, **lease)
    fd1, new = open_tun("vpns%d")
    configure_tun(new, local=IPv4Address("203.0.113.1"), peer=IPv4Address("203.0.113.50"),
                  mtu=1434, **lease)
    route = ip_json("-6", "route", "get", "2001:db8:7:1::5")[0]
    print(json.dumps(dict(new=new, dev=route["dev"])))
    """)
    assert result["dev"] == result["new"]
