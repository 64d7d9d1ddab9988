"""Stac LZS codec (docs/protocol.md §6.3): hand-derived vectors, malformed streams, round trips.

The expected streams below are written bit by bit from the §6.3 token table (with
``_bits`` only packing them), not produced by the encoder under test.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.protocol import lzs
from appliance.vpn.protocol.lzs import LzsError, compress, decompress, encode

END = "110000000"


def _bits(*fields: str) -> bytes:
    """Pack '0'/'1' fields MSB-first and zero-pad to a byte boundary."""
    text = "".join(fields).replace(" ", "")
    text += "0" * (-len(text) % 8)
    return int(text, 2).to_bytes(len(text) // 8, "big") if text else b""


def _lit(byte: int) -> str:
    return "0" + format(byte, "08b")


def _short(offset: int) -> str:
    return "11" + format(offset, "07b")


def _long(offset: int) -> str:
    return "10" + format(offset, "011b")


def _length(n: int) -> str:
    """§6.3 length codes, from the table (not from the encoder's 'x = L + 7' form)."""
    if n <= 4:
        return format(n - 2, "02b")
    if n <= 7:
        return "11" + format(n - 5, "02b")
    groups, last = divmod(n - 8, 15)
    return "1111" + "1111" * groups + format(last, "04b")


# --------------------------------------------------------------------- known vectors


def test_spec_example_aaaa() -> None:
    """§6.3: literal 'A', match offset 1 length 3, end marker, padding."""
    expected = _bits(_lit(0x41), _short(1), "01", END)
    assert expected == bytes.fromhex("20e05c00")
    assert encode(b"AAAA") == expected
    assert decompress(expected, 100) == b"AAAA"
    # Four bytes in, four out: not smaller, so the packet would go plain.
    assert compress(b"AAAA") is None


def test_empty_and_single_byte() -> None:
    assert encode(b"") == bytes.fromhex("c000") == _bits(END)
    assert encode(b"A") == _bits(_lit(0x41), END)
    assert decompress(bytes.fromhex("c000"), 0) == b""
    assert compress(b"") is None
    assert compress(b"A") is None


def test_final_pair_match_and_literals() -> None:
    # The last two bytes are a 2-byte match when that pair occurred before...
    assert encode(b"ABAB") == _bits(_lit(0x41), _lit(0x42), _short(2), "00", END)
    # ...and two literals otherwise.
    assert encode(b"ABC") == _bits(_lit(0x41), _lit(0x42), _lit(0x43), END)


def test_long_run_uses_extended_length() -> None:
    # 'A' then a 9-byte overlapping copy at offset 1: length 9 = 1111 0001.
    expected = _bits(_lit(0x41), _short(1), "1111 0001", END)
    assert encode(b"A" * 10) == expected
    assert compress(b"A" * 10) == expected
    assert decompress(expected, 10) == b"A" * 10


def test_long_offset_form() -> None:
    data = bytes(range(200)) + bytes(range(3))
    expected = _bits(*(_lit(b) for b in range(200)), _long(200), "01", END)
    assert encode(data) == expected
    assert decompress(expected, 1000) == data


def test_nearest_copy_wins_ties() -> None:
    # "xy" occurs at 0 and at 3; the match at 6 must use the nearer one (offset 3).
    data = b"xyQxyRxy!"
    expected = _bits(
        _lit(0x78), _lit(0x79), _lit(0x51), _short(3), "00", _lit(0x52), _short(3), "00",
        _lit(0x21), END,
    )
    assert encode(data) == expected


def test_longest_copy_wins() -> None:
    # At position 8 "abcd" matches 4 bytes at offset 8 but only 2 at offset 4.
    data = b"abcdabXXabcd"
    stream = encode(data)
    expected = _bits(
        *(_lit(b) for b in b"abcd"), _short(4), "00", _lit(0x58), _lit(0x58),
        _short(8), "10", END,
    )
    assert stream == expected
    assert decompress(stream, 100) == data


def test_many_growing_candidates() -> None:
    # Every copy of "aaa" further back matches one byte more: the best is at 0.
    data = b"a" * 699 + b"b" + b"a" * 700
    expected = _bits(
        _lit(0x61), _short(1), _length(698), _lit(0x62), _long(700), _length(699),
        _lit(0x61), END,
    )
    assert encode(data) == expected
    assert decompress(expected, len(data)) == data


def _reference_encode(data: bytes) -> bytes:
    """Brute-force statement of the encoder's choices, for small inputs.

    At each position before the last two bytes: the longest earlier copy (>= 2
    bytes, within 2047 bytes, may overlap), nearest on ties, else a literal.  The
    last two bytes: a 2-byte copy if the nearest one that the C hash table has
    indexed is in the window (the inner bytes of a match that ended exactly there
    are not indexed), else two literals; a last single byte is a literal.
    """
    n = len(data)
    fields: list[str] = []
    pos = 0
    newest = -1
    while pos < n - 2:
        best, best_src = 0, -1
        for src in range(pos - 1, max(0, pos - 2047) - 1, -1):
            size = 0
            while pos + size < n and data[src + size] == data[pos + size]:
                size += 1
            if size >= 2 and size > best:
                best, best_src = size, src
        if not best:
            fields.append(_lit(data[pos]))
            pos += 1
            newest = pos - 1
            continue
        offset = pos - best_src
        fields.append((_short(offset) if offset < 128 else _long(offset)) + _length(best))
        newest = pos if pos + best == n - 2 else pos + best - 1
        pos += best
    if pos == n - 2:
        candidates = [
            src for src in range(max(0, pos - 2047), newest + 1)
            if data[src : src + 2] == data[pos : pos + 2]
        ]
        if candidates:
            offset = pos - candidates[-1]
            fields.append((_short(offset) if offset < 128 else _long(offset)) + "00")
        else:
            fields.extend((_lit(data[pos]), _lit(data[pos + 1])))
    elif pos == n - 1:
        fields.append(_lit(data[pos]))
    return _bits(*fields, END)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(b"aabc\x00"), max_size=300).map(bytes))
def test_encoder_choices_match_brute_force(data: bytes) -> None:
    assert encode(data) == _reference_encode(data)


@pytest.mark.parametrize(
    ("length", "code"),
    [
        (2, "00"), (3, "01"), (4, "10"), (5, "1100"), (6, "1101"), (7, "1110"),
        (8, "11110000"), (22, "11111110"), (23, "111111110000"), (37, "111111111110"),
        (38, "1111111111110000"),
    ],
)
def test_length_codes(length: int, code: str) -> None:
    assert _length(length) == code
    assert lzs._length_code(length) == code


def test_length_codes_match_table_form() -> None:
    """The encoder's 'x = L + 7, 8-bit 0xff groups' form equals the §6.3 table form."""
    for n in range(2, 2000):
        assert lzs._length_code(n) == _length(n), n


@pytest.mark.parametrize("length", [2, 3, 4, 5, 7, 8, 9, 22, 23, 24, 37, 38, 300, 1400])
def test_decoder_length_field(length: int) -> None:
    stream = _bits(_lit(0x5A), _short(1), _length(length), END)
    assert decompress(stream, 2000) == b"Z" * (length + 1)


def test_decoder_accepts_forms_the_encoder_never_emits() -> None:
    # A long-form offset below 128, a short match in mid stream, then literals.
    stream = _bits(_lit(0x61), _lit(0x62), _long(2), "10", _short(1), "00", _lit(0x7A), END)
    assert decompress(stream, 100) == b"ab" + b"abab" + b"bb" + b"z"


def test_bits_after_end_marker_are_ignored() -> None:
    stream = _bits(_lit(0x41), END)
    assert decompress(stream + b"\xff\x12", 10) == b"A"
    assert decompress(_bits(_lit(0x41), END, "1111111"), 10) == b"A"


# ------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (_bits(_lit(0x41), _long(0), "00", END), "offset 0"),
        (_bits(_short(1), "00", END), "before start"),
        (_bits(_lit(0x41), _short(2), "00", END), "before start"),
        (_bits(_lit(0x41), _long(300), "00", END), "before start"),
        (_bits(_lit(0x41)), "truncated"),
        (_bits(_lit(0x41), _lit(0x42)), "truncated"),
        (b"", "truncated"),
        (_bits(_lit(0x41), _short(1)), "truncated"),
        (_bits(_lit(0x41), _short(1), "1111"), "truncated"),
        (_bits(_lit(0x41), _short(1), "1111" * 40), "truncated"),
        (b"\x00", "truncated"),
        (b"\xff" * 10, "truncated"),
    ],
)
def test_malformed_streams(stream: bytes, reason: str) -> None:
    with pytest.raises(LzsError, match=reason):
        decompress(stream, 4096)


def test_output_limit() -> None:
    stream = _bits(_lit(0x41), _short(1), _length(99), END)
    assert decompress(stream, 100) == b"A" * 100
    with pytest.raises(LzsError, match="exceeds"):
        decompress(stream, 99)
    literals = _bits(*(_lit(0x42) for _ in range(10)), END)
    assert decompress(literals, 10) == b"B" * 10
    with pytest.raises(LzsError, match="exceeds"):
        decompress(literals, 9)


def test_huge_length_is_rejected_early() -> None:
    # 10 000 '1111' groups claim a 150 KB match: refused without producing it.
    stream = _bits(_lit(0x41), _short(1), "1111" * 10000, "0000", END)
    with pytest.raises(LzsError, match="longer than|exceeds"):
        decompress(stream, 16384)


def test_every_strict_prefix_is_rejected() -> None:
    data = open(__file__, "rb").read()[:3000]
    stream = encode(data)
    assert decompress(stream, len(data)) == data
    for cut in range(len(stream)):
        with pytest.raises(LzsError):
            decompress(stream[:cut], len(data))


def test_accepts_bytearray_and_memoryview() -> None:
    stream = encode(b"hello hello hello")
    assert decompress(bytearray(stream), 100) == b"hello hello hello"
    assert decompress(memoryview(stream), 100) == b"hello hello hello"
    assert encode(bytearray(b"hello hello hello")) == stream


# ------------------------------------------------------------------- encoder rules


def test_compress_none_unless_smaller() -> None:
    assert compress(os.urandom(1400)) is None
    text = b"the quick brown fox jumps over the lazy dog; " * 30
    packed = compress(text)
    assert packed is not None and len(packed) < len(text)
    assert decompress(packed, len(text)) == text


def test_compress_max_out() -> None:
    text = b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc" * 4
    full = encode(text)
    assert compress(text, max_out=len(full)) == full
    assert compress(text, max_out=len(full) - 1) is None
    assert compress(text, max_out=0) is None


def test_compress_is_exactly_encode_when_smaller() -> None:
    for size in (3, 10, 64, 300, 1400):
        for data in (bytes(size), b"xy" * (size // 2), os.urandom(size)):
            full = encode(data)
            assert compress(data) == (full if len(full) < len(data) else None)


def test_window_is_2047_bytes() -> None:
    block = os.urandom(64)
    for gap in (1900, 1983, 1984, 1985, 2100, 4000):
        data = block + os.urandom(gap) + block
        stream = encode(data)
        assert decompress(stream, len(data)) == data
    # A copy exactly 2047 back is usable; 2048 back is not.
    near = block + os.urandom(2047 - 64) + block
    far = block + os.urandom(2048 - 64) + block
    assert len(encode(near)) < len(encode(far))


# --------------------------------------------------------------- property tests

_texty = st.lists(st.sampled_from([b"a", b"b", b"ab", b"the ", b"\x00", b"\xff", b"xyz"]),
                  max_size=800).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_round_trip_any_bytes(data: bytes) -> None:
    stream = encode(data)
    assert decompress(stream, len(data)) == data
    packed = compress(data)
    if packed is not None:
        assert len(packed) < len(data)
        assert decompress(packed, len(data)) == data


@settings(max_examples=300, deadline=None)
@given(_texty)
def test_round_trip_repetitive(data: bytes) -> None:
    stream = encode(data)
    assert decompress(stream, len(data)) == data
    if data:
        with pytest.raises(LzsError):
            decompress(stream, len(data) - 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=20000))
def test_hostile_input_is_bounded(data: bytes, max_out: int) -> None:
    try:
        out = decompress(data, max_out)
    except LzsError:
        return
    assert isinstance(out, bytes) and len(out) <= max_out


@settings(max_examples=300, deadline=None)
@given(_texty, st.data())
def test_mutated_streams_fail_cleanly(data: bytes, draw: st.DataObject) -> None:
    stream = bytearray(encode(data))
    index = draw.draw(st.integers(min_value=0, max_value=len(stream) - 1))
    stream[index] ^= draw.draw(st.integers(min_value=1, max_value=255))
    try:
        out = decompress(bytes(stream), 5000)
    except LzsError:
        return
    assert len(out) <= 5000


# ------------------------------------------------------------------------ speed


def _per_call_us(func: object, *args: object, repeat: int = 20) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(repeat):
            func(*args)  # type: ignore[operator]
        best = min(best, (time.process_time() - start) / repeat)
    return best * 1e6


def test_speed() -> None:
    """CPU µs per 1400-byte packet (printed with -s); the bounds only catch pathologies."""
    text = (open(__file__, "rb").read() * 2)[:1400]
    rand = os.urandom(1400)
    packed = encode(text)
    hostile = encode(rand)
    timings = {
        "compress text": _per_call_us(compress, text),
        "compress random": _per_call_us(compress, rand),
        "decompress text": _per_call_us(decompress, packed, 16384),
        "decompress literals": _per_call_us(decompress, hostile, 16384),
    }
    print("LZS per 1400-byte packet:", {k: f"{v:.0f}us" for k, v in timings.items()})
    assert all(v < 50_000 for v in timings.values())
