"""Where the appliance stands, in plain words: reachable, CGNAT, double NAT, no mapping
protocol, or mapping refused, with the exact forwarding rule when the user must add one.

Ranges are listed explicitly instead of using ``ipaddress.is_private``, which also calls the
benchmarking and documentation ranges private: a router with such an address is not behind
another NAT because of it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

CGNAT = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 shared address space
PRIVATE_V4 = tuple(ipaddress.ip_network(n) for n in
                   ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"))

REACHABLE = "reachable"
CGNAT_KIND = "cgnat"
DOUBLE_NAT = "double-nat"
NO_PROTOCOL = "no-protocol"
REFUSED = "refused"


@dataclass(frozen=True)
class PortRule:
    protocol: str
    external_port: int
    internal_port: int


@dataclass(frozen=True)
class Reachability:
    kind: str
    headline: str
    explanation: str
    external_address: str = ""
    via: str = ""
    rules: tuple[PortRule, ...] = ()
    manual_rule: str = ""
    details: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reachable(self) -> bool:
        return self.kind == REACHABLE


def address_kind(address: str) -> str:
    """"cgnat", "private" or "public" for an IPv4 external address ("" when unknown)."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return ""
    if ip in CGNAT:
        return "cgnat"
    if any(ip in net for net in PRIVATE_V4) or ip.is_unspecified:
        return "private"
    return "public"


def _where(external_address: str, hop: str) -> str:
    if external_address:
        return f"The router's Internet address {external_address}"
    return f"The next router on the way out ({hop})"


def manual_rule(lan_address: str, rules: tuple[PortRule, ...]) -> str:
    parts = [f"{r.protocol.upper()} port {r.external_port} to {lan_address} port "
             f"{r.internal_port}" for r in rules]
    return "On your router, forward " + " and ".join(parts) + "."


def classify(*, lan_address: str, rules: tuple[PortRule, ...], mapped_via: str,
             external_address: str, answered: tuple[str, ...],
             failures: tuple[str, ...], upstream_hop: str = "") -> Reachability:
    """Decide the status from one mapping attempt.

    ``mapped_via`` names the protocol that holds every mapping ("" when none does);
    ``answered`` the protocols the gateway spoke at all; ``failures`` their refusals;
    ``upstream_hop`` the router after ours (hops.py), the evidence when the router keeps its
    WAN address to itself."""
    kind = address_kind(external_address)
    if kind != "public" and not mapped_via and address_kind(upstream_hop) in ("cgnat",
                                                                               "private"):
        kind, external_address = address_kind(upstream_hop), external_address or ""
        failures = (*failures, f"the router after yours is {upstream_hop}")
    rule = manual_rule(lan_address, rules)
    if kind == "cgnat":
        return Reachability(
            CGNAT_KIND, "Your Internet provider uses carrier-grade NAT",
            f"{_where(external_address, upstream_hop)} is in the shared range "
            "100.64.0.0/10: the provider puts many customers behind one public address, so "
            "no rule on your router can bring connections from the Internet to this device. "
            "The VPN works inside your home network only. Ask the provider for a public "
            "IPv4 address (often free or a small option), or use IPv6 if they offer it.",
            external_address, mapped_via, rules, "", failures)
    if kind == "private":
        return Reachability(
            DOUBLE_NAT, "Your router is behind another router (double NAT)",
            f"{_where(external_address, upstream_hop)} is a private address: another "
            "router (often the provider's box) sits between it and the Internet. Mapping on "
            "your router is not enough; forward the same ports on the outer router to your "
            "router's Internet address, or put the outer box in bridge mode.",
            external_address, mapped_via, rules, rule, failures)
    if mapped_via:
        ports = ", ".join(f"{r.protocol.upper()} {r.external_port}" for r in rules)
        return Reachability(
            REACHABLE, "Reachable from the Internet",
            f"The router forwards {ports} from {external_address or 'its Internet address'} "
            f"to this device ({mapped_via}).", external_address, mapped_via, rules, "", failures)
    if not answered:
        return Reachability(
            NO_PROTOCOL, "The router does not offer automatic port forwarding",
            "The router answered none of UPnP IGD, NAT-PMP and PCP (they may be off in its "
            "settings). Add the forwarding rule below by hand in the router's web page, or "
            "turn UPnP or NAT-PMP on there.", external_address, "", rules, rule, failures)
    return Reachability(
        REFUSED, "The router refused the port forwarding",
        f"The router speaks {', '.join(answered)} but refused: {'; '.join(failures)}. Add the "
        "forwarding rule below by hand in the router's web page.",
        external_address, "", rules, rule, failures)
