"""NAT-PMP (RFC 6886) messages: bytes in, dataclasses out; no sockets here.

A client sends requests to the default gateway's UDP port 5351.  Every response carries the
gateway's "seconds since start of epoch": when it goes backwards the gateway has rebooted
(or lost its table) and every mapping must be requested again (RFC 6886 section 3.6).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

PORT = 5351
VERSION = 0
OP_EXTERNAL_ADDRESS = 0
OP_MAP_UDP = 1
OP_MAP_TCP = 2
RESPONSE_BIT = 0x80

RESULTS = {
    0: "success",
    1: "unsupported version",
    2: "not authorized / refused",
    3: "network failure",
    4: "out of resources",
    5: "unsupported opcode",
}


class NatPmpError(ValueError):
    """A datagram that is not a well-formed NAT-PMP response."""


@dataclass(frozen=True)
class ExternalAddress:
    result: int
    epoch: int
    address: ipaddress.IPv4Address


@dataclass(frozen=True)
class MapResult:
    protocol: str  # "udp" | "tcp"
    result: int
    epoch: int
    internal_port: int
    external_port: int
    lifetime: int


def _opcode(protocol: str) -> int:
    if protocol == "udp":
        return OP_MAP_UDP
    if protocol == "tcp":
        return OP_MAP_TCP
    raise ValueError(f"protocol must be 'udp' or 'tcp', not {protocol!r}")


def encode_external_address_request() -> bytes:
    return bytes((VERSION, OP_EXTERNAL_ADDRESS))


def encode_map_request(protocol: str, internal_port: int, external_port: int,
                       lifetime: int) -> bytes:
    """A mapping request; ``lifetime`` 0 with ``external_port`` 0 deletes the mapping."""
    if not 0 < internal_port <= 0xFFFF or not 0 <= external_port <= 0xFFFF:
        raise ValueError("ports must fit in 16 bits (internal port non-zero)")
    if not 0 <= lifetime <= 0xFFFFFFFF:
        raise ValueError("lifetime must fit in 32 bits")
    return struct.pack("!BBHHHI", VERSION, _opcode(protocol), 0, internal_port, external_port,
                       lifetime)


def decode_response(data: bytes) -> ExternalAddress | MapResult:
    """Parse one response datagram; raises NatPmpError for anything malformed.

    A result code other than 0 is returned, not raised: the caller decides (RFC 6886 says a
    refused mapping must not be retried in a loop)."""
    if len(data) < 8:
        raise NatPmpError(f"response of {len(data)} bytes is shorter than 8")
    version, op, result, epoch = struct.unpack_from("!BBHI", data)
    if version != VERSION:
        raise NatPmpError(f"version {version}, expected {VERSION}")
    if not op & RESPONSE_BIT:
        raise NatPmpError(f"opcode {op} is a request, not a response")
    op &= ~RESPONSE_BIT
    if op == OP_EXTERNAL_ADDRESS:
        if len(data) < 12:
            if result:  # an error response may be cut short by old gateways
                return ExternalAddress(result, epoch, ipaddress.IPv4Address(0))
            raise NatPmpError("external address response shorter than 12 bytes")
        return ExternalAddress(result, epoch, ipaddress.IPv4Address(data[8:12]))
    if op in (OP_MAP_UDP, OP_MAP_TCP):
        if len(data) < 16:
            if result:
                return MapResult("udp" if op == OP_MAP_UDP else "tcp", result, epoch, 0, 0, 0)
            raise NatPmpError("mapping response shorter than 16 bytes")
        internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
        return MapResult("udp" if op == OP_MAP_UDP else "tcp", result, epoch, internal,
                         external, lifetime)
    raise NatPmpError(f"unknown response opcode {op}")


def result_text(code: int) -> str:
    return RESULTS.get(code, f"result {code}")
