"""IPv4/IPv6 lease pools: ocserv's predictable addresses, exhaustion, rebinding."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.main.leases import (
    Ipv4LeasePool,
    Ipv6LeasePool,
    LeaseError,
    _lookup3,
    username_seed,
)

RIG_POOL = IPv4Network("203.0.113.0/24")


def test_lookup3_reference_vectors() -> None:
    # Values from Bob Jenkins' lookup3.c driver (hashlittle of "", and of the sentence).
    assert _lookup3(b"") == 0xDEADBEEF
    assert _lookup3(b"Four score and seven years ago") == 0x17770551
    assert _lookup3(b"Four score and seven years ago", 1) == 0xCD628161
    assert username_seed("alice") == (0x323F1047).to_bytes(4, "little")


def test_alice_gets_ocservs_address() -> None:
    """ocserv 1.1.6 gave alice 203.0.113.50 in the rig transcript (predictable-ips)."""
    pool = Ipv4LeasePool(RIG_POOL)
    assert pool.local_address == IPv4Address("203.0.113.1")
    assert pool.netmask == IPv4Address("255.255.255.0")
    assert pool.acquire("s1", "alice") == IPv4Address("203.0.113.50")


def test_same_session_same_address_and_determinism() -> None:
    pool = Ipv4LeasePool(RIG_POOL)
    first = pool.acquire("s1", "bob")
    assert pool.acquire("s1", "bob") == first
    assert pool.acquire("s1", "someone-else") == first  # the session, not the name, decides
    assert pool.in_use() == 1
    assert Ipv4LeasePool(RIG_POOL).acquire("other", "bob") == first  # stable across restarts
    pool.release("s1")
    assert pool.acquire("s2", "bob") == first  # expired session: same address again


def test_second_session_of_a_user_follows_the_sha1_chain() -> None:
    pool = Ipv4LeasePool(RIG_POOL)
    chain = list(pool.candidates("alice"))[:6]
    assert chain[0] == IPv4Address("203.0.113.50")
    assert pool.acquire("a1", "alice") == chain[0]
    assert pool.acquire("a2", "alice") == chain[1]
    assert pool.holder(chain[1]) == "a2"
    assert pool.holder(IPv4Address("203.0.113.250")) in (None, "a1", "a2")


def test_never_network_broadcast_or_local() -> None:
    pool = Ipv4LeasePool(IPv4Network("10.1.0.0/30"))  # only .2 is usable
    assert pool.capacity == 1
    assert pool.acquire("s", "x") == IPv4Address("10.1.0.2")
    with pytest.raises(LeaseError):
        pool.acquire("t", "y")
    for bad in ("10.1.0.0", "10.1.0.1", "10.1.0.3", "10.9.9.9"):
        with pytest.raises(LeaseError):
            Ipv4LeasePool(IPv4Network("10.1.0.0/30")).acquire("s", "x", explicit=IPv4Address(bad))


def test_exhaustion_of_a_slash_29() -> None:
    pool = Ipv4LeasePool(IPv4Network("198.18.2.8/29"), rng=random.Random(1))
    got = {pool.acquire(f"s{i}", "same-user") for i in range(5)}
    assert got == {IPv4Address(f"198.18.2.{n}") for n in range(10, 15)}
    assert pool.in_use() == 5
    with pytest.raises(LeaseError, match="exhausted"):
        pool.acquire("s5", "same-user")
    pool.release("s2")
    assert pool.acquire("s5", "same-user") not in {pool.address_of(f"s{i}") for i in (0, 1, 3, 4)}


def test_explicit_address() -> None:
    pool = Ipv4LeasePool(RIG_POOL)
    seven = IPv4Address("203.0.113.7")
    assert pool.acquire("s1", "u", explicit=seven) == seven
    with pytest.raises(LeaseError):
        pool.acquire("s2", "v", explicit=seven)
    assert pool.acquire("s1", "u", explicit=IPv4Address("203.0.113.9")) == seven
    assert pool.acquire("s3", "w", explicit="203.0.113.8") == IPv4Address("203.0.113.8")  # type: ignore[arg-type]
    with pytest.raises(LeaseError):
        pool.acquire("s4", "w", explicit="203.0.113.999")  # type: ignore[arg-type]


def test_random_mode_uses_rng() -> None:
    a = Ipv4LeasePool(RIG_POOL, predictable=False, rng=random.Random(7)).acquire("s", "alice")
    b = Ipv4LeasePool(RIG_POOL, predictable=False, rng=random.Random(7)).acquire("s", "alice")
    assert a == b


def test_many_sessions_no_duplicates() -> None:
    pool = Ipv4LeasePool(RIG_POOL, rng=random.Random(3))
    addrs = [pool.acquire(f"s{i}", f"user{i % 40}") for i in range(253)]
    assert len(set(addrs)) == 253 == pool.in_use() == pool.capacity
    assert all(a != pool.local_address and a in RIG_POOL for a in addrs)
    with pytest.raises(LeaseError):
        pool.acquire("s-extra", "user0")


def test_release_and_transfer() -> None:
    pool = Ipv4LeasePool(RIG_POOL)
    addr = pool.acquire("old", "alice")
    assert pool.transfer("old", "new") == addr
    assert pool.holder(addr) == "new"
    assert pool.address_of("old") is None
    assert pool.acquire("new", "alice") == addr
    assert pool.transfer("missing", "x") is None
    other = pool.acquire("x", "bob")
    with pytest.raises(LeaseError):
        pool.transfer("new", "x")
    assert pool.release("new") == addr
    assert pool.release("new") is None
    assert pool.holder(addr) is None
    assert pool.holder(other) == "x"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 12), st.integers(0, 5)), max_size=60))
def test_fuzz_pool_invariants(ops: list[tuple[bool, int, int]]) -> None:
    pool = Ipv4LeasePool(IPv4Network("198.18.0.0/28"), rng=random.Random(0))
    held: dict[str, IPv4Address] = {}
    for acquire, session, user in ops:
        sid = f"s{session}"
        if acquire:
            try:
                addr = pool.acquire(sid, f"u{user}")
            except LeaseError:
                assert len(held) == pool.capacity and sid not in held
                continue
            assert held.setdefault(sid, addr) == addr
        else:
            assert pool.release(sid) == held.pop(sid, None)
        assert len(set(held.values())) == len(held) == pool.in_use()
        for s, a in held.items():
            assert pool.holder(a) == s


def test_ipv6_pool() -> None:
    pool = Ipv6LeasePool(IPv6Network("2001:db8:100::/48"), 64)
    assert pool.local_address == IPv6Address("2001:db8:100::1")
    a = pool.acquire("s1", "alice")
    assert a in pool.network and pool.acquire("s1", "alice") == a
    assert Ipv6LeasePool(IPv6Network("2001:db8:100::/48"), 64).acquire("x", "alice") == a
    b = pool.acquire("s2", "alice")
    assert int(a) >> 64 != int(b) >> 64  # distinct /64s
    assert pool.holder(IPv6Address(int(b) | 0xFFFF)) == "s2"
    with pytest.raises(LeaseError):
        pool.acquire("s3", "c", explicit=IPv6Address("2001:db8:100::5"))  # server's /64
    with pytest.raises(ValueError):
        Ipv6LeasePool(IPv6Network("2001:db8::/64"), 64)
    assert pool.transfer("s1", "s9") == a and pool.release("s9") == a


def test_ipv6_small_pool_exhausts() -> None:
    pool = Ipv6LeasePool(IPv6Network("2001:db8::/126"), 128, rng=random.Random(0))
    got = set()
    with pytest.raises(LeaseError):
        for i in range(10):
            got.add(pool.acquire(f"s{i}", "u"))
    assert len(got) <= 3 and IPv6Address("2001:db8::1") not in got
