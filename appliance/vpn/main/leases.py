"""IP address leases for VPN sessions (docs/protocol.md §8.2, §7.6).

Pure bookkeeping, no IO.  A lease belongs to a *session* (the cookie), not to a TCP
connection: openconnect aborts a reconnect for good if it is offered a different address
(§3.3, §11 item 5), so the same session must always get the same address back, and a
user who reconnects after the session expired should still land on the same address.

The candidate order is ocserv's (ip-lease.c), so a user keeps the address ocserv gave
them when an installation switches over:

1. the 32-bit Jenkins lookup3 ``hashlittle`` of the username (initval 0; ocserv's
   ``hash_any``), laid out in memory little-endian as on x86, used as the four address
   bytes in network order, host bits only (``predictable-ips = true``; otherwise random);
2. to 6. the first four bytes of SHA-1 of the previous candidate's four address bytes;
7. to 16. random;

then, unlike ocserv (which refuses the client), a linear scan of the whole pool.  A
candidate is skipped if it is the network, broadcast or server ("local") address or
already leased.  ocserv's optional ping probe (``ping-leases``) is not done here.
"""

from __future__ import annotations

import hashlib
import logging
import random
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

__all__ = ["Ipv4LeasePool", "Ipv6LeasePool", "LeaseError", "username_seed"]

MAX_TRIES = 16  # ocserv MAX_IP_TRIES
FIXED_TRIES = 5  # ocserv FIXED_IPS: candidates 2..6 come from the SHA-1 chain
SCAN_LIMIT = 1 << 16  # IPv6 pools with more subnets are never walked linearly

_M32 = 0xFFFFFFFF
_A = TypeVar("_A", IPv4Address, IPv6Address)


class LeaseError(Exception):
    """No address can be given (pool exhausted, explicit address unusable, …)."""


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def _lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` (public domain), as ocserv's ``hash_any``.

    The tail is zero-padded to 12 bytes, which is what the reference code's partial-word
    masks amount to on a little-endian machine.
    """
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _M32
    off = 0
    while length - off > 12:
        x, y, z = struct.unpack_from("<3I", data, off)
        a = (a + x) & _M32
        b = (b + y) & _M32
        c = (c + z) & _M32
        # mix(a, b, c)
        a = ((a - c) & _M32) ^ _rot(c, 4)
        c = (c + b) & _M32
        b = ((b - a) & _M32) ^ _rot(a, 6)
        a = (a + c) & _M32
        c = ((c - b) & _M32) ^ _rot(b, 8)
        b = (b + a) & _M32
        a = ((a - c) & _M32) ^ _rot(c, 16)
        c = (c + b) & _M32
        b = ((b - a) & _M32) ^ _rot(a, 19)
        a = (a + c) & _M32
        c = ((c - b) & _M32) ^ _rot(b, 4)
        b = (b + a) & _M32
        off += 12
    tail = data[off:]
    if not tail:
        return c
    x, y, z = struct.unpack("<3I", tail.ljust(12, b"\0"))
    a = (a + x) & _M32
    b = (b + y) & _M32
    c = (c + z) & _M32
    # final(a, b, c)
    c = ((c ^ b) - _rot(b, 14)) & _M32
    a = ((a ^ c) - _rot(c, 11)) & _M32
    b = ((b ^ a) - _rot(a, 25)) & _M32
    c = ((c ^ b) - _rot(b, 16)) & _M32
    a = ((a ^ c) - _rot(c, 4)) & _M32
    b = ((b ^ a) - _rot(a, 14)) & _M32
    c = ((c ^ b) - _rot(b, 24)) & _M32
    return c


def username_seed(username: str) -> bytes:
    """The 4 seed bytes ocserv derives from a username (``ipv4_seed`` in its IPC)."""
    return struct.pack("<I", _lookup3(username.encode("utf-8")))


def _coerce(kind: type[_A], value: object) -> _A:
    """Per-user config may hand us text; a bad explicit address is a lease failure."""
    if isinstance(value, kind):
        return value
    try:
        return kind(str(value))
    except ValueError as exc:
        raise LeaseError(f"bad explicit address {value!r}") from exc


def _sha1_prefix(data: bytes, size: int) -> bytes:
    return hashlib.sha1(data, usedforsecurity=False).digest()[:size]


class _SessionLeases(Generic[_A]):
    """What both pools share: a lease per session id, movable to another id."""

    _by_session: dict[str, _A]

    def _take(self, session_id: str, addr: _A) -> _A:  # pragma: no cover - each pool's own
        raise NotImplementedError

    def transfer(self, old_session: str, new_session: str) -> _A | None:
        """Move a lease to another session id (session take-over under a new key)."""
        if old_session == new_session:
            return self._by_session.get(old_session)
        addr = self._by_session.get(old_session)
        if addr is None:
            return None
        if new_session in self._by_session:
            raise LeaseError("the new session already holds a lease")
        del self._by_session[old_session]
        return self._take(new_session, addr)


class Ipv4LeasePool(_SessionLeases[IPv4Address]):
    """Leases of one IPv4 pool (``ipv4-network``); the server keeps one per distinct pool."""

    def __init__(
        self,
        network: IPv4Network,
        *,
        predictable: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self._net = network
        self._predictable = predictable
        self._rng = rng if rng is not None else random.SystemRandom()
        self._base = int(network.network_address)
        self._hostmask = int(network.hostmask)
        self._broadcast = int(network.broadcast_address)
        self._local = IPv4Address(self._base | 1)
        self._by_session: dict[str, IPv4Address] = {}
        self._by_addr: dict[IPv4Address, str] = {}

    @property
    def network(self) -> IPv4Network:
        return self._net

    @property
    def netmask(self) -> IPv4Address:
        """What X-CSTP-Netmask advertises: the pool's mask (§8.2)."""
        return self._net.netmask

    @property
    def local_address(self) -> IPv4Address:
        """The server's P-t-P address on every tun: network address + 1."""
        return self._local

    @property
    def capacity(self) -> int:
        """Addresses a client can get: all but network, broadcast and local."""
        return max(self._net.num_addresses - 3, 0)

    def in_use(self) -> int:
        return len(self._by_session)

    def holder(self, addr: IPv4Address) -> str | None:
        return self._by_addr.get(addr)

    def address_of(self, session_id: str) -> IPv4Address | None:
        return self._by_session.get(session_id)

    def _usable(self, addr: IPv4Address) -> bool:
        value = int(addr)
        return (
            value != self._base
            and value != self._broadcast
            and addr != self._local
            and addr in self._net
            and addr not in self._by_addr
        )

    def _candidate(self, raw: bytes) -> IPv4Address:
        return IPv4Address(self._base | (int.from_bytes(raw, "big") & self._hostmask))

    def candidates(self, username: str) -> Iterator[IPv4Address]:
        """ocserv's 16 candidate addresses for this user, lazily (random ones use ``rng``)."""
        seed = username_seed(username) if self._predictable else self._rng.randbytes(4)
        current = self._candidate(seed)
        for attempt in range(MAX_TRIES):
            if attempt == 0:
                pass
            elif attempt <= FIXED_TRIES:
                current = self._candidate(_sha1_prefix(current.packed, 4))
            else:
                current = self._candidate(self._rng.randbytes(4))
            yield current

    def _take(self, session_id: str, addr: IPv4Address) -> IPv4Address:
        self._by_session[session_id] = addr
        self._by_addr[addr] = session_id
        return addr

    def acquire(
        self, session_id: str, username: str, explicit: IPv4Address | None = None
    ) -> IPv4Address:
        """The session's address: the one it holds, else a new lease.

        An ``explicit`` address (per-user ``explicit-ipv4``) must lie in this pool and be
        free; a session that already holds a lease keeps it even if the explicit address
        changed meanwhile, because a client cannot survive a changed address.
        """
        held = self._by_session.get(session_id)
        if held is not None:
            return held
        if explicit is not None:
            explicit = _coerce(IPv4Address, explicit)
            if not self._usable(explicit):
                raise LeaseError(f"explicit address {explicit} is unusable or taken")
            return self._take(session_id, explicit)
        for addr in self.candidates(username):
            if self._usable(addr):
                return self._take(session_id, addr)
        for value in range(self._base + 2, self._broadcast):
            addr = IPv4Address(value)
            if self._usable(addr):
                log.debug("pool %s: candidates exhausted, linear scan found a lease", self._net)
                return self._take(session_id, addr)
        raise LeaseError(f"IPv4 pool {self._net} is exhausted")

    def release(self, session_id: str) -> IPv4Address | None:
        """Free the session's lease (idempotent); returns the address it had."""
        addr = self._by_session.pop(session_id, None)
        if addr is not None:
            del self._by_addr[addr]
        return addr



class Ipv6LeasePool(_SessionLeases[IPv6Address]):
    """Leases of ``ipv6-network`` in subnets of ``ipv6-subnet-prefix`` bits (§8.2).

    Candidates as ocserv: #1 is the first 16 bytes of SHA-1 of the username seed, #2-6
    a SHA-1 chain (only 20 bytes are available, so the chain hashes the 16 address bytes
    and keeps 16), then random.  Uniqueness is per client subnet.  The client is told an
    address inside its subnet plus the subnet prefix (X-CSTP-Address-IP6: addr/prefix).
    """

    def __init__(
        self,
        network: IPv6Network,
        subnet_prefix: int = 128,
        *,
        predictable: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if not network.prefixlen < subnet_prefix <= 128:
            raise ValueError(
                f"subnet prefix {subnet_prefix} must be longer than /{network.prefixlen}"
            )
        self._net = network
        self._sub = subnet_prefix
        self._predictable = predictable
        self._rng = rng if rng is not None else random.SystemRandom()
        self._base = int(network.network_address)
        self._hostmask = int(network.hostmask)
        self._submask = ((1 << 128) - 1) ^ ((1 << (128 - subnet_prefix)) - 1)
        self._local = IPv6Address(self._base | 1)
        self._by_session: dict[str, IPv6Address] = {}
        self._by_subnet: dict[int, str] = {}

    @property
    def network(self) -> IPv6Network:
        return self._net

    @property
    def subnet_prefix(self) -> int:
        return self._sub

    @property
    def local_address(self) -> IPv6Address:
        return self._local

    def in_use(self) -> int:
        return len(self._by_session)

    def holder(self, addr: IPv6Address) -> str | None:
        return self._by_subnet.get(int(addr) & self._submask)

    def address_of(self, session_id: str) -> IPv6Address | None:
        return self._by_session.get(session_id)

    def _usable(self, addr: IPv6Address) -> bool:
        # ocserv refuses the network's own subnet (the server's tun address lives there);
        # with /128 subnets that alone would still hand out network::1, so the server's
        # address is refused explicitly as well
        subnet = int(addr) & self._submask
        return (
            addr in self._net
            and subnet != self._base
            and subnet != int(self._local) & self._submask
            and subnet not in self._by_subnet
        )

    def _scan(self) -> Iterator[IPv6Address]:
        """An address in every subnet, for pools small enough to walk (else nothing).

        ocserv gives up after its 16 candidates; a nearly full small pool would then
        refuse clients although subnets are free, so small pools are walked instead.
        """
        subnets = 1 << (self._sub - self._net.prefixlen)
        if subnets > SCAN_LIMIT:
            return
        step = 1 << (128 - self._sub)
        host = 1 if step > 1 else 0  # not a subnet's all-zero (router anycast) address
        for index in range(subnets):
            yield IPv6Address(self._base + index * step + host)

    def _candidate(self, raw: bytes) -> IPv6Address:
        return IPv6Address(self._base | (int.from_bytes(raw, "big") & self._hostmask))

    def _take(self, session_id: str, addr: IPv6Address) -> IPv6Address:
        self._by_session[session_id] = addr
        self._by_subnet[int(addr) & self._submask] = session_id
        return addr

    def acquire(
        self, session_id: str, username: str, explicit: IPv6Address | None = None
    ) -> IPv6Address:
        held = self._by_session.get(session_id)
        if held is not None:
            return held
        if explicit is not None:
            explicit = _coerce(IPv6Address, explicit)
            if not self._usable(explicit):
                raise LeaseError(f"explicit address {explicit} is unusable or taken")
            return self._take(session_id, explicit)
        seed = username_seed(username) if self._predictable else self._rng.randbytes(4)
        current = self._candidate(_sha1_prefix(seed, 16))
        for attempt in range(MAX_TRIES):
            if attempt == 0:
                pass
            elif attempt <= FIXED_TRIES:
                current = self._candidate(_sha1_prefix(current.packed, 16))
            else:
                current = self._candidate(self._rng.randbytes(16))
            if self._usable(current):
                return self._take(session_id, current)
        for addr in self._scan():
            if self._usable(addr):
                log.debug("pool %s: candidates exhausted, linear scan found a lease", self._net)
                return self._take(session_id, addr)
        raise LeaseError(f"IPv6 pool {self._net} has no free /{self._sub}")

    def release(self, session_id: str) -> IPv6Address | None:
        addr = self._by_session.pop(session_id, None)
        if addr is not None:
            del self._by_subnet[int(addr) & self._submask]
        return addr
