"""Packet arithmetic the tests check the data path with."""

from __future__ import annotations

import struct


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_segment(seq: int, payload: bytes, *, flags: int = 0x10, ack: int = 7, src: int = 1,
                ttl: int = 64) -> bytes:
    """One IPv4 TCP segment of a flow 203.0.113.50 -> 198.51.100.1:5201 with valid checksums:
    what a TUN reader sees of an iperf3 upload (the GRO tests merge runs of them)."""
    tcp = struct.pack("!HHIIBBHHH", 40000 + src, 5201, seq, ack, 5 << 4, flags, 502, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, ttl, 6, 0,
                     bytes([203, 0, 113, 50]), bytes([198, 51, 100, 1]))
    ip = ip[:10] + internet_checksum(ip).to_bytes(2, "big") + ip[12:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + internet_checksum(pseudo + tcp + payload).to_bytes(2, "big") + tcp[18:]
    return ip + tcp + payload
