"""IPv6 inside the tunnel: leases, the MTU rule and the IPv6 part of the CONNECT reply.

docs/protocol.md §8.2 (leases), §3.3 (headers), §10.5 (options), §11 item 18 (MTU).

Main and the workers each call one function of this module, so that the shared files
only carry a few lines of hooks:

* main: :class:`Ipv6Leases` hands a session its IPv6 address out of ``ipv6-network`` (or a
  per-user/group ``ipv6-network``) in subnets of ``ipv6-subnet-prefix`` bits, bound to the
  session like the IPv4 lease so a reconnect gets the same address back (§11 item 5).
  :func:`ipv6_allowed` is ocserv's rule that a data MTU below 1280 gets no IPv6 at all,
  because IPv6 needs 1280 on every link and the client OS would refuse the address.
* worker: :func:`apply_ipv6` fills the IPv6 fields of the CONNECT response the way
  ocserv's ``connect_handler`` decides them: the address goes to any client, IPv6 routes
  and DNS only to a known agent that asked for full IPv6.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, ip_address
from typing import TypedDict

from ..protocol import cstp
from .leases import Ipv6LeasePool, LeaseError

log = logging.getLogger(__name__)

__all__ = [
    "Ipv6Lease", "Ipv6Leases", "agent_kind", "apply_ipv6", "ban_key", "grant_ipv6", "ipv6_allowed",
    "occtl_ipv6", "offered_lease", "script_ipv6", "tun_ipv6",
]

IPV6_MIN_MTU = 1280  # RFC 8200 §5: every link must carry this much


@dataclass(frozen=True)
class Ipv6Lease:
    """A session's IPv6 address, the prefix it is told, and the server's tun address."""

    address: IPv6Address
    prefix: int
    local: IPv6Address

    @property
    def subnet(self) -> IPv6Network:
        """What the server routes to the client's tun: its whole subnet."""
        return IPv6Network((self.address, self.prefix), strict=False)


def ipv6_allowed(data_mtu: int) -> bool:
    """ocserv withholds IPv6 when the tunnel's data MTU is below the IPv6 minimum."""
    return data_mtu >= IPV6_MIN_MTU


class Ipv6Leases:
    """Every IPv6 pool of the server: the global one and those of per-user config files.

    Pools are keyed by (network, subnet prefix): two groups sharing a network share the
    pool, so they can never be given overlapping subnets.
    """

    def __init__(self, network: IPv6Network | None, subnet_prefix: int,
                 predictable: bool = True) -> None:
        self._default = network
        self._subnet_prefix = subnet_prefix
        self._predictable = predictable
        self._pools: dict[tuple[IPv6Network, int], Ipv6LeasePool] = {}
        self._by_session: dict[str, Ipv6LeasePool] = {}

    @classmethod
    def from_config(cls, cfg: object) -> Ipv6Leases:
        return cls(getattr(cfg, "ipv6_network", None),
                   int(getattr(cfg, "ipv6_subnet_prefix", None) or 128),
                   bool(getattr(cfg, "predictable_ips", True)))

    def _pool(self, network: IPv6Network, subnet_prefix: int) -> Ipv6LeasePool:
        key = (network, subnet_prefix)
        pool = self._pools.get(key)
        if pool is None:
            try:
                pool = Ipv6LeasePool(network, subnet_prefix, predictable=self._predictable)
            except ValueError as exc:
                raise LeaseError(str(exc)) from exc
            self._pools[key] = pool
        return pool

    def _pool_for(self, user: object) -> Ipv6LeasePool | None:
        network = getattr(user, "ipv6_network", None) or self._default
        if network is None:
            return None
        prefix = getattr(user, "ipv6_subnet_prefix", None) or self._subnet_prefix
        return self._pool(IPv6Network(str(network), strict=False), int(prefix))

    def acquire(self, session_id: str, username: str, user: object = None) -> Ipv6Lease | None:
        """The session's IPv6 lease (kept across reconnects), or None without an IPv6 pool.

        A session keeps the pool it first leased from even if the per-user file changed
        meanwhile: the client aborts for good when offered another address (§11 item 5).
        Raises LeaseError when the pool has no free subnet or ``explicit-ipv6`` is unusable,
        which refuses the connection as ocserv does.
        """
        pool = self._by_session.get(session_id) or self._pool_for(user)
        if pool is None:
            return None
        explicit = getattr(user, "explicit_ipv6", None)
        address = pool.acquire(session_id, username, explicit)
        self._by_session[session_id] = pool
        log.debug("session %s of '%s' holds IPv6 %s/%d", session_id[:8], username, address,
                  pool.subnet_prefix)
        return Ipv6Lease(address, pool.subnet_prefix, pool.local_address)

    def release(self, session_id: str) -> IPv6Address | None:
        """Free the session's lease (idempotent)."""
        pool = self._by_session.pop(session_id, None)
        return pool.release(session_id) if pool is not None else None

    def in_use(self) -> int:
        return len(self._by_session)


def offered_lease(lease: Ipv6Lease | None, data_mtu: int, username: str) -> Ipv6Lease | None:
    """The lease main puts on the tun and offers, or None when the MTU is too small.

    The lease itself is kept either way, so a later connection of the session with a
    larger MTU still gets the same address.
    """
    if lease is None:
        return None
    if not ipv6_allowed(data_mtu):
        log.info("connection MTU %d of '%s' is not sufficient for IPv6 (%d): not offering "
                 "IPv6", data_mtu, username, IPV6_MIN_MTU)
        return None
    log.info("offering IPv6 %s/%d to '%s'", lease.address, lease.prefix, username)
    return lease


class TunIpv6(TypedDict, total=False):
    """tun.configure_tun's IPv6 keyword arguments."""

    ipv6_local: IPv6Address
    ipv6_peer: IPv6Network


class GrantIpv6(TypedDict, total=False):
    """ipc.ConnectGrant's IPv6 keyword arguments."""

    ipv6: str
    ipv6_prefix: int
    ipv6_withheld: bool


class ScriptIpv6(TypedDict, total=False):
    """scripts.script_env's IPv6 keyword arguments."""

    ipv6_local: IPv6Address
    ipv6_remote: IPv6Address
    ipv6_prefix: int


def tun_ipv6(offered: Ipv6Lease | None) -> TunIpv6:
    """tun.configure_tun's IPv6 arguments: the server's address and a route to the client."""
    if offered is None:
        return {}
    return {"ipv6_local": offered.local, "ipv6_peer": offered.subnet}


def grant_ipv6(lease: Ipv6Lease | None, offered: Ipv6Lease | None) -> GrantIpv6:
    """ipc.ConnectGrant's IPv6 fields."""
    if offered is None:
        return {"ipv6_withheld": lease is not None}
    return {"ipv6": str(offered.address), "ipv6_prefix": offered.prefix}


def script_ipv6(offered: Ipv6Lease | None) -> ScriptIpv6:
    """scripts.script_env's IPV6_LOCAL / IPV6_REMOTE / IPV6_PREFIX (§8.3)."""
    if offered is None:
        return {}
    return {"ipv6_local": offered.local, "ipv6_remote": offered.address,
            "ipv6_prefix": offered.prefix}


def occtl_ipv6(offered: Ipv6Lease | None) -> dict[str, str]:
    """control.UserInfo's "IPv6" / "P-t-P IPv6" values (§9)."""
    if offered is None:
        return {}
    return {"ipv6": str(offered.address), "ptp_ipv6": str(offered.local)}


def ban_key(ip: str) -> str:
    """The ban-list key of a client address, as ocserv's ``massage_ipv6_address``.

    An IPv6 client is banned by its /64 (one host gets a whole /64 and can pick any
    address in it); an IPv4-mapped address counts as the IPv4 address it maps, so a
    dual-stack listener and an IPv4 one ban the same client alike.  Text that is no
    address is returned unchanged (the caller's own lookups then simply miss).
    """
    try:
        addr = ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(IPv6Network((addr, 64), strict=False).network_address)
    return str(addr)


def agent_kind(user_agent: str) -> str | None:
    """ocserv's user-agent classes that may get IPv6 routes and DNS (worker-http.c).

    Returns "openconnect", "anyconnect", or None for an unknown (or openconnect v3 or
    older) client.
    """
    ua = user_agent.lower()
    legacy = "open anyconnect vpn agent v"
    if ua.startswith(legacy):
        digits = ""
        for ch in ua[len(legacy):]:
            if not ch.isdigit():
                break
            digits += ch
        return "openconnect" if digits and int(digits) > 3 else None
    if ua.startswith("openconnect vpn agent"):
        return "openconnect"
    if ua.startswith(("cisco anyconnect", "anyconnect")):
        return "anyconnect"
    return None


def apply_ipv6(params: cstp.ConnectParams, creq: cstp.ConnectRequest, address: str,
               prefix: int, withheld: bool) -> None:
    """Set the IPv6 fields of a CONNECT response (§3.3) as ocserv decides them.

    ``address``/``prefix`` are the session's lease ("" when there is none) and
    ``withheld`` says main refused IPv6 for a too small MTU: then neither the address
    nor IPv6 routes or DNS are sent.  The address is sent to every client that did not
    exclude IPv6 with X-CSTP-Address-Type; IPv6 routes and DNS only to a known agent that
    sent ``X-CSTP-Full-IPv6-Capability: true``, because AnyConnect without it cannot
    handle them.
    """
    agent = agent_kind(creq.user_agent)
    params.full_ipv6 = creq.full_ipv6
    params.dns_ip6_header = agent == "anyconnect"
    params.ios_ipv6_route = creq.is_ios
    usable = creq.wants_ipv6 and not withheld
    if address and usable:
        params.ipv6_address = IPv6Address(address)
        params.ipv6_prefix = prefix
        params.ipv6_network = IPv6Network((params.ipv6_address, prefix), strict=False)
    params.ipv6_enabled = usable and creq.full_ipv6 and agent is not None
