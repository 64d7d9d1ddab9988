"""CSTP: the CONNECT exchange and the 8-byte frames that follow it (docs/protocol.md §3, §4).

Sans-IO.  Three independent pieces live here:

* framing (§4): ``encode_frame`` / ``frame_header`` / ``pack_header_into`` and the
  stream ``FrameDecoder``; this is the hot data path, so it uses precompiled ``struct``
  objects and returns plain tuples;
* the CONNECT request (§3.1): ``parse_connect_request`` turns the HTTP request headers
  into a ``ConnectRequest``;
* the CONNECT response (§3.3, §3.4): ``compute_mtu`` and ``build_connect_response``
  reproduce what ocserv 1.1.6 sends, header for header, because openconnect compares
  header names case-sensitively and insists on byte-identical addresses on reconnect.

Micro-benchmark (tests/unit/test_cstp.py::test_frame_speed, this 2-vCPU VM, CPython
3.11, 1400-byte payloads): ``encode_frame`` ~0.25 µs, ``FrameDecoder.feed`` of one
whole frame ~0.6 µs, i.e. noise next to the ~5-12 µs per packet of the TLS record work.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol

log = logging.getLogger(__name__)

__all__ = [
    "BYE_RECONNECTING",
    "BYE_USER_DISCONNECT",
    "HEADER_LEN",
    "MAX_DTLS_CRYPTO_OVERHEAD",
    "ConnectParams",
    "ConnectRequest",
    "CstpError",
    "DtlsParams",
    "FrameDecoder",
    "PacketType",
    "build_connect_response",
    "bye_frame",
    "compute_mtu",
    "connect_error",
    "dtls_crypto_overhead",
    "encode_frame",
    "frame_header",
    "fuzz_rekey_time",
    "pack_header_into",
    "parse_bye",
    "parse_connect_request",
]


class CstpError(ValueError):
    """Malformed CSTP frame stream or CONNECT request (the connection should be closed)."""


# --------------------------------------------------------------------------- framing


class PacketType(IntEnum):
    """CSTP packet types (§4.2); the same codes are used in the 1-byte DTLS header."""

    DATA = 0
    DPD_REQ = 3
    DPD_RESP = 4
    DISCONNECT = 5
    KEEPALIVE = 7
    COMPRESSED = 8
    TERMINATE = 9


BYE_USER_DISCONNECT = 0xB0
"""BYE reason: the user logged out; the session/cookie is to be invalidated (§4.2, §7.6)."""
BYE_RECONNECTING = 0x91
"""BYE reason: AnyConnect is about to come back with the same cookie; keep the session."""

HEADER_LEN = 8
_MAGIC = 0x53544601  # b"STF\x01" as a big-endian int: comparing ints avoids a bytes object
_HDR = struct.Struct(">IHBB")  # magic, payload length, type, 0
_pack = _HDR.pack
_pack_into = _HDR.pack_into
_unpack_from = _HDR.unpack_from
MAX_FRAME_PAYLOAD = 0xFFFF


def frame_header(ptype: int, length: int) -> bytes:
    """The 8-byte header alone, for callers that write header and payload separately."""
    if not 0 <= length <= MAX_FRAME_PAYLOAD:
        raise CstpError(f"CSTP payload length {length} out of range")
    try:
        return _pack(_MAGIC, length, ptype, 0)
    except struct.error as exc:
        raise CstpError(f"bad CSTP packet type {ptype!r}") from exc


def encode_frame(ptype: int, payload: bytes = b"") -> bytes:
    """One complete frame; the caller must put it in a TLS record of its own (§4.3)."""
    return frame_header(ptype, len(payload)) + payload


def pack_header_into(buf: bytearray | memoryview, offset: int, ptype: int, length: int) -> None:
    """Write a header in place, so a packet read from the TUN at ``offset + 8`` needs no copy."""
    if not 0 <= length <= MAX_FRAME_PAYLOAD:
        raise CstpError(f"CSTP payload length {length} out of range")
    try:
        _pack_into(buf, offset, _MAGIC, length, ptype, 0)
    except struct.error as exc:
        raise CstpError(f"cannot write CSTP header: {exc}") from exc


KEEPALIVE_FRAME = encode_frame(PacketType.KEEPALIVE)
DPD_REQUEST_FRAME = encode_frame(PacketType.DPD_REQ)
DISCONNECT_FRAME = encode_frame(PacketType.DISCONNECT)
"""What ocserv sends to kick a client: a BYE with no payload (§4.2)."""
TERMINATE_FRAME = encode_frame(PacketType.TERMINATE)


def bye_frame(reason: int = BYE_USER_DISCONNECT, text: str = "") -> bytes:
    """A BYE carrying a reason byte and optional ASCII text, as AnyConnect/openconnect send it."""
    if not 0 <= reason <= 0xFF:
        raise CstpError(f"bad BYE reason {reason!r}")
    return encode_frame(PacketType.DISCONNECT, bytes((reason,)) + text.encode("ascii", "replace"))


def parse_bye(payload: bytes) -> tuple[int | None, str]:
    """(reason byte or None for an empty BYE, printable text) of a received BYE payload."""
    if not payload:
        return None, ""
    text = payload[1:].decode("ascii", "replace")
    return payload[0], "".join(c if c.isprintable() else "?" for c in text)


class FrameDecoder:
    """Re-frames the decrypted TLS byte stream by the length field (§4.3).

    ocserv assumes one frame per read; we do not, because a TLS record may legitimately
    split or join frames from a less careful client.  The common case (exactly one frame
    per call) takes a fast path without any buffering copy.
    """

    __slots__ = ("_broken", "_buf", "_max")

    def __init__(self, max_payload: int = 16384) -> None:
        if not 0 <= max_payload <= MAX_FRAME_PAYLOAD:
            raise ValueError(f"max_payload {max_payload} out of range")
        self._buf = b""
        self._max = max_payload
        self._broken = False

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """All complete (type, payload) frames; a partial tail is kept for the next call."""
        if self._broken:
            raise CstpError("CSTP stream already failed")
        if type(data) is not bytes:
            data = bytes(data)
        view = self._buf + data if self._buf else data
        end_all = len(view)
        frames: list[tuple[int, bytes]] = []
        append = frames.append
        off = 0
        limit = self._max
        while end_all - off >= HEADER_LEN:
            magic, length, ptype, _ = _unpack_from(view, off)
            if magic != _MAGIC:
                self._broken = True
                raise CstpError(f"bad CSTP magic {view[off:off + 4].hex()} at offset {off}")
            if length > limit:
                self._broken = True
                raise CstpError(f"CSTP payload of {length} bytes exceeds {limit}")
            end = off + HEADER_LEN + length
            if end > end_all:
                break
            append((ptype, view[off + HEADER_LEN:end]))
            off = end
        self._buf = view[off:] if off < end_all else b""
        return frames


# --------------------------------------------------------------------------- CONNECT request


class HeaderLookup(Protocol):
    """What ``parse_connect_request`` needs from the HTTP layer's header object."""

    def get(self, name: str) -> str | None: ...

    def get_all(self, name: str) -> list[str]: ...


CONNECT_TARGETS = ("/CSCOSSLC/tunnel", "CSCOSSLC/tunnel")  # the second: Clavister (§3.1)
_HOSTNAME_MAX = 63  # ocserv: MAX_HOSTNAME_SIZE - 1
_AGENT_MAX = 63  # ocserv: MAX_AGENT_NAME - 1 (it truncates)
_IDENTIFIER_MAX = 63  # ocserv: MAX_DEVICE_TYPE / MAX_DEVICE_PLATFORM - 1 (it drops longer)
_VALUE_MAX = 4096
_HEX96 = re.compile(r"[0-9A-Fa-f]{96}")
_HOSTNAME_OK = re.compile(r"[A-Za-z0-9-]+")
_DIGITS = re.compile(r"[0-9]{1,9}")


@dataclass
class ConnectRequest:
    """What a CONNECT asked for; only the fields ocserv acts on (§3.1 last paragraph)."""

    cookie: str | None
    hostname: str | None = None
    user_agent: str = ""
    base_mtu: int | None = None
    mtu: int | None = None
    address_types: list[str] = field(default_factory=list)
    full_ipv6: bool = False
    cstp_accept_encoding: list[str] = field(default_factory=list)
    dtls_accept_encoding: list[str] = field(default_factory=list)
    dtls_master_secret: bytes | None = None
    dtls_ciphersuites: list[str] = field(default_factory=list)
    dtls12_ciphersuites: list[str] = field(default_factory=list)
    device_type: str = ""
    platform: str = ""
    requested_ipv4: IPv4Address | None = None
    requested_ipv6: IPv6Address | None = None

    def __repr__(self) -> str:  # keep the cookie and the DTLS secret out of logs
        return (
            f"ConnectRequest(hostname={self.hostname!r}, user_agent={self.user_agent!r}, "
            f"base_mtu={self.base_mtu}, mtu={self.mtu}, address_types={self.address_types}, "
            f"full_ipv6={self.full_ipv6}, cookie={'set' if self.cookie else None}, "
            f"dtls={'psk' if self.psk_negotiate else self.dtls_ciphersuites[:1]})"
        )

    @property
    def wants_ipv4(self) -> bool:
        """ocserv: IPv4 is withheld only when an Address-Type list omits it."""
        return not self.address_types or "IPv4" in self.address_types

    @property
    def wants_ipv6(self) -> bool:
        return not self.address_types or "IPv6" in self.address_types

    @property
    def psk_negotiate(self) -> bool:
        """The client offers DTLS with a PSK from the TLS exporter (§5.3)."""
        offered = (*self.dtls_ciphersuites, *self.dtls12_ciphersuites)
        return "PSK-NEGOTIATE" in offered

    @property
    def wants_dtls(self) -> bool:
        """openconnect sends the master secret and cipher list only when DTLS is enabled."""
        return self.dtls_master_secret is not None or self.psk_negotiate

    @property
    def is_mobile(self) -> bool:
        """Mobile platforms get mobile-dpd / mobile-idle-timeout in ocserv (§2.3)."""
        p = self.platform.lower()
        return p.startswith(("apple-ios", "android"))

    @property
    def is_ios(self) -> bool:
        return self.platform.lower().startswith("apple-ios") or self.user_agent.lower().startswith(
            "cisco anyconnect vpn agent for apple"
        )


def _clean(name: str, value: str | None) -> str | None:
    """Reject values that could smuggle lines into our response or the script environment."""
    if value is None:
        return None
    if any(c in value for c in "\r\n\0"):
        raise CstpError(f"control characters in {name}")
    if len(value) > _VALUE_MAX:
        raise CstpError(f"{name} too long")
    return value.strip()


def _all(headers: HeaderLookup, name: str) -> list[str]:
    getter = getattr(headers, "get_all", None)
    if getter is None:
        one = headers.get(name)
        values = [] if one is None else [one]
    else:
        values = list(getter(name) or [])
    return [v for v in (_clean(name, v) for v in values) if v is not None]


def _one(headers: HeaderLookup, name: str) -> str | None:
    values = _all(headers, name)
    return values[-1] if values else None


def _number(headers: HeaderLookup, name: str) -> int | None:
    raw = _one(headers, name)
    if raw is None or raw == "":
        return None
    if not _DIGITS.fullmatch(raw):
        raise CstpError(f"{name}: not a number")
    value = int(raw)
    if value > 0xFFFF:
        raise CstpError(f"{name}: {value} out of range")
    return value


def _list(raw: str | None, sep: str) -> list[str]:
    if not raw:
        return []
    return [item.strip() for item in raw.split(sep) if item.strip()]


def _encodings(raw: str | None) -> list[str]:
    """Compression names, lower-cased: ocserv matches them case-insensitively."""
    return [name.lower() for name in _list(raw, ",")]


def _webvpn_cookie(headers: HeaderLookup) -> str | None:
    """The ``webvpn`` value; other cookies (``webvpncontext``…) are not our business here."""
    for line in _all(headers, "Cookie"):
        for part in line.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name == "webvpn":
                value = value.strip()
                return value or None
    return None


def _hostname(raw: str | None) -> str | None:
    """ocserv drops (not rejects) hostnames that are not plain labels (valid-hostname.c)."""
    if not raw or len(raw) > _HOSTNAME_MAX or raw.startswith("-"):
        return None
    return raw if _HOSTNAME_OK.fullmatch(raw) else None


def _master_secret(raw: str | None) -> bytes | None:
    if raw is None or raw == "":
        return None
    if not _HEX96.fullmatch(raw):
        raise CstpError("X-DTLS-Master-Secret must be 96 hex digits")
    return bytes.fromhex(raw)


def _requested_addresses(values: Iterable[str]) -> tuple[IPv4Address | None, IPv6Address | None]:
    """X-CSTP-Address on reconnect; informational only, so unparsable values are ignored."""
    v4: IPv4Address | None = None
    v6: IPv6Address | None = None
    for value in values:
        try:
            addr = ipaddress.ip_address(value.split("/", 1)[0])
        except ValueError:
            log.debug("ignoring unparsable X-CSTP-Address")
            continue
        if isinstance(addr, IPv4Address):
            v4 = v4 or addr
        else:
            v6 = v6 or addr
    return v4, v6


def device_identifiers(headers: HeaderLookup) -> tuple[str, str]:
    """(device type, platform) from X-AnyConnect-Identifier-DeviceType / -Platform.

    openconnect sends them on every request, the auth ones included, but only for a mobile
    ``--os`` (android, apple-ios); ocserv keeps the auth request's for the connect and
    disconnect scripts (§8.3).  A value of 64 bytes or more is dropped, as ocserv does.
    """
    def value(name: str) -> str:
        raw = _one(headers, name) or ""
        return raw if len(raw.encode()) <= _IDENTIFIER_MAX else ""

    return (value("X-AnyConnect-Identifier-DeviceType"),
            value("X-AnyConnect-Identifier-Platform"))


def parse_connect_request(method: str, target: str, headers: HeaderLookup) -> ConnectRequest:
    """Validate the request line and extract the client's wishes (§3.1).

    Numbers and the DTLS master secret must be well-formed (we act on them); purely
    informational headers are dropped when odd, as ocserv does.
    """
    if method != "CONNECT":
        raise CstpError(f"not a CONNECT request: {method[:16]!r}")
    if target not in CONNECT_TARGETS:
        raise CstpError("CONNECT to an unknown path")
    user_agent = _one(headers, "User-Agent") or ""
    v4, v6 = _requested_addresses(_all(headers, "X-CSTP-Address"))
    full = _one(headers, "X-CSTP-Full-IPv6-Capability") or ""
    device_type, platform = device_identifiers(headers)
    return ConnectRequest(
        cookie=_webvpn_cookie(headers),
        hostname=_hostname(_one(headers, "X-CSTP-Hostname")),
        user_agent=user_agent[:_AGENT_MAX],
        base_mtu=_number(headers, "X-CSTP-Base-MTU"),
        mtu=_number(headers, "X-CSTP-MTU"),
        address_types=_list(_one(headers, "X-CSTP-Address-Type"), ","),
        full_ipv6="true" in full.lower(),
        cstp_accept_encoding=_encodings(_one(headers, "X-CSTP-Accept-Encoding")),
        dtls_accept_encoding=_encodings(_one(headers, "X-DTLS-Accept-Encoding")),
        dtls_master_secret=_master_secret(_one(headers, "X-DTLS-Master-Secret")),
        dtls_ciphersuites=_list(_one(headers, "X-DTLS-CipherSuite"), ":"),
        dtls12_ciphersuites=_list(_one(headers, "X-DTLS12-CipherSuite"), ":"),
        device_type=device_type,
        platform=platform,
        requested_ipv4=v4,
        requested_ipv6=v6,
    )


# --------------------------------------------------------------------------- MTU (§3.4)

IPV4_HEADER = 20
IPV6_HEADER = 40
UDP_HEADER = 8
DTLS_RECORD_HEADER = 13
DTLS_PAYLOAD_HEADER = 1  # the CSTP type byte in front of every DTLS payload (§5.2)
DEFAULT_LINK_MTU = 1500  # a fresh tun device's MTU, ocserv's default when `mtu` is unset
IPV6_MIN_MTU = 1280
MAX_DTLS_CRYPTO_OVERHEAD = DTLS_PAYLOAD_HEADER + DTLS_RECORD_HEADER + 20 + 2 * 16
"""66: DTLS 1.0 with AES-128-CBC + HMAC-SHA1, ocserv's worst case for old clients."""


def _mac_len(name: str) -> int:
    for suffix, size in (("SHA384", 48), ("SHA256", 32), ("SHA1", 20), ("SHA", 20), ("MD5", 16)):
        if name.endswith(suffix):
            return size
    raise CstpError(f"cannot tell the MAC of cipher {name!r}")


def dtls_crypto_overhead(cipher_name: str) -> int:
    """Bytes a DTLS packet adds on top of the IP packet, excluding IP/UDP headers.

    ocserv estimates the PSK channel's overhead as a DTLS 1.0 record with the *TLS*
    session's cipher (GnuTLS ``gnutls_est_record_overhead_size``), plus our 1-byte
    payload header: 1 + 13 (record header) + explicit nonce + tag, or for CBC suites
    MAC + IV + one block of padding.  So AES-128/256-GCM = 1 + 13 + 8 + 16 = 38,
    ChaCha20-Poly1305 = 1 + 13 + 0 + 16 = 30, AES-CBC-SHA1 = 1 + 13 + 20 + 32 = 66.
    Accepts GnuTLS, OpenSSL and IANA spellings (``AES-256-GCM``,
    ``ECDHE-RSA-AES256-GCM-SHA384``, ``TLS_CHACHA20_POLY1305_SHA256`` …).
    """
    name = cipher_name.upper().replace("_", "-")
    if "CHACHA20" in name:
        record = 0 + 16
    elif "GCM" in name:
        record = 8 + 16
    elif "CCM-8" in name or "CCM8" in name:
        record = 8 + 8
    elif "CCM" in name:
        record = 8 + 16
    elif "AES" in name or "CAMELLIA" in name or "ARIA" in name:
        record = _mac_len(name) + 2 * 16
    elif "3DES" in name or "DES-CBC3" in name:
        record = _mac_len(name) + 2 * 8
    else:
        raise CstpError(f"unknown cipher {cipher_name!r}")
    return DTLS_PAYLOAD_HEADER + DTLS_RECORD_HEADER + record


def compute_mtu(
    *,
    base_mtu: int | None,
    requested_mtu: int | None,
    link_mtu: int | None,
    tcp_pmtu: int | None,
    peer_is_ipv6: bool,
    have_ipv6_pool: bool,
    dtls_overhead: int,
) -> tuple[int, int]:
    """(X-CSTP-Base-MTU, X-CSTP-MTU) as ocserv's connect_handler computes them.

    ``link_mtu`` is the configured ``mtu`` (None: the tun default 1500).
    ``dtls_overhead`` is ``dtls_crypto_overhead(tls cipher)`` when DTLS is offered and
    0 when it is not.  ocserv always subtracts the IP+UDP header, DTLS or not, which is
    why a TLS-only session gets 1500 - 28 = 1472 and a DTLS one (AES-GCM) 1500 - 28 - 38
    = 1434 (the rig's numbers).  The data MTU is also the server tun MTU.

    Differences from ocserv, deliberate: a client Base-MTU below the minimum is ignored
    (master; 1.1.6 took any value), and ``tcp_pmtu`` really lowers the link MTU (ocserv
    means to, but its later ``calc_mtu_values`` overwrites the lowered value).
    """
    min_mtu = IPV6_MIN_MTU if have_ipv6_pool else 800
    proto = (IPV6_HEADER if peer_is_ipv6 else IPV4_HEADER) + UDP_HEADER
    link = link_mtu if link_mtu else DEFAULT_LINK_MTU
    if base_mtu and base_mtu >= min_mtu:
        link = min(link, base_mtu)
    elif not base_mtu and requested_mtu:
        # Old clients only send the inner MTU: assume the worst DTLS overhead.
        guess = requested_mtu + proto + MAX_DTLS_CRYPTO_OVERHEAD
        if guess >= min_mtu:
            link = min(link, guess)
    if tcp_pmtu and min_mtu <= tcp_pmtu < link:
        link = tcp_pmtu
    data = link - proto - dtls_overhead
    if data <= 0:
        raise CstpError(f"link MTU {link} leaves no room for data")
    return link, data


def fuzz_rekey_time(rekey_time: int, rnd: int) -> int:
    """ocserv's ±29 s jitter of the advertised rekey time (``rnd``: any random 16+ bit int)."""
    if rekey_time <= 30:
        return rekey_time
    r = rnd & 0xFFFF
    if r >= 0x8000:
        r -= 0x10000
    return rekey_time + _c_mod(r, 30)


def _c_mod(a: int, b: int) -> int:
    """C's ``%`` (truncating toward zero), unlike Python's floor modulo."""
    m = abs(a) % b
    return -m if a < 0 else m


# --------------------------------------------------------------------------- CONNECT response

REKEY_DISABLED_TIME = 31536000
"""One year: what we advertise instead of ``Rekey-Method: none`` (§7.5, §11 item 15)."""
SERVER_NAME = "ocserv"
"""openconnect only stores X-CSTP-Server-Name; ocserv master sends plain ``ocserv``."""

IPNetwork = IPv4Network | IPv6Network
IPAddr = IPv4Address | IPv6Address


@dataclass
class DtlsParams:
    """The X-DTLS-* part of the response; absent means "no DTLS" to the client."""

    port: int
    dpd: int | None = None  # None: same as CSTP
    keepalive: int | None = None  # None: same as CSTP
    rekey_time: int | None = None  # None: CSTP rekey time + 10, as ocserv
    app_id: str | None = None  # PSK mode: hex session id the ClientHello will carry
    cipher_suite: str = "PSK-NEGOTIATE"
    session_id: str | None = None  # legacy modes: exactly 64 hex digits
    dtls12: bool = False  # legacy name goes into X-DTLS12-CipherSuite
    mtu: int | None = None  # legacy modes only: X-DTLS-MTU


@dataclass
class ConnectParams:
    """Everything the CONNECT response says, already decided by the server."""

    base_mtu: int
    mtu: int
    ipv4_address: IPv4Address | None = None
    ipv4_netmask: IPv4Address | None = None
    ipv6_address: IPv6Address | None = None
    ipv6_prefix: int | None = None
    ipv6_network: IPv6Network | None = None  # legacy (non full-IPv6) netmask form only
    full_ipv6: bool = True  # client sent X-CSTP-Full-IPv6-Capability: true
    ipv4_enabled: bool = True  # IPv4 DNS/routes allowed (ocserv: not req->no_ipv4)
    ipv6_enabled: bool = True  # IPv6 DNS/routes allowed (full-IPv6 client, known agent, MTU ≥ 1280)
    hostname: str | None = None
    dpd: int = 0
    default_domain: str | None = None
    dns: Sequence[IPAddr | str] = field(default_factory=list)
    dns_ip6_header: bool = False  # AnyConnect wants IPv6 DNS as X-CSTP-DNS-IP6
    nbns: Sequence[IPAddr | str] = field(default_factory=list)
    split_dns: list[str] = field(default_factory=list)
    routes: list[IPNetwork] = field(default_factory=list)
    no_routes: list[IPNetwork] = field(default_factory=list)
    tunnel_all_dns: bool | None = None
    client_bypass_protocol: bool = False
    ios_ipv6_route: bool = False  # AnyConnect on iOS: X-CSTP-Split-Include-IP6: 2000::/3
    keepalive: int = 0
    idle_timeout: int | None = None
    dyndns: bool = False
    rekey_time: int | None = None
    rekey_method: str = "new-tunnel"
    proxy_url: str | None = None
    session_timeout: int | None = None
    session_remaining: int | None = None
    banner: str | None = None
    server_name: str = SERVER_NAME
    dtls: DtlsParams | None = None
    cstp_encoding: str | None = None
    dtls_encoding: str | None = None
    included_headers: list[str] = field(default_factory=list)  # right after the status line
    custom_headers: list[str] = field(default_factory=list)  # `custom-header`, verbatim

    @property
    def full_tunnel(self) -> bool:
        """No routes, or an IPv4 default route: everything goes through the VPN."""
        return not self.routes or any(
            isinstance(r, IPv4Network) and r.prefixlen == 0 for r in self.routes
        )


def _route_text(net: IPNetwork) -> str:
    """IPv4 as ``net/dotted-mask`` (what ocserv converts to), IPv6 as ``net/prefix``."""
    if isinstance(net, IPv4Network):
        return f"{net.network_address}/{net.netmask}"
    return str(net)


def _as_network(value: IPNetwork | str) -> IPNetwork:
    if isinstance(value, (IPv4Network, IPv6Network)):
        return value
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise CstpError(f"bad route {value!r}") from exc


def _is_v6(value: IPAddr | str) -> bool:
    return ":" in str(value)


class _Lines:
    """Collects ``Name: value`` lines, refusing anything that would break the header block."""

    __slots__ = ("out",)

    def __init__(self, status: str) -> None:
        self.out = [status]

    def raw(self, line: str) -> None:
        if any(c in line for c in "\r\n\0"):
            raise CstpError("control characters in a response header")
        self.out.append(line)

    def add(self, name: str, value: object) -> None:
        self.raw(f"{name}: {value}")

    def bytes(self) -> bytes:
        self.out.append("")
        self.out.append("")
        return "\r\n".join(self.out).encode("utf-8")


def _family_ok(p: ConnectParams, v6: bool) -> bool:
    return p.ipv6_enabled if v6 else p.ipv4_enabled


def _send_routes(h: _Lines, p: ConnectParams, routes: Sequence[IPNetwork | str], kind: str) -> None:
    for route in routes:
        net = _as_network(route)
        v6 = isinstance(net, IPv6Network)
        if not _family_ok(p, v6):
            continue
        suffix = "-IP6" if v6 and p.full_ipv6 else ""
        h.add(f"X-CSTP-Split-{kind}{suffix}", _route_text(net))


def _addresses(h: _Lines, p: ConnectParams) -> None:
    if p.ipv4_address is not None:
        h.add("X-CSTP-Address", p.ipv4_address)
        if p.ipv4_netmask is not None:
            h.add("X-CSTP-Netmask", p.ipv4_netmask)
    if p.ipv6_address is not None and p.ipv6_prefix:
        if p.full_ipv6:
            h.add("X-CSTP-Address-IP6", f"{p.ipv6_address}/{p.ipv6_prefix}")
        else:
            h.add("X-CSTP-Address", p.ipv6_address)
            net = p.ipv6_network.network_address if p.ipv6_network else p.ipv6_address
            h.add("X-CSTP-Netmask", f"{net}/{p.ipv6_prefix}")


def _name_servers(h: _Lines, p: ConnectParams) -> None:
    for server in p.dns:
        v6 = _is_v6(server)
        if _family_ok(p, v6):
            h.add("X-CSTP-DNS-IP6" if v6 and p.dns_ip6_header else "X-CSTP-DNS", server)
    for server in p.nbns:
        if _family_ok(p, _is_v6(server)):
            h.add("X-CSTP-NBNS", server)
    for domain in p.split_dns:
        h.add("X-CSTP-Split-DNS", domain)


def _routing(h: _Lines, p: ConnectParams) -> None:
    if p.ios_ipv6_route and p.full_ipv6:
        h.add("X-CSTP-Split-Include-IP6", "2000::/3")
    full = p.full_tunnel
    if not full:
        _send_routes(h, p, p.routes, "Include")
    all_dns = True if full else bool(p.tunnel_all_dns)
    h.add("X-CSTP-Tunnel-All-DNS", "true" if all_dns else "false")
    h.add("X-CSTP-Client-Bypass-Protocol", "true" if p.client_bypass_protocol else "false")
    _send_routes(h, p, p.no_routes, "Exclude")


def _rekey_and_timers(h: _Lines, p: ConnectParams) -> None:
    h.add("X-CSTP-Keepalive", p.keepalive)
    idle = p.idle_timeout if p.idle_timeout and p.idle_timeout > 0 else "none"
    h.add("X-CSTP-Idle-Timeout", idle)
    h.add("X-CSTP-Smartcard-Removal-Disconnect", "true")
    if p.dyndns:
        h.add("X-CSTP-DynDNS", "true")
    if p.rekey_method not in ("ssl", "new-tunnel"):
        raise CstpError(f"rekey method {p.rekey_method!r} not allowed")
    h.add("X-CSTP-Rekey-Time", _rekey_time(p))
    h.add("X-CSTP-Rekey-Method", p.rekey_method)
    if p.proxy_url:
        h.add("X-CSTP-MSIE-Proxy-Pac-URL", p.proxy_url)
    if p.session_timeout is None:
        h.add("X-CSTP-Session-Timeout", "none")
    else:
        remaining = p.session_timeout if p.session_remaining is None else p.session_remaining
        h.add("X-CSTP-Session-Timeout", p.session_timeout)
        h.add("X-CSTP-Session-Timeout-Remaining", max(remaining, 0))
    h.add("X-CSTP-Disconnected-Timeout", "none")
    h.add("X-CSTP-Keep", "true")
    h.add("X-CSTP-TCP-Keepalive", "true")
    h.add("X-CSTP-License", "accept")


def _rekey_time(p: ConnectParams) -> int:
    return p.rekey_time if p.rekey_time and p.rekey_time > 0 else REKEY_DISABLED_TIME


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _dtls(h: _Lines, p: ConnectParams, d: DtlsParams) -> None:
    dpd = p.dpd if d.dpd is None else d.dpd
    if dpd > 0:
        h.add("X-DTLS-DPD", dpd)
    h.add("X-DTLS-Port", d.port)
    rekey = d.rekey_time if d.rekey_time is not None else _rekey_time(p) + 10
    h.add("X-DTLS-Rekey-Time", rekey)
    if p.rekey_method == "ssl":
        h.add("X-DTLS-Rekey-Method", "ssl")
    h.add("X-DTLS-Keepalive", p.keepalive if d.keepalive is None else d.keepalive)
    if d.cipher_suite == "PSK-NEGOTIATE":
        if not d.app_id or len(d.app_id) % 2 or len(d.app_id) > 64 or not _is_hex(d.app_id):
            raise CstpError("X-DTLS-App-ID must be an even number (≤ 64) of hex digits")
        h.add("X-DTLS-App-ID", d.app_id)
        h.add("X-DTLS-CipherSuite", "PSK-NEGOTIATE")
        return
    if not d.session_id or len(d.session_id) != 64 or not _is_hex(d.session_id):
        raise CstpError("X-DTLS-Session-ID must be exactly 64 hex digits")
    h.add("X-DTLS-Session-ID", d.session_id)
    h.add("X-DTLS12-CipherSuite" if d.dtls12 else "X-DTLS-CipherSuite", d.cipher_suite)
    h.add("X-DTLS-MTU", p.mtu if d.mtu is None else d.mtu)


def build_connect_response(p: ConnectParams) -> bytes:
    """``HTTP/1.1 200 CONNECTED`` and the header block, in ocserv 1.1.6's order (§3.3).

    The caller must flush it in TLS record(s) of its own before the first CSTP frame.
    """
    h = _Lines("HTTP/1.1 200 CONNECTED")
    for line in p.included_headers:
        h.raw(line)
    h.add("X-CSTP-Version", 1)
    h.add("X-CSTP-Server-Name", p.server_name)
    if p.hostname:
        h.add("X-CSTP-Hostname", p.hostname)
    if p.dpd > 0:
        h.add("X-CSTP-DPD", p.dpd)
    if p.default_domain:
        h.add("X-CSTP-Default-Domain", p.default_domain)
    _addresses(h, p)
    _name_servers(h, p)
    _routing(h, p)
    _rekey_and_timers(h, p)
    for line in p.custom_headers:
        h.raw(line)
    if p.dtls is not None:
        _dtls(h, p, p.dtls)
    h.add("X-CSTP-Base-MTU", p.base_mtu)
    h.add("X-CSTP-MTU", p.mtu)
    if p.banner:
        h.add("X-CSTP-Banner", p.banner)
    if p.dtls is not None and p.dtls_encoding:
        h.add("X-DTLS-Content-Encoding", p.dtls_encoding)
    if p.cstp_encoding:
        h.add("X-CSTP-Content-Encoding", p.cstp_encoding)
    return h.bytes()


_ERRORS = {
    401: "401 Cookie is not acceptable",
    403: "403 Forbidden",
    404: "404 Not found",
    405: "405 Method Not Allowed",
    503: "503 Service Unavailable",
}


def connect_error(status: int, reason: str | None = None) -> bytes:
    """The short refusals of §3.2; ``reason`` becomes ``X-Reason`` (openconnect prints it on 503).

    ``connect_error(503, "Server configuration error")`` is ocserv's answer when no
    address pool is usable.  The caller closes the connection afterwards.
    """
    try:
        status_text = _ERRORS[status]
    except KeyError:
        raise CstpError(f"no CONNECT error answer for status {status}") from None
    h = _Lines(f"HTTP/1.1 {status_text}")
    if status == 404:
        h.add("Content-Length", 0)
        h.add("Connection", "close")
    if reason:
        h.add("X-Reason", reason)
    return h.bytes()
