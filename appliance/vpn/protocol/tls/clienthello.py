"""What a TLS ClientHello asks for, read before OpenSSL sees it: the SNI name and the ALPN list.

The sec-mod answers an ACME TLS-ALPN-01 validation (RFC 8737) on the VPN's own port: a
ClientHello that offers ALPN ``acme-tls/1`` must get the challenge certificate for its SNI
name instead of the server's.  OpenSSL picks the certificate before the ALPN callback runs
(and pyOpenSSL exposes no ClientHello callback), so the choice is made here, from the
plaintext records, before the handshake object is created.  Nothing is kept: the same
bytes then go to OpenSSL unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

CT_HANDSHAKE = 22
HS_CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
EXT_ALPN = 16
MAX_HELLO = 65536  # bytes of ClientHello body we wait for before calling it hostile


class ClientHelloError(ValueError):
    """Not a well-formed ClientHello: the handshake must fail."""


@dataclass(frozen=True)
class HelloInfo:
    sni: str | None
    alpn: tuple[bytes, ...]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ClientHelloError("truncated ClientHello")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, size: int) -> _Reader:
        return _Reader(self.take(self.number(size)))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _handshake_bytes(buf: bytes) -> bytes:
    """The handshake-layer bytes of the leading whole records, up to the first message."""
    out, pos = bytearray(), 0
    while pos + 5 <= len(buf):
        if buf[pos] != CT_HANDSHAKE:
            raise ClientHelloError(f"record type {buf[pos]} before the ClientHello")
        if buf[pos + 1] != 3:
            raise ClientHelloError("not a TLS record")
        length = int.from_bytes(buf[pos + 3:pos + 5], "big")
        if length == 0 or length > 16384:
            raise ClientHelloError("bad record length in the ClientHello")
        if pos + 5 + length > len(buf):
            break
        out += buf[pos + 5:pos + 5 + length]
        pos += 5 + length
        if len(out) >= 4 and len(out) >= 4 + int.from_bytes(out[1:4], "big"):
            break
    return bytes(out)


def peek_client_hello(buf: bytes) -> HelloInfo | None:
    """The SNI and ALPN of the ClientHello at the start of ``buf``; None until it is whole.

    Raises ClientHelloError for anything that is not a ClientHello (the caller fails the
    handshake, as OpenSSL would on the same bytes)."""
    hs = _handshake_bytes(buf)
    if len(hs) < 4:
        return None
    if hs[0] != HS_CLIENT_HELLO:
        raise ClientHelloError("the first handshake message is not a ClientHello")
    length = int.from_bytes(hs[1:4], "big")
    if length > MAX_HELLO:
        raise ClientHelloError("oversized ClientHello")
    if len(hs) < 4 + length:
        return None
    return _parse_body(hs[4:4 + length])


def _parse_body(body: bytes) -> HelloInfo:
    r = _Reader(body)
    r.take(2 + 32)  # legacy_version, random
    r.vector(1)  # legacy_session_id
    r.vector(2)  # cipher_suites
    r.vector(1)  # legacy_compression_methods
    sni: str | None = None
    alpn: tuple[bytes, ...] = ()
    if r.left == 0:  # a hello without extensions (TLS 1.2 allows it)
        return HelloInfo(None, ())
    extensions = r.vector(2)
    seen: set[int] = set()
    while extensions.left:
        kind = extensions.number(2)
        data = extensions.vector(2)
        if kind in seen:
            raise ClientHelloError(f"extension {kind} twice")  # RFC 8446 4.2
        seen.add(kind)
        if kind == EXT_SERVER_NAME:
            sni = _server_name(data)
        elif kind == EXT_ALPN:
            alpn = _protocols(data)
    return HelloInfo(sni, alpn)


def _server_name(data: _Reader) -> str | None:
    names = data.vector(2)
    while names.left:
        kind = names.number(1)
        name = names.vector(2).data
        if kind == 0:
            try:
                return name.decode("ascii")
            except UnicodeDecodeError:
                raise ClientHelloError("SNI name is not ASCII") from None
    return None


def _protocols(data: _Reader) -> tuple[bytes, ...]:
    names = data.vector(2)
    out = []
    while names.left:
        proto = names.vector(1).data
        if not proto:
            raise ClientHelloError("empty ALPN protocol name")
        out.append(proto)
    return tuple(out)
