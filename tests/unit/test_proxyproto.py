"""PROXY protocol v1/v2 header parsing (appliance.vpn.protocol.proxyproto)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.protocol import proxyproto as pp
from appliance.vpn.protocol.proxyproto import NeedMore, ProxyHeader, ProxyProtocolError

CLIENT_HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


# --- v1 -----------------------------------------------------------------------------------------


def test_v1_tcp4_and_the_bytes_after_it_are_left_alone() -> None:
    line = b"PROXY TCP4 198.51.100.7 198.18.0.1 40000 443\r\n"
    result = pp.parse(line + CLIENT_HELLO_START)
    assert isinstance(result, ProxyHeader)
    assert (result.version, result.command, result.family) == (1, "proxy", "inet")
    assert (result.source_ip, result.source_port) == ("198.51.100.7", 40000)
    assert (result.dest_ip, result.dest_port) == ("198.18.0.1", 443)
    assert result.consumed == len(line)
    assert result.has_client_address


def test_v1_tcp6_is_normalised() -> None:
    result = pp.parse(b"PROXY TCP6 2001:DB8:0::7 2001:db8::1 1 65535\r\n")
    assert isinstance(result, ProxyHeader)
    assert result.source_ip == "2001:db8::7"
    assert (result.source_port, result.dest_port) == (1, 65535)


def test_v1_unknown_names_no_client() -> None:
    for line in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n"):
        result = pp.parse(line)
        assert isinstance(result, ProxyHeader)
        assert result.consumed == len(line)
        assert result.source_ip is None and not result.has_client_address


def test_v1_longest_line_is_accepted_and_one_more_byte_is_not() -> None:
    addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {addr} {addr} 65535 65535\r\n".encode()
    assert len(line) == 104
    assert isinstance(pp.parse(line), ProxyHeader)
    padded = b"PROXY UNKNOWN " + b"x" * (pp.V1_MAX_LENGTH - 16) + b"\r\n"
    assert len(padded) == pp.V1_MAX_LENGTH
    assert isinstance(pp.parse(padded), ProxyHeader)
    with pytest.raises(ProxyProtocolError, match="no CRLF"):
        pp.parse(b"PROXY UNKNOWN " + b"x" * (pp.V1_MAX_LENGTH - 15) + b"\r\n")


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 198.51.100.7 198.18.0.1 40000\r\n",  # a field missing
    b"PROXY TCP4 198.51.100.7 198.18.0.1 40000 443 9\r\n",  # one too many
    b"PROXY TCP4 198.51.100.07 198.18.0.1 40000 443\r\n",  # leading zero in the address
    b"PROXY TCP4 2001:db8::1 198.18.0.1 40000 443\r\n",  # wrong family
    b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n",  # scope id
    b"PROXY TCP4 198.51.100.7 198.18.0.1 65536 443\r\n",  # port out of range
    b"PROXY TCP4 198.51.100.7 198.18.0.1 0443 443\r\n",  # leading zero in the port
    b"PROXY TCP4 198.51.100.7 198.18.0.1 -1 443\r\n",
    b"PROXY TCP4  198.51.100.7 198.18.0.1 1 443\r\n",  # two spaces
    b"PROXY UDP4 198.51.100.7 198.18.0.1 1 443\r\n",
    b"PROXY TCP4 198.51.100.7\t198.18.0.1 1 443\r\n",  # a control byte
    b"PROXY \r\n",
    b"PROXY TCP4 1.2.3.4\rX",  # CR without LF
    b"PROXZ",
])
def test_v1_garbage_is_refused(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        pp.parse(line)


# --- v2 -----------------------------------------------------------------------------------------


def test_v2_inet_with_tlvs() -> None:
    tlvs = ((0x01, b"h2"), (0x02, b"vpn.example"), (0x20, b"\x01" + b"\x00" * 4))
    header = pp.build_v2(("198.51.100.9", 51000), ("198.18.0.1", 443), tlvs=tlvs)
    result = pp.parse(header + CLIENT_HELLO_START)
    assert isinstance(result, ProxyHeader)
    assert (result.version, result.command, result.family, result.transport) == (
        2, "proxy", "inet", "stream")
    assert (result.source_ip, result.source_port, result.dest_ip, result.dest_port) == (
        "198.51.100.9", 51000, "198.18.0.1", 443)
    assert result.tlvs == tlvs
    assert result.consumed == len(header)


def test_v2_inet6() -> None:
    header = pp.build_v2(("2001:db8::5", 1), ("2001:db8::1", 443))
    result = pp.parse(header)
    assert isinstance(result, ProxyHeader)
    assert (result.family, result.source_ip, result.dest_ip) == (
        "inet6", "2001:db8::5", "2001:db8::1")
    assert result.consumed == 16 + 36


def test_v2_local_is_a_health_check_without_a_client() -> None:
    header = pp.build_v2(None, None, local=True)
    result = pp.parse(header)
    assert isinstance(result, ProxyHeader)
    assert result.command == "local" and not result.has_client_address
    # a LOCAL header may still carry (meaningless) addresses: they are skipped
    body = b"\x00" * 12
    odd = pp.V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x11, len(body)) + body
    assert pp.parse(odd + b"rest").consumed == len(odd)  # type: ignore[union-attr]


def test_v2_unix_paths() -> None:
    src = b"/run/haproxy.sock".ljust(108, b"\x00")
    dst = b"/run/ocgate.sock".ljust(108, b"\x00")
    header = pp.V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x31, 216) + src + dst
    result = pp.parse(header)
    assert isinstance(result, ProxyHeader)
    assert (result.family, result.source_ip) == ("unix", "/run/haproxy.sock")
    assert not result.has_client_address


@pytest.mark.parametrize("header", [
    pp.V2_SIGNATURE + struct.pack("!BBH", 0x11, 0x11, 12) + b"\x00" * 12,  # version 1
    pp.V2_SIGNATURE + struct.pack("!BBH", 0x22, 0x11, 12) + b"\x00" * 12,  # command 2
    pp.V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x41, 12) + b"\x00" * 12,  # family 4
    pp.V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x13, 12) + b"\x00" * 12,  # transport 3
    pp.V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x11, 11) + b"\x00" * 11,  # too short
    pp.V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x21, 12) + b"\x00" * 12,  # IPv6 short
    pp.V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x11, 14) + b"\x00" * 14,  # 2-byte TLV
    pp.V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x11, 16) + b"\x00" * 12
    + b"\x01\x00\x05x",  # TLV longer than the header
    b"\r\n\r\n\x00\r\nQUIX\n",
])
def test_v2_garbage_is_refused(header: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        pp.parse(header)


# --- incremental use ----------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    pp.build_v1(("198.51.100.7", 40000), ("198.18.0.1", 443)),
    pp.build_v2(("198.51.100.7", 40000), ("198.18.0.1", 443), tlvs=((0x04, b"x" * 300),)),
])
def test_byte_by_byte_feeding_stops_exactly_at_the_end(header: bytes) -> None:
    reader = pp.HeaderReader()
    stream = header + CLIENT_HELLO_START
    for i, byte in enumerate(stream):
        outcome = reader.feed(bytes([byte]))
        if i < len(header) - 1:
            assert isinstance(outcome, NeedMore) and outcome.at_least >= 1
        else:
            assert isinstance(outcome, ProxyHeader)
            break
    assert reader.result is not None and reader.result.consumed == len(header)
    assert reader.leftover == b""
    with pytest.raises(ProxyProtocolError):
        reader.feed(b"more")


def test_leftover_keeps_what_followed_the_header() -> None:
    reader = pp.HeaderReader()
    header = pp.build_v2(("198.51.100.7", 1), ("198.18.0.1", 443))
    assert isinstance(reader.feed(header[:5]), NeedMore)
    assert isinstance(reader.feed(header[5:] + CLIENT_HELLO_START), ProxyHeader)
    assert reader.leftover == CLIENT_HELLO_START


def test_v2_need_more_counts_the_missing_bytes() -> None:
    header = pp.build_v2(("198.51.100.7", 1), ("198.18.0.1", 443))
    assert pp.parse(header[:10]) == NeedMore(6)
    assert pp.parse(header[:20]) == NeedMore(len(header) - 20)


def test_tls_and_http_are_refused_at_the_first_byte() -> None:
    for stream in (CLIENT_HELLO_START, b"GET / HTTP/1.1\r\n", b"\x00"):
        with pytest.raises(ProxyProtocolError):
            pp.parse(stream[:1])


# --- property tests -----------------------------------------------------------------------------

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
port = st.integers(0, 65535)
endpoints = st.one_of(
    st.tuples(st.tuples(ipv4, port), st.tuples(ipv4, port)),
    st.tuples(st.tuples(ipv6, port), st.tuples(ipv6, port)),
)
tlv_lists = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(endpoints, tlv_lists, st.binary(max_size=64), st.booleans())
def test_built_headers_round_trip(ends: tuple, tlvs: list, tail: bytes, v1: bool) -> None:
    (src, dst) = ends
    header = pp.build_v1(src, dst) if v1 else pp.build_v2(src, dst, tlvs=tuple(tlvs))
    result = pp.parse(header + tail)
    assert isinstance(result, ProxyHeader)
    assert result.consumed == len(header)
    assert (result.source_ip, result.source_port) == (str(ipaddress.ip_address(src[0])), src[1])
    assert (result.dest_ip, result.dest_port) == (str(ipaddress.ip_address(dst[0])), dst[1])
    assert result.version == (1 if v1 else 2)
    if not v1:
        assert list(result.tlvs) == tlvs


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_the_module_error(data: bytes) -> None:
    try:
        outcome = pp.parse(data)
    except ProxyProtocolError:
        return
    assert isinstance(outcome, NeedMore | ProxyHeader)
    if isinstance(outcome, ProxyHeader):
        assert 0 < outcome.consumed <= len(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([pp.V2_SIGNATURE, b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 "]),
       st.binary(max_size=200))
def test_plausible_prefixes_with_random_tails(prefix: bytes, tail: bytes) -> None:
    try:
        outcome = pp.parse(prefix + tail)
    except ProxyProtocolError:
        return
    assert isinstance(outcome, NeedMore | ProxyHeader)


@settings(max_examples=200, deadline=None)
@given(endpoints, st.lists(st.integers(1, 20), min_size=1, max_size=30))
def test_any_split_gives_the_same_header(ends: tuple, cuts: list[int]) -> None:
    header = pp.build_v2(*ends, tlvs=((0x05, b"id"),))
    reader = pp.HeaderReader()
    pos = 0
    outcome: NeedMore | ProxyHeader = NeedMore(1)
    for size in cuts * 10:
        if pos >= len(header):
            break
        outcome = reader.feed(header[pos:pos + size])
        pos += size
    if pos < len(header):
        outcome = reader.feed(header[pos:])
    assert outcome == pp.parse(header)
