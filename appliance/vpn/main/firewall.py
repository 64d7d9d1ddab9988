"""restrict-user-to-routes / restrict-user-to-ports, as ocserv's ocserv-fw does, in nftables.

The VPN server filters nothing itself; the host's firewall does. For a user with
restrictions main installs two base chains in table ``inet ocgate_fw`` that only look at
packets coming in from that user's TUN, and deletes them when the session ends. Building the
ruleset is pure (and tested as text); applying it is one ``nft -f -`` call.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

TABLE = "ocgate_fw"
_PORT_ITEM = re.compile(r"^(tcp|udp|sctp|icmp|icmpv6)\(\s*(\d*)\s*\)$")
_DEVICE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


class FirewallError(ValueError):
    """A restriction that cannot be expressed, or nft refused the rules."""


@dataclass(frozen=True)
class PortRule:
    proto: str
    port: int | None  # None: the whole protocol (e.g. icmp())


@dataclass(frozen=True)
class PortPolicy:
    rules: tuple[PortRule, ...]
    deny: bool  # "!(...)": everything but these; otherwise only these


def parse_ports(value: str) -> PortPolicy:
    """ocserv's syntax: ``tcp(443), udp(53), icmp()`` or ``!(tcp(22), udp(53))``."""
    text = value.strip()
    deny = text.startswith("!")
    if deny:
        text = text[1:].strip()
        if not (text.startswith("(") and text.endswith(")")):
            raise FirewallError(f"bad port list {value!r}: expected !(proto(port), ...)")
        text = text[1:-1]
    rules = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        m = _PORT_ITEM.match(item.replace(" ", ""))
        if not m:
            raise FirewallError(f"bad port item {item!r}")
        port = int(m.group(2)) if m.group(2) else None
        if port is not None and not 0 < port < 65536:
            raise FirewallError(f"bad port {port}")
        rules.append(PortRule(m.group(1), port))
    if not rules:
        raise FirewallError(f"empty port list {value!r}")
    return PortPolicy(tuple(rules), deny)


def _match(rule: PortRule) -> str:
    if rule.proto in ("icmp", "icmpv6"):
        return f"meta l4proto {'ipv6-icmp' if rule.proto == 'icmpv6' else 'icmp'}"
    return f"{rule.proto} dport {rule.port}" if rule.port else f"meta l4proto {rule.proto}"


def ruleset(device: str, routes: list[str], dns: list[str], restrict_routes: bool,
            ports: PortPolicy | None) -> str:
    """nft commands for one user's TUN (an empty string: nothing to restrict)."""
    if not _DEVICE.match(device):
        raise FirewallError(f"bad device name {device!r}")
    if not restrict_routes and ports is None:
        return ""
    body = [f'iifname != "{device}" return']
    if restrict_routes:
        nets = [ipaddress.ip_network(r, strict=False) for r in routes]
        nets += [ipaddress.ip_network(d) for d in dns]  # name servers stay reachable
        for family, tag in ((4, "ip"), (6, "ip6")):
            allowed = [str(n) for n in nets if n.version == family]
            if allowed:
                body.append(f"{tag} daddr != {{ {', '.join(allowed)} }} drop")
            else:
                body.append(f"meta nfproto {'ipv4' if family == 4 else 'ipv6'} drop")
    if ports is not None:
        verdict = "drop" if ports.deny else "accept"
        body += [f"{_match(rule)} {verdict}" for rule in ports.rules]
        if not ports.deny:
            body.append("drop")
    lines = [f"add table inet {TABLE}"]
    for hook in ("forward", "input"):
        chain = f"{hook}_{device}"
        lines.append(f"add chain inet {TABLE} {chain} "
                     f"{{ type filter hook {hook} priority 0; policy accept; }}")
        lines.append(f"flush chain inet {TABLE} {chain}")
        lines += [f"add rule inet {TABLE} {chain} {rule}" for rule in body]
    return "\n".join(lines) + "\n"


def removal(device: str) -> str:
    if not _DEVICE.match(device):
        raise FirewallError(f"bad device name {device!r}")
    return "".join(f"delete chain inet {TABLE} {hook}_{device}\n" for hook in ("forward", "input"))


def apply(commands: str) -> None:
    if not commands:
        return
    try:
        done = subprocess.run(["nft", "-f", "-"], input=commands, text=True,
                              capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirewallError(f"nft failed: {exc}") from None
    if done.returncode != 0:
        raise FirewallError(f"nft refused the rules: {done.stderr.strip()}")
