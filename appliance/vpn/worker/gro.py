"""Coalescing TUN writes: in-order TCP segments of one flow become one GSO write.

Writing a packet to a TUN makes the kernel run the whole receive path for it right there,
inside our write(): routing, TCP, often an ACK. That is most of a worker's CPU in the
client-to-server direction. A NIC's GRO would merge a burst of segments before the stack
sees them; packets we write bypass GRO, so we do it ourselves: the TUN is opened with
IFF_VNET_HDR, every write carries a virtio_net_hdr, and a run of consecutive segments of
one TCP flow goes in as a single GSO packet (TCPV4, checksum left to the kernel), which the
stack handles once. Pure functions; the data path only calls ``coalesce``.

Only what Linux GRO would merge is merged: IPv4 without options or fragmentation, TCP with
ACK (+PSH) only, the same addresses, ports, TOS, TTL, ack number, window and options, and
contiguous sequence numbers, all segments but the last of equal size. Anything else passes
through unchanged, so correctness never depends on merging.
"""

from __future__ import annotations

import struct

VNET_HDR_LEN = 10
PLAIN = bytes(VNET_HDR_LEN)  # flags 0, GSO none: the packet is complete as it is
_VNET = struct.Struct("<BBHHHH")
_F_NEEDS_CSUM = 1
_GSO_TCPV4 = 1
_MAX_GSO = 65535
_MAX_SEGS = 64
_ACK, _PSH = 0x10, 0x08


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _segment_key(p: bytes) -> tuple[bytes, int, int, int] | None:
    """(flow key, tcp header length, seq, payload length) of a mergeable segment, or None."""
    n = len(p)
    if n < 40 or p[0] != 0x45 or p[9] != 6 or (p[6] & 0x3F) or p[7]:
        return None
    if (p[2] << 8 | p[3]) != n:
        return None
    th = (p[32] >> 4) * 4
    payload = n - 20 - th
    if th < 20 or payload <= 0 or p[33] & ~(_ACK | _PSH) & 0xFF or not p[33] & _ACK:
        return None
    # addresses, ports, ack, window and options must all match (as Linux GRO requires)
    key = p[1:2] + p[8:9] + p[12:24] + p[28:32] + p[34:36] + p[40:20 + th]
    seq = p[24] << 24 | p[25] << 16 | p[26] << 8 | p[27]
    return key, th, seq, payload


def _merge(run: list[bytes], th: int, gso_size: int) -> bytes:
    first = run[0]
    payload = b"".join([p[20 + th:] for p in run])
    total = 20 + th + len(payload)
    ip = bytearray(first[:20])
    ip[2:4] = total.to_bytes(2, "big")
    ip[10:12] = b"\0\0"
    ip[10:12] = _ip_checksum(bytes(ip)).to_bytes(2, "big")
    tcp = bytearray(first[20:20 + th])
    tcp[13] |= run[-1][33] & _PSH
    # CHECKSUM_PARTIAL: the field holds the pseudo-header sum, the kernel finishes it
    pseudo = sum(struct.unpack("!4H", first[12:20])) + 6 + (th + len(payload))
    pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    tcp[16:18] = pseudo.to_bytes(2, "big")
    hdr = _VNET.pack(_F_NEEDS_CSUM, _GSO_TCPV4, 20 + th, gso_size, 20, 16)
    return hdr + bytes(ip) + bytes(tcp) + payload


def coalesce(packets: list[bytes]) -> list[bytes]:
    """The writes for a batch of IP packets, each prefixed with its virtio_net_hdr."""
    out: list[bytes] = []
    run: list[bytes] = []
    run_key = None
    run_th = run_size = next_seq = total = 0

    def flush() -> None:
        if len(run) > 1:
            out.append(_merge(run, run_th, run_size))
        elif run:
            out.append(PLAIN + run[0])
        run.clear()

    for p in packets:
        info = _segment_key(p)
        if info is not None and run and info[0] == run_key and info[2] == next_seq \
                and info[3] <= run_size and len(run) < _MAX_SEGS \
                and total + info[3] <= _MAX_GSO - 20 - run_th:
            run.append(p)
            next_seq = (next_seq + info[3]) & 0xFFFFFFFF
            total += info[3]
            if info[3] < run_size:  # a short segment ends the run
                flush()
                run_key = None
            continue
        flush()
        if info is None:
            out.append(PLAIN + p)
            run_key = None
            continue
        run.append(p)
        run_key, run_th, seq, run_size = info
        next_seq = (seq + run_size) & 0xFFFFFFFF
        total = run_size
    flush()
    return out
