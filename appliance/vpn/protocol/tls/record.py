"""Our own TLS 1.2/1.3 record layer for AEAD suites, sans-IO.

Why not OpenSSL's: the handshake must eventually run where the private key is (the security
module) while the worker only moves records (docs/architecture.md, "Key isolation"),
and sealing records ourselves is also several times cheaper per packet than pushing each
CSTP frame through pyOpenSSL or an ``ssl.SSLObject``. OpenSSL still does the handshake;
``TrafficKeys`` is all that crosses over.

Only AEAD suites exist here (AES-GCM, ChaCha20-Poly1305): the server never negotiates CBC.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ... import native

TLS12 = 0x0303
TLS13 = 0x0304

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23

HS_KEY_UPDATE = 24
ALERT_CLOSE_NOTIFY = 0

MAX_PLAINTEXT = 16384
# RFC 8446 5.2 allows 2^14 + 256 of ciphertext; TLS 1.2 (RFC 5246 6.2.3) 2^14 + 2048.
MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048

_HEADER = struct.Struct("!BHH")
_SEQ_AAD12 = struct.Struct("!QBHH")


class TlsRecordError(ValueError):
    """The peer sent something we cannot accept; the connection must end."""


class TlsClosed(Exception):
    """The peer sent close_notify: an orderly end, not an error."""


@dataclass(frozen=True)
class CipherInfo:
    """What the record layer needs to know about a negotiated suite."""

    aead: str  # "AES-128-GCM" | "AES-256-GCM" | "CHACHA20-POLY1305"
    key_len: int
    hash_name: str  # PRF/HKDF hash: "sha256" | "sha384"

    @property
    def iv_len12(self) -> int:
        """TLS 1.2 implicit IV length: GCM carries 8 of its 12 nonce bytes explicitly."""
        return 12 if self.aead == "CHACHA20-POLY1305" else 4


def cipher_info(openssl_name: str) -> CipherInfo:
    """Map an OpenSSL suite name (TLS 1.2 or 1.3 spelling) to what we need to run it."""
    name = openssl_name.upper()
    if "CHACHA20" in name:
        return CipherInfo("CHACHA20-POLY1305", 32, "sha256")
    if "AES256-GCM" in name or "AES_256_GCM" in name:
        return CipherInfo("AES-256-GCM", 32, "sha384")
    if "AES128-GCM" in name or "AES_128_GCM" in name:
        return CipherInfo("AES-128-GCM", 16, "sha256")
    raise TlsRecordError(f"unsupported cipher suite {openssl_name!r} (AEAD only)")


@dataclass(frozen=True)
class TrafficKeys:
    """Everything a worker needs to continue a TLS connection whose handshake ran elsewhere."""

    version: int
    cipher: CipherInfo
    read_key: bytes
    read_iv: bytes
    write_key: bytes
    write_iv: bytes
    read_seq: int = 0
    write_seq: int = 0
    # TLS 1.3 only: the current traffic secrets, needed to follow KeyUpdate.
    read_secret: bytes = b""
    write_secret: bytes = b""

    def to_wire(self) -> dict[str, str | int | list[str | int]]:
        """A JSON-able form for IPC between processes (ipc.TlsResult.keys)."""
        return {
            "version": self.version,
            "cipher": [self.cipher.aead, self.cipher.key_len, self.cipher.hash_name],
            "read_key": self.read_key.hex(), "read_iv": self.read_iv.hex(),
            "write_key": self.write_key.hex(), "write_iv": self.write_iv.hex(),
            "read_seq": self.read_seq, "write_seq": self.write_seq,
            "read_secret": self.read_secret.hex(), "write_secret": self.write_secret.hex(),
        }

    @classmethod
    def from_wire(cls, d: dict) -> TrafficKeys:
        aead, key_len, hash_name = d["cipher"]
        return cls(
            version=int(d["version"]), cipher=CipherInfo(aead, int(key_len), hash_name),
            read_key=bytes.fromhex(d["read_key"]), read_iv=bytes.fromhex(d["read_iv"]),
            write_key=bytes.fromhex(d["write_key"]), write_iv=bytes.fromhex(d["write_iv"]),
            read_seq=int(d["read_seq"]), write_seq=int(d["write_seq"]),
            read_secret=bytes.fromhex(d["read_secret"]),
            write_secret=bytes.fromhex(d["write_secret"]),
        )


# --- key schedules -------------------------------------------------------------------------

def tls12_prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 section 5 P_hash."""
    out = bytearray()
    a = label + seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + label + seed, hash_name)
    return bytes(out[:length])


def hkdf_expand_label(hash_name: str, secret: bytes, label: bytes, context: bytes,
                      length: int) -> bytes:
    """RFC 8446 section 7.1 HKDF-Expand-Label."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + bytes([len(context)]) + context
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(secret, block + info + bytes([counter]), hash_name)
        out += block
        counter += 1
    return bytes(out[:length])


def tls12_server_keys(cipher: CipherInfo, master_secret: bytes, client_random: bytes,
                      server_random: bytes) -> TrafficKeys:
    """Server-side keys of a fresh TLS 1.2 full handshake.

    Each side's Finished was record 0 of the new epoch, so application data starts at
    sequence 1 in both directions.
    """
    ivl = cipher.iv_len12
    block = tls12_prf(cipher.hash_name, master_secret, b"key expansion",
                      server_random + client_random, 2 * cipher.key_len + 2 * ivl)
    k = cipher.key_len
    client_key, server_key = block[:k], block[k:2 * k]
    client_iv, server_iv = block[2 * k:2 * k + ivl], block[2 * k + ivl:]
    return TrafficKeys(TLS12, cipher, client_key, client_iv, server_key, server_iv, 1, 1)


def _tls13_key_iv(cipher: CipherInfo, secret: bytes) -> tuple[bytes, bytes]:
    return (hkdf_expand_label(cipher.hash_name, secret, b"key", b"", cipher.key_len),
            hkdf_expand_label(cipher.hash_name, secret, b"iv", b"", 12))


def tls13_server_keys(cipher: CipherInfo, client_secret: bytes, server_secret: bytes,
                      server_records_sent: int = 0) -> TrafficKeys:
    """Server-side keys from the application traffic secrets (keylog *_TRAFFIC_SECRET_0)."""
    rk, riv = _tls13_key_iv(cipher, client_secret)
    wk, wiv = _tls13_key_iv(cipher, server_secret)
    return TrafficKeys(TLS13, cipher, rk, riv, wk, wiv, 0, server_records_sent,
                       client_secret, server_secret)


def _next_secret(cipher: CipherInfo, secret: bytes) -> bytes:
    digest_len = hashlib.new(cipher.hash_name).digest_size
    return hkdf_expand_label(cipher.hash_name, secret, b"traffic upd", b"", digest_len)


def _aead(cipher: CipherInfo, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return ChaCha20Poly1305(key) if cipher.aead == "CHACHA20-POLY1305" else AESGCM(key)


# --- the record layer ----------------------------------------------------------------------

class RecordLayer:
    """Seals and opens records of one established connection.

    ``seal`` makes exactly one record per call: openconnect drops a record holding more than
    one CSTP frame (docs/protocol.md 4.3), so callers seal frame by frame and send the joined
    records in one ``send()``.
    """

    def __init__(self, keys: TrafficKeys) -> None:
        self.keys = keys
        self._buf = bytearray()
        self.pending = bytearray()  # records we must send on our own (KeyUpdate answers)
        self._install_read(keys.read_key, keys.read_iv, keys.read_seq, keys.read_secret)
        self._install_write(keys.write_key, keys.write_iv, keys.write_seq, keys.write_secret)

    def _install_read(self, key: bytes, iv: bytes, seq: int, secret: bytes) -> None:
        self._raead = _aead(self.keys.cipher, key)
        self.native_read = native.aead(key, self.keys.cipher.aead == "CHACHA20-POLY1305")
        self._riv = int.from_bytes(iv, "big")
        self._riv_bytes = iv
        self.read_seq = seq
        self._rsecret = secret

    def _install_write(self, key: bytes, iv: bytes, seq: int, secret: bytes) -> None:
        self._waead = _aead(self.keys.cipher, key)
        self.native_write = native.aead(key, self.keys.cipher.aead == "CHACHA20-POLY1305")
        self._wiv = int.from_bytes(iv, "big")
        self._wiv_bytes = iv
        self.write_seq = seq
        self._wsecret = secret

    @property
    def native_mode(self) -> int:
        """The record kind as the native core names it (_fastpath.c MODE_*)."""
        if self.keys.version == TLS13:
            return 2
        return 1 if self.keys.cipher.aead == "CHACHA20-POLY1305" else 0

    # sealing ---------------------------------------------------------------------------------

    def seal(self, data: bytes, content_type: int = CT_APPLICATION_DATA) -> bytes:
        """One record carrying ``data`` (at most 16384 bytes)."""
        seq = self.write_seq
        self.write_seq = seq + 1
        if self.keys.version == TLS13:
            nonce = (self._wiv ^ seq).to_bytes(12, "big")
            header = _HEADER.pack(CT_APPLICATION_DATA, TLS12, len(data) + 17)
            return header + self._waead.encrypt(nonce, data + bytes((content_type,)), header)
        aad = _SEQ_AAD12.pack(seq, content_type, TLS12, len(data))
        if self.keys.cipher.aead == "CHACHA20-POLY1305":
            sealed = self._waead.encrypt((self._wiv ^ seq).to_bytes(12, "big"), data, aad)
            return _HEADER.pack(content_type, TLS12, len(sealed)) + sealed
        explicit = seq.to_bytes(8, "big")
        sealed = self._waead.encrypt(self._wiv_bytes + explicit, data, aad)
        return _HEADER.pack(content_type, TLS12, len(sealed) + 8) + explicit + sealed

    def seal_many(self, chunks: list[bytes]) -> bytes:
        """Each chunk in a record of its own, joined for a single send().

        The per-packet send path: the TLS 1.2 AES-GCM and TLS 1.3 cases are inlined.
        """
        seq = self.write_seq
        encrypt = self._waead.encrypt
        pack = _HEADER.pack
        out: list[bytes] = []
        append = out.append
        if self.keys.version == TLS13:
            iv = self._wiv
            for chunk in chunks:
                header = pack(CT_APPLICATION_DATA, TLS12, len(chunk) + 17)
                append(header)
                append(encrypt((iv ^ seq).to_bytes(12, "big"), chunk + b"\x17", header))
                seq += 1
        elif self.keys.cipher.aead != "CHACHA20-POLY1305":
            salt = self._wiv_bytes
            aad = _SEQ_AAD12.pack
            for chunk in chunks:
                explicit = seq.to_bytes(8, "big")
                append(pack(CT_APPLICATION_DATA, TLS12, len(chunk) + 24))
                append(explicit)
                append(encrypt(salt + explicit, chunk, aad(seq, CT_APPLICATION_DATA, TLS12,
                                                           len(chunk))))
                seq += 1
        else:
            seal = self.seal
            return b"".join([seal(c) for c in chunks])
        self.write_seq = seq
        return b"".join(out)

    def close_notify(self) -> bytes:
        return self.seal(bytes((1, ALERT_CLOSE_NOTIFY)), CT_ALERT)

    # opening ---------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[bytes]:
        """Open every complete record; returns application-data plaintexts in order.

        Raises TlsClosed on close_notify and TlsRecordError on anything that must end the
        connection (bad tag, fatal alert, renegotiation attempt, oversize record).
        This is the per-packet receive path: the common case (TLS 1.2 AES-GCM or TLS 1.3
        application data) is inlined; everything else goes through the general methods.
        """
        if self._buf:
            self._buf += data
            view = bytes(self._buf)
            self._buf.clear()
        else:
            view = data
        out: list[bytes] = []
        append = out.append
        pos = 0
        end = len(view)
        tls13 = self.keys.version == TLS13
        gcm12 = not tls13 and self.keys.cipher.aead != "CHACHA20-POLY1305"
        decrypt = self._raead.decrypt
        unpack = _HEADER.unpack_from
        try:
            while end - pos >= 5:
                ctype, _version, length = unpack(view, pos)
                if length > MAX_CIPHERTEXT:
                    raise TlsRecordError(f"record of {length} bytes is too large")
                body_end = pos + 5 + length
                if body_end > end:
                    break
                seq = self.read_seq
                if gcm12 and ctype == CT_APPLICATION_DATA and length >= 24:
                    try:
                        plain = decrypt(self._riv_bytes + view[pos + 5:pos + 13],
                                        view[pos + 13:body_end],
                                        _SEQ_AAD12.pack(seq, 23, TLS12, length - 24))
                    except InvalidTag:
                        raise TlsRecordError("bad record MAC") from None
                    self.read_seq = seq + 1
                    pos = body_end
                    append(plain)
                    continue
                if tls13 and ctype == CT_APPLICATION_DATA:
                    header = view[pos:pos + 5]
                    try:
                        inner = decrypt((self._riv ^ seq).to_bytes(12, "big"),
                                        view[pos + 5:body_end], header)
                    except InvalidTag:
                        raise TlsRecordError("bad record MAC") from None
                    self.read_seq = seq + 1
                    pos = body_end
                    if inner and inner[-1] == CT_APPLICATION_DATA:
                        if len(inner) > 1:
                            append(inner[:-1])
                        continue
                    self._handle_inner(inner, append)
                    decrypt = self._raead.decrypt  # a KeyUpdate may have installed a new key
                    continue
                header = view[pos:pos + 5]
                body = view[pos + 5:body_end]
                pos = body_end
                if tls13:
                    ctype, plain = self._open13(ctype, header, body)
                else:
                    plain = self._open12(ctype, body)
                self._dispatch(ctype, plain, append)
        finally:
            if pos < end:
                self._buf += view[pos:]
        return out

    def _handle_inner(self, inner: bytes, append: Callable[[bytes], None]) -> None:
        """A TLS 1.3 inner plaintext that is not plain application data (or is padded)."""
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            raise TlsRecordError("record without content type")
        self._dispatch(stripped[-1], stripped[:-1], append)

    def _dispatch(self, ctype: int, plain: bytes, append: Callable[[bytes], None]) -> None:
        if ctype == CT_APPLICATION_DATA:
            if plain:
                append(plain)
        elif ctype == CT_ALERT:
            self._alert(plain)
        elif ctype == CT_HANDSHAKE and self.keys.version == TLS13:
            self._post_handshake(plain)
        elif ctype == CT_CHANGE_CIPHER_SPEC and self.keys.version == TLS13:
            pass
        else:
            raise TlsRecordError(f"unexpected record type {ctype} after the handshake")

    def _open12(self, ctype: int, body: bytes) -> bytes:
        seq = self.read_seq
        try:
            if self.keys.cipher.aead == "CHACHA20-POLY1305":
                aad = _SEQ_AAD12.pack(seq, ctype, TLS12, len(body) - 16)
                plain = self._raead.decrypt((self._riv ^ seq).to_bytes(12, "big"), body, aad)
            else:
                if len(body) < 24:
                    raise TlsRecordError("record too short")
                aad = _SEQ_AAD12.pack(seq, ctype, TLS12, len(body) - 24)
                plain = self._raead.decrypt(self._riv_bytes + body[:8], body[8:], aad)
        except InvalidTag:
            raise TlsRecordError("bad record MAC") from None
        self.read_seq = seq + 1
        return plain

    def _open13(self, outer: int, header: bytes, body: bytes) -> tuple[int, bytes]:
        if outer == CT_CHANGE_CIPHER_SPEC:
            return outer, b""  # middlebox-compatibility CCS; unprotected and meaningless
        if outer != CT_APPLICATION_DATA:
            raise TlsRecordError(f"unprotected record type {outer} in TLS 1.3")
        seq = self.read_seq
        try:
            inner = self._raead.decrypt((self._riv ^ seq).to_bytes(12, "big"), body, header)
        except InvalidTag:
            raise TlsRecordError("bad record MAC") from None
        self.read_seq = seq + 1
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            raise TlsRecordError("record without content type")
        return stripped[-1], stripped[:-1]

    def _alert(self, plain: bytes) -> None:
        if len(plain) != 2:
            raise TlsRecordError("malformed alert")
        if plain[1] == ALERT_CLOSE_NOTIFY:
            raise TlsClosed()
        raise TlsRecordError(f"peer sent alert {plain[1]} (level {plain[0]})")

    def _post_handshake(self, plain: bytes) -> None:
        """TLS 1.3 KeyUpdate from the client; anything else post-handshake is refused."""
        pos = 0
        while pos < len(plain):
            if len(plain) - pos < 4:
                raise TlsRecordError("truncated handshake message")
            mtype = plain[pos]
            mlen = int.from_bytes(plain[pos + 1:pos + 4], "big")
            msg = plain[pos + 4:pos + 4 + mlen]
            pos += 4 + mlen
            if mtype != HS_KEY_UPDATE or len(msg) != 1 or msg[0] > 1:
                raise TlsRecordError(f"unexpected post-handshake message {mtype}")
            cipher = self.keys.cipher
            secret = _next_secret(cipher, self._rsecret)
            key, iv = _tls13_key_iv(cipher, secret)
            self._install_read(key, iv, 0, secret)
            if msg[0] == 1:  # update_requested: answer under the old key, then switch
                self.pending += self.seal(bytes((HS_KEY_UPDATE, 0, 0, 1, 0)), CT_HANDSHAKE)
                wsecret = _next_secret(cipher, self._wsecret)
                wkey, wiv = _tls13_key_iv(cipher, wsecret)
                self._install_write(wkey, wiv, 0, wsecret)

    def snapshot(self) -> TrafficKeys:
        """Current state, e.g. to hand the connection to another process."""
        cipher = self.keys.cipher
        rk = wk = b""
        if self.keys.version == TLS13:
            rk, riv = _tls13_key_iv(cipher, self._rsecret)
            wk, wiv = _tls13_key_iv(cipher, self._wsecret)
            return replace(self.keys, read_key=rk, read_iv=riv, write_key=wk, write_iv=wiv,
                           read_seq=self.read_seq, write_seq=self.write_seq,
                           read_secret=self._rsecret, write_secret=self._wsecret)
        return replace(self.keys, read_seq=self.read_seq, write_seq=self.write_seq)
