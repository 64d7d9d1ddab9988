"""What the device can see of its network: addresses, routes, gateway, resolvers.

The wizard needs it to propose a server address and certificate names, to pick a VPN
subnet that collides with nothing, and to tell the user honestly whether the device is
reachable from the Internet.  Detection is local only: ``ip -j`` (iproute2's JSON output)
and /etc/resolv.conf.  The device never asks an Internet service for its public address;
it knows one only when an interface carries it, and says so otherwise.

The parsers are pure (text in, records out) and raise :class:`NetworkParseError` on
anything malformed, so hostile or surprising ``ip`` output cannot crash the wizard.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

#: Routes shorter than this are "default-like" (OpenVPN's 0.0.0.0/1 + 128.0.0.0/1 trick):
#: treating them as occupied would leave no subnet at all.
MIN_OCCUPYING_PREFIX = {4: 8, 6: 16}
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_IGNORED_ROUTE_TYPES = frozenset({"broadcast", "multicast", "anycast", "throw"})

Runner = Callable[[Sequence[str]], str]


class NetworkParseError(ValueError):
    """``ip -j`` output or resolv.conf text that does not have the expected shape."""


@dataclass(frozen=True)
class InterfaceAddress:
    """One address on one interface, as ``ip -j addr`` lists it."""

    ifname: str
    interface: IPInterface  # address with its prefix (the on-link network)
    scope: str = "global"
    loopback: bool = False

    @property
    def address(self) -> IPAddress:
        return self.interface.ip

    @property
    def network(self) -> IPNetwork:
        return self.interface.network


@dataclass(frozen=True)
class Route:
    """One routing table entry; ``destination`` None means a default route."""

    destination: IPNetwork | None
    gateway: IPAddress | None = None
    dev: str | None = None
    table: str = "main"
    type: str = "unicast"


@dataclass
class NetworkInfo:
    """Everything detected, plus derived answers the wizard pages show."""

    addresses: list[InterfaceAddress] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    resolvers: list[IPAddress] = field(default_factory=list)
    hostname: str = "ocgate"
    errors: list[str] = field(default_factory=list)

    @property
    def lan_addresses(self) -> list[InterfaceAddress]:
        """Global-scope addresses on real interfaces (not loopback, not link-local)."""
        return [a for a in self.addresses
                if not a.loopback and a.scope == "global" and not a.address.is_link_local]

    @property
    def lan_networks(self) -> list[IPNetwork]:
        nets: list[IPNetwork] = []
        for a in self.lan_addresses:
            if a.network.prefixlen < a.network.max_prefixlen and a.network not in nets:
                nets.append(a.network)
        return nets

    @property
    def default_routes(self) -> list[Route]:
        return [r for r in self.routes if r.destination is None and r.type == "unicast"
                and r.table in ("main", "default")]

    @property
    def default_gateway(self) -> IPAddress | None:
        v4 = [r for r in self.default_routes if r.gateway and r.gateway.version == 4]
        any_gw = v4 or [r for r in self.default_routes if r.gateway]
        return any_gw[0].gateway if any_gw else None

    @property
    def default_interface(self) -> str | None:
        routes = self.default_routes
        return routes[0].dev if routes else None

    @property
    def online(self) -> bool:
        """A default route exists; without one nothing on the Internet can be reached."""
        return bool(self.default_routes)

    @property
    def public_addresses(self) -> list[IPAddress]:
        """Addresses on our own interfaces that the Internet can route to us."""
        return [a.address for a in self.lan_addresses if a.address.is_global]

    @property
    def behind_cgnat(self) -> bool:
        gw = self.default_gateway
        return any(a.address in CGNAT for a in self.lan_addresses if a.address.version == 4) \
            or (gw is not None and gw.version == 4 and gw in CGNAT)

    @property
    def primary_address(self) -> IPAddress | None:
        """The LAN address users on the LAN should type: on the default interface first."""
        dev = self.default_interface
        ordered = sorted(self.lan_addresses,
                         key=lambda a: (a.ifname != dev, a.address.version != 4))
        return ordered[0].address if ordered else None

    def occupied(self) -> list[IPNetwork]:
        """Every network a VPN pool must not overlap: on-link networks and routes."""
        nets: list[IPNetwork] = []

        def add(net: IPNetwork) -> None:
            if net.prefixlen >= MIN_OCCUPYING_PREFIX[net.version] and net not in nets:
                nets.append(net)

        for a in self.addresses:
            add(a.network)
            add(ipaddress.ip_network(a.address))
        for r in self.routes:
            if r.destination is not None and r.type not in _IGNORED_ROUTE_TYPES:
                add(r.destination)
            if r.gateway is not None:
                add(ipaddress.ip_network(r.gateway))
        return nets


# --------------------------------------------------------------------------- parsers


def _load_json_list(text: str, what: str) -> list[Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise NetworkParseError(f"{what}: not JSON ({exc})") from None
    if not isinstance(data, list):
        raise NetworkParseError(f"{what}: expected a JSON list")
    return data


def _string(entry: dict[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        raise NetworkParseError(f"{what}: '{key}' missing or not a string")
    return value


def parse_ip_addr(text: str) -> list[InterfaceAddress]:
    """Parse ``ip -j addr show``."""
    result: list[InterfaceAddress] = []
    for link in _load_json_list(text, "ip addr"):
        if not isinstance(link, dict):
            raise NetworkParseError("ip addr: link entry is not an object")
        ifname = _string(link, "ifname", "ip addr")
        flags = link.get("flags", [])
        loopback = (isinstance(flags, list) and "LOOPBACK" in flags) or \
            link.get("link_type") == "loopback"
        infos = link.get("addr_info", [])
        if not isinstance(infos, list):
            raise NetworkParseError(f"ip addr: addr_info of {ifname!r} is not a list")
        for info in infos:
            if not isinstance(info, dict):
                raise NetworkParseError(f"ip addr: address of {ifname!r} is not an object")
            if info.get("family") not in ("inet", "inet6"):
                continue
            local = _string(info, "local", "ip addr")
            prefix = info.get("prefixlen")
            if not isinstance(prefix, int) or isinstance(prefix, bool):
                raise NetworkParseError(f"ip addr: bad prefixlen for {local!r}")
            try:
                iface = ipaddress.ip_interface(f"{local}/{prefix}")
            except ValueError:
                raise NetworkParseError(f"ip addr: bad address {local!r}/{prefix!r}") from None
            scope = info.get("scope", "global")
            result.append(InterfaceAddress(ifname, iface, scope if isinstance(scope, str)
                                           else "global", loopback))
    return result


def _destination(dst: str) -> IPNetwork | None:
    if dst == "default":
        return None
    try:
        return ipaddress.ip_network(dst, strict=False)
    except ValueError:
        raise NetworkParseError(f"ip route: bad destination {dst!r}") from None


def parse_ip_route(text: str) -> list[Route]:
    """Parse ``ip -j route show table all`` (IPv4 or IPv6)."""
    routes: list[Route] = []
    for entry in _load_json_list(text, "ip route"):
        if not isinstance(entry, dict):
            raise NetworkParseError("ip route: entry is not an object")
        dst = _destination(_string(entry, "dst", "ip route"))
        gateway: IPAddress | None = None
        if "gateway" in entry:
            try:
                gateway = ipaddress.ip_address(_string(entry, "gateway", "ip route"))
            except ValueError:
                raise NetworkParseError(f"ip route: bad gateway {entry['gateway']!r}") from None
        dev = entry.get("dev")
        routes.append(Route(
            destination=dst,
            gateway=gateway,
            dev=dev if isinstance(dev, str) else None,
            table=_string(entry, "table", "ip route", "main"),
            type=_string(entry, "type", "ip route", "unicast"),
        ))
    return routes


def parse_resolv_conf(text: str) -> list[IPAddress]:
    """``nameserver`` lines; zone ids and garbage are skipped, loopback stubs kept."""
    servers: list[IPAddress] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                addr = ipaddress.ip_address(words[1].split("%", 1)[0])
            except ValueError:
                continue
            if addr not in servers:
                servers.append(addr)
    return servers


# --------------------------------------------------------------------------- detection


def run_command(argv: Sequence[str]) -> str:
    """Default runner: stdout of a short local command, or an error naming it."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    if proc.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def suggest_hostname(raw: str) -> str:
    """A DNS label for the device: the system hostname when usable, else 'ocgate'."""
    label = raw.split(".", 1)[0].strip().lower()
    if not label or label in ("localhost", "debian", "raspberrypi", "(none)") or \
            not all(ch.isalnum() or ch == "-" for ch in label) or len(label) > 63 or \
            label.startswith("-") or label.endswith("-") or not label.isascii():
        return "ocgate"
    return label


def detect_network(run: Runner = run_command,
                   resolv_conf: Path = Path("/etc/resolv.conf"),
                   hostname: str | None = None) -> NetworkInfo:
    """Detect what the current network namespace looks like; never raises.

    Each source that fails is reported in ``errors`` and leaves its part empty, so the
    wizard can still continue with manual input.
    """
    info = NetworkInfo(hostname=suggest_hostname(hostname or socket.gethostname()))
    try:
        info.addresses = parse_ip_addr(run(["ip", "-j", "addr", "show"]))
    except (OSError, subprocess.SubprocessError, NetworkParseError) as exc:
        info.errors.append(f"addresses: {exc}")
    for family in ("-4", "-6"):
        try:
            info.routes += parse_ip_route(run(["ip", "-j", family, "route", "show",
                                               "table", "all"]))
        except (OSError, subprocess.SubprocessError, NetworkParseError) as exc:
            info.errors.append(f"routes ({family}): {exc}")
    try:
        info.resolvers = parse_resolv_conf(resolv_conf.read_text(errors="replace"))
    except OSError as exc:
        info.errors.append(f"resolvers: {exc.strerror or exc}")
    for err in info.errors:
        log.warning("network detection: %s", err)
    return info


def suggest_dns(info: NetworkInfo) -> list[str]:
    """DNS for VPN clients: the LAN's resolvers reachable from the VPN, else the gateway.

    A loopback stub (127.0.0.53 of systemd-resolved) means nothing to a client; the home
    router usually answers DNS, so the default gateway is the next best guess, and the
    device's own LAN address the last one.
    """
    usable = [str(r) for r in info.resolvers if not r.is_loopback and not r.is_link_local]
    if usable:
        return usable[:3]
    gw = info.default_gateway
    if gw is not None:
        return [str(gw)]
    primary = info.primary_address
    return [str(primary)] if primary is not None else []
