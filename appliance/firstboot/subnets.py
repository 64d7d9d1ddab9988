"""Choosing the VPN address pool: collide with nothing here, and little out there.

A pool that overlaps a network the device routes breaks the device; one that overlaps the
network a *client* sits in (a hotel, a friend's router, a phone hotspot) breaks that
client.  We cannot see the client's networks, so, like PiVPN, we avoid the ranges that
home routers, ISPs, phones, virtual machines, containers and clouds use by default, and
then skip everything this device has on a link or in a routing table.

Automatic candidates are /24s in 10.73.0.0-10.79.255.0 (in that order): no router vendor,
container runtime, hypervisor or cloud default we know of lives there, unlike 10.0-10.15,
10.42/10.43 (k3s), 10.88/10.89 (podman), 10.96+ (Kubernetes services, GCP), 10.8 and 10.6
(OpenVPN and PiVPN/WireGuard defaults) or 10.244 (flannel).  A user may pick any private
range (RFC 1918) or carrier-grade NAT space (100.64.0.0/10, RFC 6598) as long as it
overlaps nothing on the device; CGNAT space is refused when the device's own uplink uses
it, and a pick inside a well-known default range is accepted with a warning.

The functions are pure: the occupied networks come in as a list.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .network import CGNAT, IPNetwork

V4 = ipaddress.IPv4Network
V6 = ipaddress.IPv6Network

MIN_POOL_PREFIX = 16  # a /16 is 65534 clients: anything bigger is a typo
MAX_POOL_PREFIX = 29  # 5 usable client addresses after network/broadcast/server
ULA = V6("fc00::/7")
ULA_LOCAL = V6("fd00::/8")  # the locally assigned half, RFC 4193 §3.2

#: (network, why it is avoided): consulted for automatic choices and for warnings.
COMMON_RANGES: tuple[tuple[V4, str], ...] = tuple((V4(net), why) for net, why in (
    ("192.168.0.0/16", _l("home routers and Docker networks")),
    ("10.0.0.0/12", _l("home routers, ISP boxes and company networks")),
    ("10.6.0.0/24", _l("PiVPN's WireGuard default")),
    ("10.8.0.0/24", _l("the OpenVPN and wg-easy default")),
    ("10.42.0.0/15", "k3s"),
    ("10.88.0.0/15", "podman"),
    ("10.96.0.0/12", _l("Kubernetes services")),
    ("10.128.0.0/9", _l("Google Cloud and Kubernetes pods")),
    ("10.244.0.0/16", _l("Kubernetes (flannel) pods")),
    ("172.16.0.0/16", _l("routers and company networks")),
    ("172.17.0.0/16", "Docker"),
    ("172.18.0.0/15", "Docker"),
    ("172.20.0.0/14", _l("Docker and iPhone hotspots")),
    ("172.24.0.0/13", "Docker"),
    ("100.64.0.0/10", _l("carrier-grade NAT (mobile and fibre ISPs) and Tailscale")),
))


class SubnetError(ValueError):
    """A pool the user typed that cannot work; the message is shown as it is."""


class NoFreeSubnetError(SubnetError):
    """Every automatic candidate is in use on this device."""


@dataclass(frozen=True)
class SubnetPolicy:
    """Where automatic pools come from and which ranges a user may type."""

    name: str
    candidate_blocks: tuple[V4, ...]
    pool_prefix: int
    allowed: tuple[V4, ...]
    avoid: tuple[tuple[V4, str], ...] = ()
    allowed_v6: tuple[V6, ...] = (ULA,)
    allowed_text: str = _l("a private range (10.x, 172.16-31.x, 192.168.x) or "
                           "100.64.0.0/10")

    def candidates(self) -> Iterator[V4]:
        """Automatic pools in order of preference."""
        for block in self.candidate_blocks:
            for net in block.subnets(new_prefix=max(self.pool_prefix, block.prefixlen)):
                if not any(net.overlaps(avoided) for avoided, _why in self.avoid):
                    yield net


HOME_POLICY = SubnetPolicy(
    name="home",
    candidate_blocks=tuple(V4(f"10.{n}.0.0/16") for n in range(73, 80)),
    pool_prefix=24,
    allowed=(V4("10.0.0.0/8"), V4("172.16.0.0/12"), V4("192.168.0.0/16"), CGNAT),
    avoid=COMMON_RANGES,
)

#: For tests and demos inside network namespaces: two RFC 5737 documentation ranges only, so
#: no private address is ever configured anywhere (192.0.2.0/24, the third, is left out: build
#: machines use it, and a demo must not shadow their own network).
DOCUMENTATION_POLICY = SubnetPolicy(
    name="documentation",
    candidate_blocks=(V4("203.0.113.0/24"), V4("198.51.100.128/25")),
    pool_prefix=26,
    allowed=(V4("198.51.100.0/24"), V4("203.0.113.0/24")),
    allowed_v6=(V6("2001:db8::/32"),),
    allowed_text=_l("a documentation range (198.51.100.0/24, 203.0.113.0/24)"),
)

POLICIES = {p.name: p for p in (HOME_POLICY, DOCUMENTATION_POLICY)}


def _v4(occupied: Iterable[IPNetwork]) -> list[V4]:
    return [n for n in occupied if isinstance(n, V4)]


def conflicts(net: IPNetwork, occupied: Iterable[IPNetwork]) -> list[IPNetwork]:
    """The occupied networks ``net`` overlaps (same address family only)."""
    return [o for o in occupied if o.version == net.version and net.overlaps(o)]


def choose_subnet(occupied: Sequence[IPNetwork], policy: SubnetPolicy = HOME_POLICY) -> V4:
    """First candidate of ``policy`` that overlaps nothing in ``occupied``."""
    used = _v4(occupied)
    for net in policy.candidates():
        if not conflicts(net, used):
            return net
    raise NoFreeSubnetError(_("Every automatic VPN subnet is already in use on this device; "
                              "enter one yourself."))


def check_subnet(text: str, occupied: Sequence[IPNetwork],
                 policy: SubnetPolicy = HOME_POLICY, *,
                 uplink_in_cgnat: bool = False) -> tuple[V4, list[str]]:
    """Validate a pool typed by the user: (network, warnings) or :class:`SubnetError`."""
    text = text.strip()
    if "/" not in text:
        raise SubnetError(_("'%(text)s' needs a prefix length, e.g. 10.73.0.0/24.", text=text))
    try:
        net = V4(text, strict=False)
    except ValueError:
        raise SubnetError(_("'%(text)s' is not an IPv4 network like 10.73.0.0/24.",
                            text=text)) from None
    if net.prefixlen < MIN_POOL_PREFIX:
        raise SubnetError(_("Use a prefix between /%(min)d and /%(max)d (/%(len)d is too big).",
                            min=MIN_POOL_PREFIX, max=MAX_POOL_PREFIX, len=net.prefixlen))
    if net.prefixlen > MAX_POOL_PREFIX:
        raise SubnetError(_("Use a prefix between /%(min)d and /%(max)d (/%(len)d is too "
                            "small).", min=MIN_POOL_PREFIX, max=MAX_POOL_PREFIX,
                            len=net.prefixlen))
    if not any(net.subnet_of(allowed) for allowed in policy.allowed):
        raise SubnetError(_("%(net)s is not %(allowed)s; public addresses would hide real "
                            "Internet hosts from VPN clients.", net=net,
                            allowed=policy.allowed_text))
    if net.subnet_of(CGNAT) and uplink_in_cgnat:
        raise SubnetError(_("%(net)s is carrier-grade NAT space and this device's Internet "
                            "connection uses it; pick a private range instead.", net=net))
    hits = conflicts(net, _v4(occupied))
    if hits:
        listed = ", ".join(str(h) for h in hits[:3])
        raise SubnetError(_("%(net)s overlaps %(list)s, which this device already uses.",
                            net=net, list=listed))
    warnings = [_("%(net)s is inside %(range)s, used by %(why)s: clients on such networks "
                  "will not reach the VPN subnet.", net=net, range=avoided, why=why)
                for avoided, why in policy.avoid if net.overlaps(avoided)]
    return net, warnings


def random_ula(randbits: int | None = None) -> tuple[V6, V6]:
    """RFC 4193 §3.2: fd00::/8 + a random 40-bit Global ID = a /48; its first /64 is the pool.

    ``randbits`` (40 bits) can be passed for tests; the default comes from ``secrets``.
    """
    global_id = secrets.randbits(40) if randbits is None else randbits & ((1 << 40) - 1)
    prefix48 = V6((int(ULA_LOCAL.network_address) | (global_id << 80), 48))
    return prefix48, next(prefix48.subnets(new_prefix=64))


def check_ipv6_pool(text: str, occupied: Sequence[IPNetwork],
                    policy: SubnetPolicy = HOME_POLICY) -> V6:
    """Validate an IPv6 pool typed by the user (ULA /48 to /64, free on this device)."""
    try:
        net = V6(text.strip(), strict=False)
    except ValueError:
        raise SubnetError(_("'%(text)s' is not an IPv6 network like fd12:3456:789a::/64.",
                            text=text.strip())) from None
    if not 48 <= net.prefixlen <= 64:
        raise SubnetError(_("The IPv6 subnet must be between /48 and /64."))
    if not any(net.subnet_of(allowed) for allowed in policy.allowed_v6):
        allowed = ", ".join(str(a) for a in policy.allowed_v6)
        raise SubnetError(_("%(net)s is not a unique local address range (%(allowed)s).",
                            net=net, allowed=allowed))
    hits = conflicts(net, occupied)
    if hits:
        raise SubnetError(_("%(net)s overlaps %(list)s, which this device already uses.",
                            net=net, list=hits[0]))
    return net


def propose_ipv6(occupied: Sequence[IPNetwork], policy: SubnetPolicy = HOME_POLICY,
                 randbits: Callable[[int], int] = secrets.randbits) -> V6:
    """A free /64 for the optional IPv6 pool: a fresh RFC 4193 ULA under the home policy."""
    base = policy.allowed_v6[0]
    for _attempt in range(16):
        if base == ULA:
            _prefix48, pool = random_ula(randbits(40))
        else:
            spare = 64 - base.prefixlen
            offset = randbits(spare) if spare > 0 else 0
            pool = V6((int(base.network_address) | (offset << 64), 64))
        if not conflicts(pool, occupied):
            return pool
    raise NoFreeSubnetError("no free IPv6 /64 found; enter one yourself")
