"""The default gateway and the UDP exchange NAT-PMP and PCP share (the thin socket shell).

Retransmission follows RFC 6886 section 3.1 (250 ms, doubling), cut to a few tries: a
gateway that does not answer within about four seconds does not speak the protocol.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

ROUTE_TABLE = Path("/proc/net/route")


class NoAnswer(OSError):
    """The gateway did not answer (nothing listens on the port, or the packets are dropped)."""


def default_gateway(table: Path = ROUTE_TABLE) -> ipaddress.IPv4Address | None:
    """The IPv4 default route's next hop, read from the kernel's route table."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[1] == "00000000" and int(fields[3], 16) & 2:
            return ipaddress.IPv4Address(struct.pack("<I", int(fields[2], 16)))
    return None


ROUTE6_TABLE = Path("/proc/net/ipv6_route")
#: a global unicast address to route towards (UDP connect sends nothing)
_ANY_GLOBAL6 = "2000::"


def default_gateway6(table: Path = ROUTE6_TABLE) -> ipaddress.IPv6Address | None:
    """The IPv6 default route's next hop (with its interface when link-local, as routers
    announce themselves), read from the kernel's table."""
    try:
        lines = table.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[0] != "0" * 32 or fields[1] != "00":
            continue
        hop = ipaddress.IPv6Address(bytes.fromhex(fields[4]))
        if hop.is_unspecified:
            continue
        return ipaddress.IPv6Address(f"{hop}%{fields[9]}") if hop.is_link_local else hop
    return None


def reachable6(address: ipaddress.IPv6Address) -> bool:
    """An address the Internet could reach once the router lets it: not link-local, loopback,
    multicast or unique-local (fc00::/7)."""
    return not (address.is_link_local or address.is_loopback or address.is_multicast
                or address.is_unspecified or address in ipaddress.IPv6Network("fc00::/7"))


def public_address6() -> ipaddress.IPv6Address | None:
    """Our address the kernel would use towards the IPv6 Internet, when it is one the
    Internet could reach (a pinhole for anything else is useless)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.connect((_ANY_GLOBAL6, 9))
            found = ipaddress.IPv6Address(sock.getsockname()[0].split("%")[0])
    except OSError:
        return None
    return found if reachable6(found) else None


def source_address(gateway: ipaddress.IPv4Address, port: int) -> ipaddress.IPv4Address:
    """Our own address on the way to ``gateway`` (PCP puts it in every request)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((str(gateway), port))
        return ipaddress.IPv4Address(sock.getsockname()[0])


def exchange(gateway: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int,
             request: bytes, accept: Callable[[bytes], bool], *, tries: int = 4,
             first_wait: float = 0.25, source: str = "") -> bytes:
    """Send ``request`` until a datagram from the gateway satisfies ``accept``.

    ``source`` binds our end (PCP over IPv6: the request must come from the address the
    pinhole is for, not the link-local one the kernel picks towards a link-local router).
    Datagrams from other sources, or that ``accept`` rejects (a late answer to an earlier
    request, garbage), are dropped and the wait goes on."""
    family = socket.AF_INET6 if gateway.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if source:
            sock.bind((source, 0))
        sock.connect((str(gateway), port))
        wait = first_wait
        for _ in range(tries):
            try:
                sock.send(request)
            except ConnectionRefusedError:
                raise NoAnswer(f"{gateway}:{port} refused (ICMP port unreachable)") from None
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(2048)
                except TimeoutError:
                    break
                except ConnectionRefusedError:
                    raise NoAnswer(f"{gateway}:{port} refused (ICMP port unreachable)") from None
                if accept(data):
                    return data
            wait *= 2
    raise NoAnswer(f"no answer from {gateway}:{port} after {tries} tries")
