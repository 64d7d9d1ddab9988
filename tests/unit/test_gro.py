"""TUN write coalescing: merged exactly when Linux GRO would merge, never otherwise."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.worker.gro import PLAIN, VNET_HDR_LEN, coalesce
from tests.support.packets import internet_checksum
from tests.support.packets import tcp_segment as seg


def test_a_burst_of_one_flow_becomes_one_gso_write():
    packets = [seg(1000 + i * 1400, bytes([i]) * 1400) for i in range(5)]
    packets.append(seg(1000 + 5 * 1400, b"z" * 300, flags=0x18))
    [write] = coalesce(packets)
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack(
        "<BBHHHH", write[:VNET_HDR_LEN])
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) == (1, 1, 40, 1400, 20,
                                                                           16)
    ip = write[VNET_HDR_LEN:]
    assert int.from_bytes(ip[2:4], "big") == len(ip) == 40 + 5 * 1400 + 300
    assert internet_checksum(ip[:20]) == 0  # header checksum recomputed
    assert ip[33] & 0x08  # PSH of the last segment kept
    assert ip[40:] == b"".join(p[40:] for p in packets)


def test_what_gro_would_not_merge_passes_through_unchanged():
    a = seg(1, b"a" * 100)
    cases = [
        [a, seg(999, b"b" * 100)],  # sequence gap
        [a, seg(101, b"b" * 100, ack=8)],  # another ack number
        [a, seg(101, b"b" * 100, src=2)],  # another flow
        [a, seg(101, b"b" * 100, flags=0x11)],  # FIN
        [seg(1, b"a" * 50), seg(51, b"b" * 100)],  # a longer segment after a short one
        [a, b"\x60" + bytes(59)],  # not IPv4
    ]
    for packets in cases:
        writes = coalesce(packets)
        assert writes == [PLAIN + p for p in packets], packets


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_raise_and_keep_every_byte(packets):
    writes = coalesce(packets)
    assert b"".join(w[VNET_HDR_LEN:] for w in writes) == b"".join(packets)
