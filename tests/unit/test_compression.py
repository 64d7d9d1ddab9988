"""Compression negotiation and per-packet rules (docs/protocol.md §6.1, §6.2, §10.6)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.protocol import lz4, lzs
from appliance.vpn.protocol.compression import (
    ALGORITHMS,
    DECOMPRESS_ERRORS,
    DEFAULT_NO_COMPRESS_LIMIT,
    MIN_NO_COMPRESS_LIMIT,
    CompressionError,
    Compressor,
    choose,
    parse_accept_encoding,
    parse_priority_option,
)

TEXT = (b"GET /some/page HTTP/1.1\r\nHost: intranet.example\r\nAccept: text/html\r\n\r\n"
        b"<html><body><p>hello hello hello hello</p></body></html>\n") * 12


# ------------------------------------------------------------------ negotiation


def test_builtin_priorities() -> None:
    assert dict(ALGORITHMS) == {"oc-lz4": 90, "lzs": 80}
    assert DEFAULT_NO_COMPRESS_LIMIT == 256 and MIN_NO_COMPRESS_LIMIT == 64


def test_parse_accept_encoding() -> None:
    assert parse_accept_encoding("oc-lz4,lzs") == ["oc-lz4", "lzs"]
    assert parse_accept_encoding("oc-lz4,lzs,deflate") == ["oc-lz4", "lzs", "deflate"]
    assert parse_accept_encoding(",,lzs,, ") == ["lzs"]
    assert parse_accept_encoding(" oc-lz4 , lzs ") == ["oc-lz4", "lzs"]
    assert parse_accept_encoding("") == []


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["oc-lz4", "lzs"], "oc-lz4"),  # openconnect's default offer
        (["lzs", "oc-lz4"], "oc-lz4"),  # order does not beat priority
        (["oc-lz4", "lzs", "deflate"], "oc-lz4"),  # --compression=all on CSTP
        (["lzs"], "lzs"),  # client built without liblz4
        (["deflate"], None),  # never chosen
        (["LZS"], "lzs"),  # case-insensitive, canonical answer
        (["OC-LZ4", "Lzs"], "oc-lz4"),
        (["gzip", "br"], None),
        ([], None),
    ],
)
def test_choose(offered: list[str], expected: str | None) -> None:
    assert choose(offered, True) == expected


def test_choose_disabled_by_default_setting() -> None:
    assert choose(["oc-lz4", "lzs"], False) is None
    assert choose(["oc-lz4", "lzs"], False, {"lzs": 100}) is None


def test_choose_with_priorities() -> None:
    assert choose(["oc-lz4", "lzs"], True, {"lzs": 95}) == "lzs"
    assert choose(["oc-lz4", "lzs"], True, {"LZS": 1000}) == "lzs"
    assert choose(["oc-lz4", "lzs"], True, {"oc-lz4": 1}) == "lzs"
    # Unknown names in the table never make an algorithm negotiable.
    assert choose(["deflate"], True, {"deflate": 1000}) is None
    # A tie keeps the one offered first (ocserv uses a strict '<').
    assert choose(["lzs", "oc-lz4"], True, {"lzs": 90}) == "lzs"
    assert choose(["oc-lz4", "lzs"], True, {"lzs": 90}) == "oc-lz4"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lzs:95", {"lzs": 95}),
        ("oc-lz4:1000", {"oc-lz4": 1000}),
        ("LZS:7", {"lzs": 7}),
        ("  lzs:95  ", {"lzs": 95}),
        ("lzs::95", {"lzs": 95}),  # strtok skips empty fields
        ("lzs:95abc", {"lzs": 95}),  # strtol stops at the junk
        ("lzs: +12", {"lzs": 12}),
        ("lzs:95:oc-lz4:10", {"lzs": 95}),  # one algorithm per line
        ("oc-lz4:90,lzs:80", {"oc-lz4": 90}),
        ("lzs:4294967297", {"lzs": 1}),  # stored as C unsigned
    ],
)
def test_parse_priority_option(value: str, expected: dict[str, int]) -> None:
    assert parse_priority_option(value) == expected


@pytest.mark.parametrize(
    "value",
    ["lz4:lzs", "lzs", "lzs:", "lzs:0", "lzs:-5", "lzs:abc", ":95", "", "deflate:50",
     "lz4:90", "0x10:lzs"],
)
def test_parse_priority_option_rejects(value: str) -> None:
    with pytest.raises(CompressionError):
        parse_priority_option(value)


def test_priority_option_feeds_choose() -> None:
    table: dict[str, int] = {}
    for line in ("lzs:95", "lz4:lzs"):
        try:
            table.update(parse_priority_option(line))
        except CompressionError:
            pass
    assert choose(["oc-lz4", "lzs"], True, table) == "lzs"


# -------------------------------------------------------------------- Compressor


@pytest.mark.parametrize("name", ["lzs", "oc-lz4", "LZS"])
def test_compressor_round_trip(name: str) -> None:
    comp = Compressor(name)
    payload = comp.compress(TEXT)
    assert payload is not None and len(payload) < len(TEXT)
    assert comp.decompress(payload, 16384) == TEXT


def test_compressor_matches_codec_output() -> None:
    assert Compressor("lzs").compress(TEXT) == lzs.compress(TEXT)
    assert Compressor("oc-lz4").compress(TEXT) == lz4.compress(TEXT)


@pytest.mark.parametrize("name", ["lzs", "oc-lz4"])
def test_no_compress_limit(name: str) -> None:
    comp = Compressor(name)
    assert comp.no_compress_limit == 256
    assert comp.compress(bytes(256)) is None  # ocserv compresses only len > limit
    assert comp.compress(bytes(257)) is not None
    assert Compressor(name, no_compress_limit=1000).compress(TEXT[:1000]) is None
    small = Compressor(name, no_compress_limit=10)
    assert small.no_compress_limit == 64  # clamped like ocserv's config
    assert small.compress(bytes(64)) is None
    assert small.compress(bytes(65)) is not None


@pytest.mark.parametrize("name", ["lzs", "oc-lz4"])
def test_incompressible_goes_plain(name: str) -> None:
    assert Compressor(name).compress(os.urandom(1400)) is None


def test_unknown_algorithm() -> None:
    for name in ("deflate", "lz4", "", "gzip"):
        with pytest.raises(CompressionError):
            Compressor(name)


def test_decompress_errors() -> None:
    with pytest.raises(lzs.LzsError):
        Compressor("lzs").decompress(b"\x00", 16384)
    with pytest.raises(lz4.Lz4Error):
        Compressor("oc-lz4").decompress(b"\xf0", 16384)
    # Valid streams that decode to nothing: ocserv errors out on those too.
    with pytest.raises(lzs.LzsError, match="empty"):
        Compressor("lzs").decompress(bytes.fromhex("c000"), 16384)
    with pytest.raises(lz4.Lz4Error, match="empty"):
        Compressor("oc-lz4").decompress(b"\x00", 16384)
    payload = Compressor("lzs").compress(TEXT)
    assert payload is not None
    with pytest.raises(lzs.LzsError):
        Compressor("lzs").decompress(payload, len(TEXT) - 1)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["lzs", "oc-lz4"]), st.binary(max_size=4096), st.integers(64, 600))
def test_compressor_property(name: str, data: bytes, limit: int) -> None:
    comp = Compressor(name, no_compress_limit=limit)
    payload = comp.compress(data)
    if payload is None:
        return
    assert len(data) > limit and len(payload) < len(data)
    assert comp.decompress(payload, len(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["lzs", "oc-lz4"]), st.binary(max_size=2000))
def test_compressor_hostile_payload(name: str, payload: bytes) -> None:
    try:
        out = Compressor(name).decompress(payload, 1500)
    except DECOMPRESS_ERRORS:
        return
    assert 0 < len(out) <= 1500
