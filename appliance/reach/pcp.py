"""PCP (RFC 6887) MAP and ANNOUNCE messages: bytes in, dataclasses out; no sockets here.

Addresses travel as 16 bytes (IPv4 as IPv4-mapped IPv6).  A MAP is identified by its nonce:
the gateway refuses to renew or delete a mapping with another nonce, so the caller keeps the
nonce of each mapping for as long as the mapping lives.  A gateway that restarted reports an
epoch smaller than expected (RFC 6887 section 8.5): every mapping must then be made again.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

PORT = 5351
VERSION = 2
OP_ANNOUNCE = 0
OP_MAP = 1
RESPONSE_BIT = 0x80
MAX_MESSAGE = 1100
HEADER = 24
MAP_BODY = 36
PROTOCOLS = {"tcp": 6, "udp": 17}
_BY_NUMBER = {v: k for k, v in PROTOCOLS.items()}

RESULTS = {
    0: "success", 1: "unsupported version", 2: "not authorized", 3: "malformed request",
    4: "unsupported opcode", 5: "unsupported option", 6: "malformed option",
    7: "network failure", 8: "no resources", 9: "unsupported protocol",
    10: "user exceeded quota", 11: "cannot provide external", 12: "address mismatch",
    13: "excessive remote peers",
}


class PcpError(ValueError):
    """A datagram that is not a well-formed PCP response."""


@dataclass(frozen=True)
class Option:
    code: int
    data: bytes


@dataclass(frozen=True)
class MapInfo:
    nonce: bytes
    protocol: str  # "tcp", "udp" or "proto-N" for other protocol numbers
    internal_port: int
    external_port: int
    external_address: ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Response:
    opcode: int
    result: int
    lifetime: int
    epoch: int
    map: MapInfo | None
    options: tuple[Option, ...]


def _address16(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    if isinstance(address, ipaddress.IPv4Address):
        return bytes(10) + b"\xff\xff" + address.packed
    return address.packed


def _from16(raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    v6 = ipaddress.IPv6Address(raw)
    return v6.ipv4_mapped or v6


def _header(opcode: int, lifetime: int,
            client: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    if not 0 <= lifetime <= 0xFFFFFFFF:
        raise ValueError("lifetime must fit in 32 bits")
    return struct.pack("!BBHI", VERSION, opcode, 0, lifetime) + _address16(client)


def encode_announce(client: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return _header(OP_ANNOUNCE, 0, client)


def encode_map_request(client: ipaddress.IPv4Address | ipaddress.IPv6Address, nonce: bytes,
                       protocol: str, internal_port: int, external_port: int, lifetime: int,
                       external_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
                       = None) -> bytes:
    """A MAP request from ``client`` (the appliance's own address on the gateway's link).

    ``external_port`` and ``external_address`` are suggestions; lifetime 0 deletes."""
    if len(nonce) != 12:
        raise ValueError("the MAP nonce is 12 bytes")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}")
    if not 0 < internal_port <= 0xFFFF or not 0 <= external_port <= 0xFFFF:
        raise ValueError("ports must fit in 16 bits (internal port non-zero)")
    if external_address is None:
        external_address = (ipaddress.IPv4Address(0)
                            if isinstance(client, ipaddress.IPv4Address)
                            else ipaddress.IPv6Address(0))
    body = nonce + struct.pack("!B3xHH", PROTOCOLS[protocol], internal_port, external_port)
    return _header(OP_MAP, lifetime, client) + body + _address16(external_address)


def _options(data: bytes) -> tuple[Option, ...]:
    options = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise PcpError("truncated option header")
        code, length = struct.unpack_from("!BxH", data, pos)
        pos += 4
        padded = (length + 3) & ~3
        if pos + padded > len(data):
            raise PcpError(f"option {code} of {length} bytes runs past the message")
        options.append(Option(code, data[pos:pos + length]))
        pos += padded
    return tuple(options)


def decode_response(data: bytes) -> Response:
    """Parse one response datagram; raises PcpError for anything malformed.

    A non-zero result code is returned, not raised.  A NAT-PMP-only gateway answers a PCP
    request with a version-0 "unsupported version" reply: that is a PcpError too, saying so."""
    if len(data) < 2:
        raise PcpError("datagram shorter than 2 bytes")
    if data[0] == 0:
        raise PcpError("the gateway answered in NAT-PMP (version 0): no PCP there")
    if data[0] != VERSION:
        raise PcpError(f"version {data[0]}, expected {VERSION}")
    if len(data) < HEADER or len(data) > MAX_MESSAGE or len(data) % 4:
        raise PcpError(f"response of {len(data)} bytes is not a PCP message")
    _, op, result, lifetime, epoch = struct.unpack_from("!BBxBII", data)
    if not op & RESPONSE_BIT:
        raise PcpError(f"opcode {op} is a request, not a response")
    op &= ~RESPONSE_BIT
    body = data[HEADER:]
    info = None
    if op == OP_MAP:
        if len(body) < MAP_BODY:
            if result:  # error responses may carry the body or not
                return Response(op, result, lifetime, epoch, None, ())
            raise PcpError("MAP response without its 36-byte body")
        nonce = body[:12]
        proto, internal, external = struct.unpack_from("!B3xHH", body, 12)
        info = MapInfo(nonce, _BY_NUMBER.get(proto, f"proto-{proto}"), internal, external,
                       _from16(body[20:36]))
        body = body[MAP_BODY:]
    elif op != OP_ANNOUNCE:
        raise PcpError(f"unknown response opcode {op}")
    return Response(op, result, lifetime, epoch, info, _options(body))


def result_text(code: int) -> str:
    return RESULTS.get(code, f"result {code}")
