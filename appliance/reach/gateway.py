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


def source_address(gateway: ipaddress.IPv4Address, port: int) -> ipaddress.IPv4Address:
    """Our own address on the way to ``gateway`` (PCP puts it in every request)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((str(gateway), port))
        return ipaddress.IPv4Address(sock.getsockname()[0])


def exchange(gateway: ipaddress.IPv4Address, port: int, request: bytes,
             accept: Callable[[bytes], bool], *, tries: int = 4,
             first_wait: float = 0.25) -> bytes:
    """Send ``request`` until a datagram from the gateway satisfies ``accept``.

    Datagrams from other sources, or that ``accept`` rejects (a late answer to an earlier
    request, garbage), are dropped and the wait goes on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
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
