"""PROXY protocol v1 and v2 headers (HAProxy ``send-proxy`` / ``send-proxy-v2``), sans-IO.

With ``listen-proxy-proto = true`` a load balancer prepends one header to every TCP
connection it forwards, naming the client it came from (docs/protocol.md 10.3). The header is
the only way to learn that address: bans, logs, leases and scripts must use it, so a
connection whose first bytes are not a valid header is refused rather than served under
the balancer's address.

The parser is incremental because the header may arrive in pieces, and it reports how many
bytes the header took: whatever follows (the start of the TLS ClientHello) belongs to the
TLS handshake and must not be swallowed.

Format (HAProxy's proxy-protocol.txt):

* v1: one ASCII line ``PROXY TCP4|TCP6|UNKNOWN <src> <dst> <sport> <dport>\\r\\n`` of at
  most 107 bytes; UNKNOWN may carry anything (or nothing) up to the CRLF.
* v2: a 12-byte signature, version/command, family/transport, a 16-bit big-endian length,
  then the address block (12 bytes for IPv4, 36 for IPv6, 216 for UNIX) and TLVs.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the longest line the specification allows, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_LENGTH = 16  # signature, version/command, family, length
V2_MAX_LENGTH = V2_FIXED_LENGTH + 0xFFFF

COMMAND_LOCAL = "local"
COMMAND_PROXY = "proxy"
_V2_COMMANDS = {0x0: COMMAND_LOCAL, 0x1: COMMAND_PROXY}
_V2_FAMILIES = {0x0: "unspec", 0x1: "inet", 0x2: "inet6", 0x3: "unix"}
_V2_TRANSPORTS = {0x0: "unspec", 0x1: "stream", 0x2: "dgram"}
_V2_ADDRESS_LENGTH = {"unspec": 0, "inet": 12, "inet6": 36, "unix": 216}
_V1_FAMILIES = {b"TCP4": "inet", b"TCP6": "inet6"}


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header (the connection must be dropped)."""


@dataclass(frozen=True)
class NeedMore:
    """The header is incomplete; at least ``at_least`` more bytes are needed."""

    at_least: int


@dataclass(frozen=True)
class ProxyHeader:
    """A complete header.

    ``consumed`` is its length in bytes: the bytes after it belong to the proxied stream.
    The addresses are None when the header names none (LOCAL health checks, v1 UNKNOWN,
    v2 UNSPEC); UNIX-socket paths are reported as strings with port 0.
    """

    version: int
    command: str
    family: str
    transport: str
    source_ip: str | None
    source_port: int | None
    dest_ip: str | None
    dest_port: int | None
    consumed: int
    tlvs: tuple[tuple[int, bytes], ...] = ()

    @property
    def has_client_address(self) -> bool:
        """True when the header names an IP client the server can ban, log and lease for."""
        return (self.command == COMMAND_PROXY and self.family in ("inet", "inet6")
                and self.source_ip is not None)


# --- parsing ---------------------------------------------------------------------------------


def parse(data: bytes) -> NeedMore | ProxyHeader:
    """Parse the header at the start of ``data`` (which may hold more than the header)."""
    data = bytes(data)
    if not data:
        return NeedMore(1)
    if data[0] == V1_PREFIX[0]:
        return _parse_v1(data)
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data)
    raise ProxyProtocolError(f"not a PROXY protocol header (first byte 0x{data[0]:02x})")


def _parse_v1(data: bytes) -> NeedMore | ProxyHeader:
    head = data[:len(V1_PREFIX)]
    if not V1_PREFIX.startswith(head):
        raise ProxyProtocolError("not a PROXY protocol v1 header")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"v1 header has no CRLF within {V1_MAX_LENGTH} bytes")
        bare_cr = data.find(b"\r")
        if 0 <= bare_cr < len(data) - 1:
            raise ProxyProtocolError("v1 header has a CR without LF")
        return NeedMore(1 if data.endswith(b"\r") else 2)
    line = data[:end]
    if len(line) < len(V1_PREFIX) or not line.startswith(V1_PREFIX):
        raise ProxyProtocolError("not a PROXY protocol v1 header")
    if any(b < 0x20 or b > 0x7E for b in line):
        raise ProxyProtocolError("v1 header has non-printable bytes")
    fields = line[len(V1_PREFIX):].split(b" ")
    consumed = end + 2
    if fields[0] == b"UNKNOWN":  # the balancer does not know (or tell): no address
        return ProxyHeader(1, COMMAND_PROXY, "unspec", "unspec", None, None, None, None,
                           consumed)
    family = _V1_FAMILIES.get(fields[0])
    if family is None:
        raise ProxyProtocolError(f"v1 header has unknown protocol {fields[0][:8]!r}")
    if len(fields) != 5:
        raise ProxyProtocolError(f"v1 header has {len(fields)} fields, not 5")
    src = _v1_address(fields[1], family)
    dst = _v1_address(fields[2], family)
    return ProxyHeader(1, COMMAND_PROXY, family, "stream", src, _v1_port(fields[3]), dst,
                       _v1_port(fields[4]), consumed)


def _v1_address(raw: bytes, family: str) -> str:
    text = raw.decode("ascii")
    if "%" in text:  # scope ids have no meaning across hosts
        raise ProxyProtocolError("v1 header address has a scope id")
    try:
        addr = (ipaddress.IPv4Address(text) if family == "inet"
                else ipaddress.IPv6Address(text))
    except ValueError:
        raise ProxyProtocolError(f"v1 header has an invalid {family} address") from None
    return str(addr)


def _v1_port(raw: bytes) -> int:
    if not raw.isdigit() or len(raw) > 5 or (len(raw) > 1 and raw[0:1] == b"0"):
        raise ProxyProtocolError("v1 header has an invalid port")
    port = int(raw)
    if port > 0xFFFF:
        raise ProxyProtocolError("v1 header port is out of range")
    return port


def _parse_v2(data: bytes) -> NeedMore | ProxyHeader:
    head = data[:len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(head):
        raise ProxyProtocolError("not a PROXY protocol v2 header (bad signature)")
    if len(data) < V2_FIXED_LENGTH:
        return NeedMore(V2_FIXED_LENGTH - len(data))
    ver_cmd, fam, length = struct.unpack_from("!BBH", data, len(V2_SIGNATURE))
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"v2 header has version {ver_cmd >> 4}")
    command = _V2_COMMANDS.get(ver_cmd & 0x0F)
    if command is None:
        raise ProxyProtocolError(f"v2 header has unknown command {ver_cmd & 0x0F}")
    family = _V2_FAMILIES.get(fam >> 4)
    transport = _V2_TRANSPORTS.get(fam & 0x0F)
    if family is None or transport is None:
        raise ProxyProtocolError(f"v2 header has unknown family/transport 0x{fam:02x}")
    total = V2_FIXED_LENGTH + length
    if len(data) < total:
        return NeedMore(total - len(data))
    body = data[V2_FIXED_LENGTH:total]
    if command == COMMAND_LOCAL:  # a health check: the addresses, if any, mean nothing
        return ProxyHeader(2, command, family, transport, None, None, None, None, total)
    need = _V2_ADDRESS_LENGTH[family]
    if length < need:
        raise ProxyProtocolError(f"v2 header too short for {family} addresses "
                                 f"({length} < {need} bytes)")
    src, sport, dst, dport = _v2_addresses(body, family)
    tlvs = _v2_tlvs(body[need:])
    return ProxyHeader(2, command, family, transport, src, sport, dst, dport, total, tlvs)


def _v2_addresses(body: bytes, family: str) -> tuple[str | None, int | None,
                                                      str | None, int | None]:
    if family == "inet":
        src, dst = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack_from("!HH", body, 8)
        return str(src), sport, str(dst), dport
    if family == "inet6":
        src6, dst6 = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sport, dport = struct.unpack_from("!HH", body, 32)
        return str(src6), sport, str(dst6), dport
    if family == "unix":
        return _unix_path(body[0:108]), 0, _unix_path(body[108:216]), 0
    return None, None, None, None


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


def _v2_tlvs(raw: bytes) -> tuple[tuple[int, bytes], ...]:
    """TLVs after the addresses (ALPN, authority, SSL details...): checked, not used."""
    tlvs = []
    pos = 0
    while pos < len(raw):
        if len(raw) - pos < 3:
            raise ProxyProtocolError("v2 header has a truncated TLV")
        kind, size = struct.unpack_from("!BH", raw, pos)
        pos += 3
        if size > len(raw) - pos:
            raise ProxyProtocolError(f"v2 header TLV 0x{kind:02x} overruns the header")
        tlvs.append((kind, raw[pos:pos + size]))
        pos += size
    return tuple(tlvs)


class HeaderReader:
    """Feeds pieces of a stream until its PROXY header is complete.

    Once :meth:`feed` returned a :class:`ProxyHeader`, :attr:`leftover` holds the bytes
    that came after it in what was fed.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.result: ProxyHeader | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def leftover(self) -> bytes:
        if self.result is None:
            return b""
        return bytes(self._buf[self.result.consumed:])

    def feed(self, data: bytes) -> NeedMore | ProxyHeader:
        if self.result is not None:
            raise ProxyProtocolError("the header is already complete")
        self._buf += data
        outcome = parse(bytes(self._buf))
        if isinstance(outcome, ProxyHeader):
            self.result = outcome
        return outcome


# --- building (tests, and documentation of the format) ---------------------------------------


def build_v1(source: tuple[str, int] | None, dest: tuple[str, int] | None) -> bytes:
    """A v1 line; ``None`` addresses give ``PROXY UNKNOWN``."""
    if source is None or dest is None:
        return b"PROXY UNKNOWN\r\n"
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(dest[0])
    if src.version != dst.version:
        raise ProxyProtocolError("source and destination families differ")
    proto = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {proto} {src} {dst} {source[1]} {dest[1]}\r\n".encode("ascii")


def build_v2(source: tuple[str, int] | None, dest: tuple[str, int] | None, *,
             local: bool = False, tlvs: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    """A v2 header: PROXY with the addresses (TCP), or LOCAL (a health check)."""
    tlv_bytes = b"".join(struct.pack("!BH", kind, len(value)) + value for kind, value in tlvs)
    if local or source is None or dest is None:
        ver_cmd, fam, addresses = 0x20 if local else 0x21, 0x00, b""
    else:
        src = ipaddress.ip_address(source[0])
        dst = ipaddress.ip_address(dest[0])
        if src.version != dst.version:
            raise ProxyProtocolError("source and destination families differ")
        fam = 0x11 if src.version == 4 else 0x21
        ver_cmd = 0x21
        addresses = src.packed + dst.packed + struct.pack("!HH", source[1], dest[1])
    payload = addresses + tlv_bytes
    if len(payload) > 0xFFFF:
        raise ProxyProtocolError("v2 header longer than 65535 bytes")
    return V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam, len(payload)) + payload
