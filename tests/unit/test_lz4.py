"""oc-lz4 (docs/protocol.md §6.4): bare LZ4 blocks, bounded decompression, round trips."""

from __future__ import annotations

import os
import time

import lz4.block
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.protocol.lz4 import MAX_OUT_LIMIT, Lz4Error, compress, decompress

# Hand-assembled block: token 0x24 = 2 literals + match length 4+4; "ab"; offset 2
# (little-endian); then the final literals-only sequence, token 0x50 + "abcde".
HAND_BLOCK = b"\x24ab\x02\x00\x50abcde"
HAND_PLAIN = b"ab" + b"abababab" + b"abcde"


def test_hand_made_block() -> None:
    assert decompress(HAND_BLOCK, 100) == HAND_PLAIN
    assert decompress(HAND_BLOCK, len(HAND_PLAIN)) == HAND_PLAIN
    with pytest.raises(Lz4Error):
        decompress(HAND_BLOCK, len(HAND_PLAIN) - 1)


def test_literals_only_and_empty_blocks() -> None:
    assert decompress(b"\x10a", 1) == b"a"
    assert decompress(b"\x00", 0) == b""
    assert decompress(b"\x00", 100) == b""


def test_no_size_prefix_or_frame() -> None:
    data = b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n" * 20
    block = compress(data)
    assert block is not None
    assert block == lz4.block.compress(data, store_size=False)
    # The first byte is a sequence token, not a little-endian length or frame magic.
    assert block[:4] != len(data).to_bytes(4, "little")
    assert block[:4] != b"\x04\x22\x4d\x18"


def test_upper_bound_semantics_of_uncompressed_size() -> None:
    """python-lz4 treats uncompressed_size as a capacity (what §6.4 relies on)."""
    data = os.urandom(100) * 10
    block = lz4.block.compress(data, store_size=False)
    assert lz4.block.decompress(block, uncompressed_size=16384) == data
    assert decompress(block, 16384) == data
    assert decompress(block, len(data)) == data
    with pytest.raises(Lz4Error):
        decompress(block, len(data) - 1)


def test_compress_none_unless_smaller() -> None:
    assert compress(b"") is None
    assert compress(os.urandom(1400)) is None
    assert compress(b"x") is None
    text = b"the quick brown fox jumps over the lazy dog; " * 30
    block = compress(text)
    assert block is not None and len(block) < len(text)
    assert compress(text, max_out=len(block)) == block
    assert compress(text, max_out=len(block) - 1) is None


@pytest.mark.parametrize(
    "block",
    [
        b"",
        b"\x00\x00",
        b"\x10",
        b"\xf0",
        b"\xf0\xff\xff",
        b"\x1fa\x00\x00",  # offset 0
        b"\x1fa\x05\x00",  # offset before the start
        b"\x24ab\x02\x00",  # ends on a match
        HAND_BLOCK[:-1],
        b"\xff" * 50,
    ],
)
def test_malformed_blocks(block: bytes) -> None:
    with pytest.raises(Lz4Error):
        decompress(block, 16384)


def test_max_out_range_is_checked() -> None:
    with pytest.raises(ValueError):
        decompress(b"\x10a", -1)
    with pytest.raises(ValueError):
        decompress(b"\x10a", MAX_OUT_LIMIT + 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_round_trip_any_bytes(data: bytes) -> None:
    block = lz4.block.compress(data, store_size=False)
    assert decompress(block, len(data)) == data
    packed = compress(data)
    if packed is not None:
        assert len(packed) < len(data)
        assert decompress(packed, max(len(data), 16384)) == data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bc", b"the ", b"\x00" * 7]), max_size=600))
def test_round_trip_repetitive(parts: list[bytes]) -> None:
    data = b"".join(parts)
    packed = compress(data)
    if packed is not None:
        assert decompress(packed, len(data)) == data
        if data:
            with pytest.raises(Lz4Error):
                decompress(packed, len(data) - 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=20000))
def test_hostile_input_is_bounded(data: bytes, max_out: int) -> None:
    try:
        out = decompress(data, max_out)
    except Lz4Error:
        return
    assert isinstance(out, bytes) and len(out) <= max_out


def test_speed() -> None:
    """CPU µs per 1400-byte packet (printed with -s); the bound only catches pathologies."""
    text = (open(__file__, "rb").read() * 3)[:1400]
    rand = os.urandom(1400)
    block = compress(text)
    assert block is not None
    timings = {}
    for name, func, args in [
        ("compress text", compress, (text,)),
        ("compress random", compress, (rand,)),
        ("decompress text", decompress, (block, 16384)),
    ]:
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            for _ in range(200):
                func(*args)
            best = min(best, (time.process_time() - start) / 200)
        timings[name] = best * 1e6
    print("oc-lz4 per 1400-byte packet:", {k: f"{v:.1f}us" for k, v in timings.items()})
    assert all(v < 5_000 for v in timings.values())
