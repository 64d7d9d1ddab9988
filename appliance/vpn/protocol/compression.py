"""Compression negotiation and sending rules, as ocserv applies them (docs/protocol.md §6).

Sans-IO, pure functions plus one small per-channel object:

* ``parse_accept_encoding`` / ``choose``: pick at most one algorithm from the client's
  ``X-CSTP-Accept-Encoding`` / ``X-DTLS-Accept-Encoding`` list (§6.1);
* ``parse_priority_option``: one ``compression-algo-priority`` config value (§10.6);
* ``Compressor``: the per-packet rules of §6.2 around the stateless codecs in
  ``lzs`` and ``lz4``.

Compression stays off unless the operator enables it (ocserv's default, and the
protocol draft's advice): compressed lengths leak information about the plaintext,
CRIME-style (§6.1, §11 item 33).  Either direction may always send a packet plain;
the receiver accepts both packet types whatever was negotiated.

Not here (the caller's job): sending type 0x08 vs 0x00, refusing 0x08 on a channel
without a negotiated algorithm, and ocserv's reuse of the DTLS result for CSTP when
both channels negotiated the same algorithm (§6.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Literal, cast

from appliance.vpn.protocol import lz4, lzs

__all__ = [
    "ALGORITHMS",
    "DECOMPRESS_ERRORS",
    "DEFAULT_NO_COMPRESS_LIMIT",
    "MIN_NO_COMPRESS_LIMIT",
    "CompressionError",
    "Compressor",
    "choose",
    "parse_accept_encoding",
    "parse_priority_option",
]

#: ocserv's built-in server priorities (worker-http.c ``comp_methods``); higher wins.
#: ``deflate`` (openconnect's stateful CSTP-only mode, §6.5) is deliberately absent.
ALGORITHMS: Mapping[str, int] = MappingProxyType({"oc-lz4": 90, "lzs": 80})

#: ocserv's ``no-compress-limit`` default and the floor it clamps smaller values to.
DEFAULT_NO_COMPRESS_LIMIT = 256
MIN_NO_COMPRESS_LIMIT = 64

#: What ``Compressor.decompress`` raises on a bad payload (both are ValueErrors).
DECOMPRESS_ERRORS = (lzs.LzsError, lz4.Lz4Error)

_LONG_MAX = (1 << 63) - 1
_C_SPACE = " \t\n\v\f\r"

_Codec = tuple[
    Callable[[bytes, int | None], bytes | None],
    Callable[[bytes, int], bytes],
    type[ValueError],
]
#: a negotiated algorithm's canonical name (the keys of ALGORITHMS)
Algorithm = Literal["oc-lz4", "lzs"]

_CODECS: Mapping[Algorithm, _Codec] = MappingProxyType(
    {
        "oc-lz4": (lz4.compress, lz4.decompress, lz4.Lz4Error),
        "lzs": (lzs.compress, lzs.decompress, lzs.LzsError),
    }
)


class CompressionError(ValueError):
    """Unknown algorithm name or invalid ``compression-algo-priority`` value."""


def parse_accept_encoding(value: str) -> list[str]:
    """Split an ``X-*-Accept-Encoding`` header value into its tokens.

    ocserv splits with ``strtok(",")``, so empty tokens vanish; surrounding blanks
    are also dropped here (ocserv would keep them and then fail to match the name;
    openconnect never sends any).
    """
    return [token.strip() for token in value.split(",") if token.strip()]


def choose(
    offered: Iterable[str],
    enabled: bool,
    priorities: Mapping[str, int] | None = None,
) -> str | None:
    """The algorithm to answer in ``X-*-Content-Encoding``, or None for no header.

    Mirrors ocserv: nothing unless compression is enabled; names compare
    case-insensitively; unknown names (``deflate`` included) are skipped; the
    highest priority wins and on a tie the one offered first stays.  The returned
    name is the canonical lower-case one the client expects back.  ``priorities``
    overrides ALGORITHMS per name (from ``parse_priority_option``).
    """
    if not enabled:
        return None
    table = dict(ALGORITHMS)
    if priorities:
        table.update(
            (name.lower(), prio) for name, prio in priorities.items() if name.lower() in table
        )
    best: str | None = None
    for token in offered:
        name = token.strip().lower()
        if name in table and (best is None or table[best] < table[name]):
            best = name
    return best


def _strtol(text: str) -> int:
    """C ``strtol(text, NULL, 10)``: leading blanks, sign, digits, stop at the rest."""
    text = text.lstrip(_C_SPACE)
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    digits = ""
    for char in text:
        if not "0" <= char <= "9":
            break
        digits += char
    value = sign * int(digits) if digits else 0
    return max(-_LONG_MAX - 1, min(_LONG_MAX, value))


def parse_priority_option(value: str) -> dict[str, int]:
    """Parse one ``compression-algo-priority`` value the way ocserv does.

    ocserv (``switch_comp_priority``) takes ``NAME:NUMBER``: ``strtok(":")`` gives the
    name (first non-empty token) and the number (second non-empty token, read with
    ``strtol``, so trailing junk after the digits and any further ``:`` fields are
    ignored).  It accepts the entry only when the number is > 0 and the name is a
    known algorithm (case-insensitive), otherwise it prints "invalid compression
    modstring" and keeps its defaults.  Each config line sets one algorithm; repeated
    lines accumulate, so callers merge the returned dicts in file order.

    So ``lzs:95`` -> {"lzs": 95}; ``oc-lz4:1000`` -> {"oc-lz4": 1000}; the
    ``lz4:lzs`` form seen in examples is rejected twice over ("lz4" is not a method
    name, and "lzs" reads as priority 0).  Raises ``CompressionError`` for every
    value ocserv would warn about.  The number is stored as a C ``unsigned``, so it
    is reduced modulo 2**32 like ocserv does.
    """
    tokens = [token for token in value.strip().split(":") if token]
    algo = tokens[0] if tokens else ""
    priority = _strtol(tokens[1]) if len(tokens) > 1 else -1
    if not algo or priority <= 0:
        raise CompressionError(f"invalid compression modstring {value!r}: want NAME:NUMBER")
    name = algo.lower()
    if name not in ALGORITHMS:
        raise CompressionError(
            f"invalid compression modstring {value!r}: unknown algorithm {algo!r}"
        )
    return {name: priority & 0xFFFFFFFF}


class Compressor:
    """Per-channel packet compressor for one negotiated algorithm (§6.2).

    Stateless across packets, so one instance can serve any number of packets (and
    both channels when they negotiated the same algorithm).
    """

    def __init__(self, name: str, no_compress_limit: int = DEFAULT_NO_COMPRESS_LIMIT) -> None:
        """``name``: a negotiated algorithm; ``no_compress_limit``: see ``compress``.

        Limits below 64 are raised to 64, as ocserv's config loader does.
        """
        key = name.strip().lower()
        if key not in _CODECS:
            raise CompressionError(f"unknown compression algorithm {name!r}")
        self.name = cast(Algorithm, key)  # checked against _CODECS just above
        self.no_compress_limit = max(no_compress_limit, MIN_NO_COMPRESS_LIMIT)
        self._compress, self._decompress, self._error = _CODECS[self.name]

    def __repr__(self) -> str:
        return f"Compressor({self.name!r}, no_compress_limit={self.no_compress_limit})"

    def compress(self, packet: bytes) -> bytes | None:
        """The compressed payload, or None to send the packet plain.

        Like ocserv: packets not longer than ``no_compress_limit`` are never tried
        (small packets are often latency-sensitive, e.g. VoIP), and the result is
        used only when it is strictly smaller than the packet.
        """
        if len(packet) <= self.no_compress_limit:
            return None
        return self._compress(packet, None)

    def decompress(self, payload: bytes, max_out: int) -> bytes:
        """The packet inside a type-0x08 payload of at most ``max_out`` bytes.

        Raises the codec's error (``LzsError`` / ``Lz4Error``, see DECOMPRESS_ERRORS)
        for a malformed payload, one that expands beyond ``max_out``, and one that
        decodes to nothing, which ocserv also treats as an error.
        """
        packet = self._decompress(payload, max_out)
        if not packet:
            raise self._error(f"{self.name} payload decodes to an empty packet")
        return packet
