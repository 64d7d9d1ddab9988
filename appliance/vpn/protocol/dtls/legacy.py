"""Legacy (non-PSK) DTLS for clients that do not offer PSK-NEGOTIATE, sans-IO (docs/protocol.md
§5.1, §5.4, §5.5, §5.7, §11 items 21-28).

The client invents a 48-byte master secret, sends it in ``X-DTLS-Master-Secret`` and then
"resumes" a session that never existed: its ClientHello carries the session id we
announced, and the server answers with the abbreviated handshake (ServerHello, CCS,
Finished; then the client's CCS, Finished). No key exchange happens, so no library is
needed: OpenSSL cannot be driven into the server half of this from Python anyway (it has
no server-side DTLS1_BAD_VER and no public way to inject a session), so we run it here:

* DTLS 1.2 (0xFEFD) with AES-GCM suites, named by ``X-DTLS12-CipherSuite`` (Cisco) or the
  ``OC-DTLS1_2-*`` names of ``X-DTLS-CipherSuite`` (openconnect). Records then go through
  ``protocol.dtls.DtlsRecordLayer``, exactly like the PSK path.
* Cisco's pre-standard "DTLS 0.9" (0x0100, OpenSSL's DTLS1_BAD_VER) with AES-CBC +
  HMAC-SHA1, which needs its own record layer (``CbcRecordLayer``) and two quirks: the
  handshake hash covers the message bodies only (no handshake headers), and the
  ChangeCipherSpec carries a 2-byte handshake sequence number.

Deliberately not done: HelloVerifyRequest (Cisco clients do not expect it), fragmented
handshake messages (a ClientHello without extensions is ~100 bytes; fragments are refused
with ``LegacyDtlsError``), DES-CBC3-SHA, Cisco's DTLS 1.2 CBC names, extended master secret
and renegotiation_info (none of these fake sessions has them; ocserv sends neither).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..tls.record import CipherInfo, tls12_prf
from .record import (
    ALERT_CLOSE_NOTIFY,
    ALERT_FATAL,
    ALERT_WARNING,
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    DTLS10,
    DTLS12,
    DTLS_BAD_VER,
    MAX_PLAINTEXT,
    RECORD_HEADER_LEN,
    DtlsClosed,
    DtlsKeys,
    DtlsRecordLayer,
    HelloReader,
    ReplayWindow,
    iter_records,
)

log = logging.getLogger(__name__)

HS_CLIENT_HELLO = 1
HS_SERVER_HELLO = 2
HS_FINISHED = 20
HS_HEADER_LEN = 12
VERIFY_LEN = 12
MASTER_SECRET_LEN = 48
SESSION_ID_LEN = 32

_SEQ_MASK = (1 << 48) - 1
_HDR = struct.Struct("!BHQH")  # type, version, epoch<<48 | seq, length
_MAC_HDR = struct.Struct("!QBHH")  # epoch||seq, type, version, length (RFC 4347 §4.1.2.1)
_SHA1_LEN = 20
_BLOCK = 16


class LegacyDtlsError(ValueError):
    """A datagram this handshake cannot use; the caller drops it and carries on."""


class LegacyHandshakeFailed(LegacyDtlsError):
    """The client cannot complete this handshake at all (wrong version, suite, secret)."""


# --------------------------------------------------------------------------- suites


@dataclass(frozen=True)
class LegacySuite:
    """One name a client may offer in ``X-DTLS-CipherSuite`` / ``X-DTLS12-CipherSuite``."""

    name: str
    dtls12_header: bool  # announced in X-DTLS12-CipherSuite (Cisco DTLS 1.2, §5.5)
    code: int  # the TLS cipher suite number in the hellos
    version: int  # DTLS12 or DTLS_BAD_VER
    bulk: str  # GnuTLS spelling: AES-128-GCM, AES-256-GCM, AES-128-CBC, AES-256-CBC
    key_len: int
    prf_hash: str  # "sha256" / "sha384" (TLS 1.2 PRF) or "md5-sha1" (TLS 1.0 PRF)
    kx: str  # only names the suite; no key exchange ever runs
    priority: int  # ocserv's server_prio

    @property
    def aead(self) -> bool:
        return self.bulk.endswith("GCM")

    @property
    def overhead(self) -> int:
        """Bytes a DTLS data packet adds to the IP packet (1-byte payload header + record
        header + explicit nonce/IV + tag/MAC and one block of padding), as ocserv counts
        it for X-DTLS-MTU."""
        record = 8 + 16 if self.aead else _SHA1_LEN + 2 * _BLOCK
        return 1 + RECORD_HEADER_LEN + record

    @property
    def description(self) -> str:
        """GnuTLS style, as openconnect prints it and occtl shows it."""
        if self.version == DTLS_BAD_VER:
            return f"(DTLS0.9)-({self.kx})-({self.bulk})-(SHA1)"
        return f"(DTLS1.2)-({self.kx})-({self.bulk})"


def _suite(name: str, dtls12: bool, code: int, bulk: str, prio: int,
           kx: str = "RSA") -> LegacySuite:
    key_len = 32 if "256" in bulk else 16
    if bulk.endswith("CBC"):
        return LegacySuite(name, dtls12, code, DTLS_BAD_VER, bulk, key_len, "md5-sha1", kx, prio)
    prf = "sha384" if key_len == 32 else "sha256"
    return LegacySuite(name, dtls12, code, DTLS12, bulk, key_len, prf, kx, prio)


# ocserv's tables and priorities (docs/protocol.md §5.1); openconnect's names (§5.4, §5.5).
DTLS12_SUITES: dict[str, LegacySuite] = {s.name: s for s in (
    _suite("AES256-GCM-SHA384", True, 0x009D, "AES-256-GCM", 90),
    _suite("ECDHE-RSA-AES256-GCM-SHA384", True, 0xC030, "AES-256-GCM", 80, "ECDHE-RSA"),
    _suite("ECDHE-RSA-AES128-GCM-SHA256", True, 0xC02F, "AES-128-GCM", 70, "ECDHE-RSA"),
    _suite("AES128-GCM-SHA256", True, 0x009C, "AES-128-GCM", 50),
)}
LEGACY_SUITES: dict[str, LegacySuite] = {s.name: s for s in (
    _suite("OC-DTLS1_2-AES256-GCM", False, 0x009D, "AES-256-GCM", 90),
    _suite("OC-DTLS1_2-AES128-GCM", False, 0x009C, "AES-128-GCM", 80),
    _suite("AES256-SHA", False, 0x0035, "AES-256-CBC", 60),
    _suite("AES128-SHA", False, 0x002F, "AES-128-CBC", 50),
)}


def _pick(offered: Iterable[str], table: dict[str, LegacySuite],
          tls_bulk: str | None) -> LegacySuite | None:
    """ocserv's rule: the first offered suite with the TLS session's cipher wins; failing
    that, the offered suite with the highest server priority. Unknown names are skipped."""
    best: LegacySuite | None = None
    for name in offered:
        suite = table.get(name.strip())
        if suite is None:
            continue
        if suite.bulk == tls_bulk:
            return suite
        if best is None or suite.priority > best.priority:
            best = suite
    return best


def select_suite(dtls_offer: Sequence[str], dtls12_offer: Sequence[str],
                 tls_bulk: str | None = None) -> LegacySuite | None:
    """The suite to announce, or None when the client offered nothing we can run.

    ``tls_bulk`` is the CSTP session's cipher in GnuTLS spelling (``AES-256-GCM``); the
    X-DTLS12-CipherSuite candidate wins over the X-DTLS-CipherSuite one, as in ocserv.
    """
    return _pick(dtls12_offer, DTLS12_SUITES, tls_bulk) or _pick(dtls_offer, LEGACY_SUITES,
                                                                 tls_bulk)


# --------------------------------------------------------------------------- key schedule


def tls10_prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """RFC 2246 §5 PRF (TLS 1.0, hence DTLS 0.9): P_MD5 over the first half of the secret
    XOR P_SHA1 over the second half (the halves overlap by a byte when its length is odd)."""
    half = (len(secret) + 1) // 2
    md5 = tls12_prf("md5", secret[:half], label, seed, length)
    sha = tls12_prf("sha1", secret[len(secret) - half:], label, seed, length)
    return bytes(a ^ b for a, b in zip(md5, sha, strict=True))


def prf(suite: LegacySuite, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    if suite.prf_hash == "md5-sha1":
        return tls10_prf(secret, label, seed, length)
    return tls12_prf(suite.prf_hash, secret, label, seed, length)


@dataclass(frozen=True)
class KeyBlock:
    """The slices of the key expansion this server uses (MAC keys empty for AEAD)."""

    client_mac: bytes
    server_mac: bytes
    client_key: bytes
    server_key: bytes
    client_iv: bytes  # GCM: 4-byte salt; CBC: unused (DTLS 1.0 IVs are explicit)
    server_iv: bytes


def key_block(suite: LegacySuite, master: bytes, client_random: bytes,
              server_random: bytes) -> KeyBlock:
    """RFC 5246 §6.3 (and RFC 2246 §6.3) key expansion: seed is server_random first."""
    mac = 0 if suite.aead else _SHA1_LEN
    iv = 4 if suite.aead else _BLOCK
    k = suite.key_len
    raw = prf(suite, master, b"key expansion", server_random + client_random,
              2 * (mac + k + iv))
    parts = []
    pos = 0
    for size in (mac, mac, k, k, iv, iv):
        parts.append(raw[pos:pos + size])
        pos += size
    return KeyBlock(*parts)


def transcript_hash(suite: LegacySuite, messages: Iterable[bytes]) -> bytes:
    """The handshake hash Finished is computed over: SHA-256/384 for DTLS 1.2, MD5 || SHA-1
    for DTLS 0.9. ``messages`` are what that version hashes (see ``_hashed``)."""
    if suite.prf_hash == "md5-sha1":
        md5, sha1 = hashlib.md5(usedforsecurity=True), hashlib.sha1()
        for m in messages:
            md5.update(m)
            sha1.update(m)
        return md5.digest() + sha1.digest()
    h = hashlib.new(suite.prf_hash)
    for m in messages:
        h.update(m)
    return h.digest()


def verify_data(suite: LegacySuite, master: bytes, label: bytes,
                messages: Iterable[bytes]) -> bytes:
    """Finished.verify_data (RFC 5246 §7.4.9): PRF(master, label, Hash(handshake))[:12]."""
    return prf(suite, master, label, transcript_hash(suite, messages), VERIFY_LEN)


def _hashed(suite: LegacySuite, message: bytes) -> bytes:
    """What of a whole handshake message (12-byte header + body) enters the hash.

    DTLS 1.2 (RFC 6347 §4.2.6) hashes the full DTLS header; Cisco's DTLS 0.9 hashes the
    body alone (OpenSSL's DTLS1_BAD_VER behaviour, confirmed by the captured exchange).
    """
    return message[HS_HEADER_LEN:] if suite.version == DTLS_BAD_VER else message


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class ParsedHello:
    """The parts of a resumption ClientHello the handshake checks."""

    version: int
    random: bytes
    session_id: bytes
    suites: tuple[int, ...]
    compressions: bytes
    extensions: bytes
    message: bytes  # the whole handshake message, header included


def parse_handshake_header(fragment: bytes) -> tuple[int, int, int, bytes]:
    """(msg_type, message_seq, length, body) of an unfragmented handshake message.

    Fragments are refused: the messages of this handshake are small enough that no client
    splits them, and reassembly state is a gift to anyone spraying spoofed datagrams.
    """
    if len(fragment) < HS_HEADER_LEN:
        raise LegacyDtlsError("truncated handshake header")
    msg_type = fragment[0]
    length = int.from_bytes(fragment[1:4], "big")
    message_seq = int.from_bytes(fragment[4:6], "big")
    frag_off = int.from_bytes(fragment[6:9], "big")
    frag_len = int.from_bytes(fragment[9:12], "big")
    if frag_off != 0 or frag_len != length:
        raise LegacyDtlsError(f"fragmented handshake message (offset {frag_off}, "
                              f"{frag_len} of {length} bytes) refused")
    if len(fragment) != HS_HEADER_LEN + length:
        raise LegacyDtlsError("handshake message length disagrees with its record")
    return msg_type, message_seq, length, fragment[HS_HEADER_LEN:]


def parse_client_hello(fragment: bytes) -> ParsedHello:
    """A ClientHello handshake message (one record's fragment), fully checked."""
    msg_type, _seq, _length, body = parse_handshake_header(fragment)
    if msg_type != HS_CLIENT_HELLO:
        raise LegacyDtlsError(f"expected a ClientHello, got handshake type {msg_type}")
    c = HelloReader(body, LegacyDtlsError)
    version = int.from_bytes(c.take(2, "version"), "big")
    random = c.take(32, "random")
    session_id = c.vector(1, "session id")
    if len(session_id) > 32:
        raise LegacyDtlsError(f"session id of {len(session_id)} bytes")
    c.vector(1, "cookie")
    raw_suites = c.vector(2, "cipher suites")
    if len(raw_suites) % 2 or not raw_suites:
        raise LegacyDtlsError("malformed cipher suite list")
    compressions = c.vector(1, "compression methods")
    extensions = c.vector(2, "extensions") if c.pos < len(body) else b""
    if c.pos != len(body):
        raise LegacyDtlsError("trailing bytes after the ClientHello")
    _check_extensions(extensions)
    suites = tuple(int.from_bytes(raw_suites[i:i + 2], "big")
                   for i in range(0, len(raw_suites), 2))
    return ParsedHello(version, random, session_id, suites, compressions, extensions,
                       fragment)


def _check_extensions(extensions: bytes) -> None:
    c = HelloReader(extensions, LegacyDtlsError)
    while c.pos < len(extensions):
        c.take(2, "extension type")
        c.vector(2, "extension body")


def handshake_message(msg_type: int, message_seq: int, body: bytes) -> bytes:
    """An unfragmented DTLS handshake message: 12-byte header + body."""
    n = len(body).to_bytes(3, "big")
    return (bytes((msg_type,)) + n + message_seq.to_bytes(2, "big") + b"\x00\x00\x00" + n
            + body)


def server_hello_body(version: int, server_random: bytes, session_id: bytes, suite: int) -> bytes:
    """ServerHello without extensions: the fake session has neither EMS nor secure
    renegotiation, and a bare hello is what every legacy client accepts (§5.4, §5.5)."""
    return (version.to_bytes(2, "big") + server_random + bytes((len(session_id),))
            + session_id + suite.to_bytes(2, "big") + b"\x00")


def _record_versions(suite: LegacySuite) -> tuple[int, ...]:
    """Record versions a client may use: a DTLS 1.2 client may send its first flight as
    DTLS 1.0 records (RFC 6347 §4.1; OpenSSL does), DTLS 0.9 has only its own."""
    return (DTLS_BAD_VER,) if suite.version == DTLS_BAD_VER else (DTLS12, DTLS10)


def plain_record(ctype: int, version: int, epoch: int, seq: int, fragment: bytes) -> bytes:
    return _HDR.pack(ctype, version, (epoch << 48) | seq, len(fragment)) + fragment


# --------------------------------------------------------------------------- CBC records


class CbcRecordLayer:
    """DTLS 0.9 records with AES-CBC + HMAC-SHA1 (MAC-then-encrypt, explicit IV per
    record, RFC 4347 with Cisco's 0x0100 version). Same interface as DtlsRecordLayer as
    far as worker/dtlschannel.py and worker/datapath.py use it.

    The MAC is always computed and compared with ``hmac.compare_digest`` whatever the
    padding looked like, so a bad pad and a bad MAC take the same path (Lucky 13 style
    timing differences shrink to Python's noise; the fix of record is to prefer GCM).
    """

    MAX_FLIGHT_RESENDS = 8

    def __init__(self, read_key: bytes, read_mac: bytes, write_key: bytes, write_mac: bytes,
                 epoch: int = 1, write_seq: int = 0, window: int = 64) -> None:
        self._read = algorithms.AES(read_key)
        self._write = algorithms.AES(write_key)
        self._read_mac = read_mac
        self._write_mac = write_mac
        self.epoch = epoch
        self.write_seq = write_seq
        self.window = ReplayWindow(window)
        self.pending: list[bytes] = []
        self.dropped = 0
        self.final_flight: list[bytes] = []
        self.renegotiation_refused = 0
        self.overhead = RECORD_HEADER_LEN + _BLOCK + _SHA1_LEN + _BLOCK

    # sealing ---------------------------------------------------------------------------------

    def seal(self, plain: bytes, content_type: int = CT_APPLICATION_DATA,
             iv: bytes | None = None) -> bytes:
        """One record; ``iv`` only for tests (default: 16 fresh random bytes)."""
        seq = self.write_seq
        if seq > _SEQ_MASK:
            raise LegacyDtlsError("DTLS sequence numbers exhausted; a new handshake is needed")
        n = len(plain)
        if n > MAX_PLAINTEXT:
            raise LegacyDtlsError(f"{n} bytes do not fit one DTLS record")
        self.write_seq = seq + 1
        es = (self.epoch << 48) | seq
        mac = hmac.digest(self._write_mac, _MAC_HDR.pack(es, content_type, DTLS_BAD_VER, n)
                          + plain, "sha1")
        pad = _BLOCK - 1 - (n + _SHA1_LEN) % _BLOCK
        iv = iv if iv is not None else os.urandom(_BLOCK)
        enc = Cipher(self._write, modes.CBC(iv)).encryptor()
        body = iv + enc.update(plain + mac + bytes((pad,)) * (pad + 1)) + enc.finalize()
        return _HDR.pack(content_type, DTLS_BAD_VER, es, len(body)) + body

    def seal_many(self, chunks: Sequence[bytes]) -> list[bytes]:
        return [self.seal(c) for c in chunks]

    def close_notify(self) -> bytes:
        return self.seal(bytes((ALERT_WARNING, ALERT_CLOSE_NOTIFY)), CT_ALERT)

    # opening ---------------------------------------------------------------------------------

    def open_record(self, ctype: int, version: int, epoch: int, seq: int,
                    body: bytes) -> bytes | None:
        """The plaintext of one record if it is ours, fresh and authentic; else None."""
        if (version != DTLS_BAD_VER or epoch != self.epoch or len(body) < 2 * _BLOCK + _BLOCK
                or len(body) % _BLOCK or not self.window.check(seq)):
            return None
        dec = Cipher(self._read, modes.CBC(body[:_BLOCK])).decryptor()
        padded = dec.update(body[_BLOCK:]) + dec.finalize()
        pad = padded[-1]
        good_pad = pad + 1 + _SHA1_LEN <= len(padded)
        if good_pad:
            good_pad = padded[-pad - 1:] == bytes((pad,)) * (pad + 1)
        if not good_pad:
            pad = 0  # keep going so that a bad pad costs the same MAC computation
        n = len(padded) - pad - 1 - _SHA1_LEN
        plain, mac = padded[:n], padded[n:n + _SHA1_LEN]
        expected = hmac.digest(self._read_mac, _MAC_HDR.pack((epoch << 48) | seq, ctype,
                                                             version, n) + plain, "sha1")
        if not (hmac.compare_digest(mac, expected) and good_pad):
            return None
        self.window.accept(seq)
        return plain

    def open(self, datagram: bytes) -> list[bytes]:
        """Application-data plaintexts of every authentic, fresh record; DtlsClosed on an
        authentic close_notify or fatal alert; everything else is dropped and counted."""
        out: list[bytes] = []
        consumed = 0
        for ctype, version, epoch, seq, body in iter_records(bytes(datagram)):
            consumed += RECORD_HEADER_LEN + len(body)
            plain = self.open_record(ctype, version, epoch, seq, body)
            if plain is None:
                self.dropped += 1
            elif ctype == CT_APPLICATION_DATA:
                if plain:
                    out.append(plain)
            else:
                self._control(ctype, plain)
        if consumed < len(datagram):
            self.dropped += 1
        return out

    def open_many(self, datagrams: Iterable[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for d in datagrams:
            out += self.open(d)
        return out

    def _control(self, ctype: int, plain: bytes) -> None:
        if ctype == CT_ALERT and len(plain) == 2 and (plain[1] == ALERT_CLOSE_NOTIFY
                                                      or plain[0] == ALERT_FATAL):
            raise DtlsClosed(plain[1], plain[0] == ALERT_FATAL)
        self.dropped += 1  # a repeated Finished or anything else: nothing to do


# --------------------------------------------------------------------------- handshake


@dataclass
class _Flight:
    """What we sent, kept so that retransmissions reuse the same messages."""

    server_hello: bytes  # whole handshake message
    finished: bytes  # whole handshake message
    ccs: bytes  # ChangeCipherSpec fragment


@dataclass
class LegacyServerHandshake:
    """Server side of the fake-resumption handshake. Feed it client datagrams with the
    current time; send what it returns; after ``done`` take ``record_layer()``.

    ``server_random`` is injectable for tests; by default each ClientHello gets a fresh
    one. Retransmission follows RFC 6347 §4.2.4: our flight again on a repeated
    ClientHello, or when ``timeout(now)`` reaches 0 without the client's Finished.
    """

    suite: LegacySuite
    session_id: bytes
    master_secret: bytes
    server_random: bytes | None = None
    initial_timeout: float = 1.0
    max_retransmits: int = 6
    done: bool = False
    hello: ParsedHello | None = None
    ignored: int = 0
    _flight: _Flight | None = None
    _datagrams: list[bytes] = field(default_factory=list)
    _keys: KeyBlock | None = None
    _expected_client_verify: bytes = b""
    _seq0: int = 0  # next epoch-0 record sequence number
    _seq1: int = 0  # next epoch-1 record sequence number
    _retransmit_at: float | None = None
    _interval: float = 1.0
    _retransmits: int = 0
    _gcm_read: AESGCM | None = None

    def __post_init__(self) -> None:
        if len(self.master_secret) != MASTER_SECRET_LEN:
            raise ValueError("the DTLS master secret must be 48 bytes")
        if not 1 <= len(self.session_id) <= 32:
            raise ValueError("session id must be 1..32 bytes")

    @property
    def description(self) -> str:
        return self.suite.description

    # driving --------------------------------------------------------------------------------

    def feed(self, datagram: bytes, now: float) -> list[bytes]:
        """Process one client datagram; returns the datagrams to send.

        Raises LegacyDtlsError for a datagram that must be dropped (the handshake goes
        on), LegacyHandshakeFailed when this client can never complete it.
        """
        if self.done:
            raise LegacyDtlsError("handshake already complete")
        out: list[bytes] = []
        seen = 0
        for ctype, version, epoch, seq, fragment in iter_records(bytes(datagram)):
            seen += 1
            if version not in _record_versions(self.suite):
                raise LegacyDtlsError(f"record version 0x{version:04x}, expected "
                                      f"0x{self.suite.version:04x}")
            if epoch == 0 and ctype == CT_HANDSHAKE:
                out = self._on_client_hello(parse_client_hello(fragment), now)
            elif epoch == 0 and ctype == CT_CHANGE_CIPHER_SPEC:
                self._check_ccs(fragment)
            elif epoch == 1 and self._keys is not None:
                if self._on_epoch1(ctype, version, seq, fragment):
                    return out
            else:
                self.ignored += 1
        if not seen:
            raise LegacyDtlsError("no complete DTLS record in the datagram")
        return out

    def timeout(self, now: float) -> float | None:
        """Seconds until ``on_timeout`` should run (None: nothing to retransmit)."""
        if self.done or self._retransmit_at is None:
            return None
        return max(0.0, self._retransmit_at - now)

    def on_timeout(self, now: float) -> list[bytes]:
        """Our flight again if the client has been silent too long (doubling intervals)."""
        if self.done or self._retransmit_at is None or now < self._retransmit_at:
            return []
        if self._retransmits >= self.max_retransmits:
            raise LegacyHandshakeFailed("client never sent its Finished")
        return self._retransmit(now)

    # steps ----------------------------------------------------------------------------------

    def _on_client_hello(self, hello: ParsedHello, now: float) -> list[bytes]:
        if self.hello is not None and hello.message == self.hello.message:
            return self._retransmit(now)  # our flight was lost
        self._check_hello(hello)
        self.hello = hello
        server_random = self.server_random or os.urandom(32)
        self._keys = key_block(self.suite, self.master_secret, hello.random, server_random)
        v = self.suite.version
        sh = handshake_message(HS_SERVER_HELLO, 0, server_hello_body(
            v, server_random, self.session_id, self.suite.code))
        # DTLS 0.9's CCS takes a handshake sequence number of its own (§5.4), so the
        # Finished is message 2 there and 1 in DTLS 1.2.
        bad = v == DTLS_BAD_VER
        ccs = b"\x01\x00\x01" if bad else b"\x01"
        hashed = [_hashed(self.suite, hello.message), _hashed(self.suite, sh)]
        server_verify = verify_data(self.suite, self.master_secret, b"server finished", hashed)
        fin = handshake_message(HS_FINISHED, 2 if bad else 1, server_verify)
        self._expected_client_verify = verify_data(
            self.suite, self.master_secret, b"client finished",
            [*hashed, _hashed(self.suite, fin)])
        self._flight = _Flight(sh, fin, ccs)
        if self.suite.aead:
            self._gcm_read = AESGCM(self._keys.client_key)
        self._interval = self.initial_timeout
        self._retransmits = -1
        log.debug("legacy DTLS: resuming %s for ClientHello (%d suites offered)",
                  self.suite.name, len(hello.suites))
        return self._retransmit(now)

    def _check_hello(self, hello: ParsedHello) -> None:
        if hello.version != self.suite.version:
            raise LegacyHandshakeFailed(f"ClientHello version 0x{hello.version:04x}, the "
                                        f"announced suite needs 0x{self.suite.version:04x}")
        if hello.session_id != self.session_id:
            raise LegacyDtlsError("ClientHello for another session id")
        if not any(hello.random):
            raise LegacyDtlsError("ClientHello with an all-zero random (buggy GnuTLS)")
        if self.suite.code not in hello.suites:
            raise LegacyHandshakeFailed(f"client did not offer the announced suite "
                                        f"{self.suite.name} (0x{self.suite.code:04x})")
        if 0 not in hello.compressions:
            raise LegacyHandshakeFailed("client does not offer null compression")

    def _check_ccs(self, fragment: bytes) -> None:
        if self._flight is None:
            raise LegacyDtlsError("ChangeCipherSpec before any ClientHello")
        want = 3 if self.suite.version == DTLS_BAD_VER else 1
        if len(fragment) != want or fragment[0] != 1:
            raise LegacyDtlsError("malformed ChangeCipherSpec")

    def _retransmit(self, now: float) -> list[bytes]:
        """Our whole flight, each record under a new sequence number (RFC 6347 §4.2.4)."""
        flight = self._flight
        assert flight is not None and self._keys is not None
        v = self.suite.version
        sh = plain_record(CT_HANDSHAKE, v, 0, self._seq0, flight.server_hello)
        ccs = plain_record(CT_CHANGE_CIPHER_SPEC, v, 0, self._seq0 + 1, flight.ccs)
        self._seq0 += 2
        fin = self._seal_epoch1(flight.finished)
        self._retransmits += 1
        self._retransmit_at = now + self._interval
        self._interval = min(self._interval * 2, 10.0)
        self._datagrams = [sh + ccs + fin]
        return list(self._datagrams)

    def _seal_epoch1(self, message: bytes) -> bytes:
        keys = self._keys
        assert keys is not None
        seq = self._seq1
        self._seq1 += 1
        if self.suite.aead:
            rl = DtlsRecordLayer(self._dtls_keys(seq))
            return rl.seal(message, CT_HANDSHAKE)
        cbc = CbcRecordLayer(keys.client_key, keys.client_mac, keys.server_key,
                             keys.server_mac, 1, seq)
        return cbc.seal(message, CT_HANDSHAKE)

    def _dtls_keys(self, write_seq: int) -> DtlsKeys:
        keys = self._keys
        assert keys is not None
        cipher = CipherInfo(self.suite.bulk, self.suite.key_len, self.suite.prf_hash)
        return DtlsKeys(cipher, keys.client_key, keys.client_iv, keys.server_key,
                        keys.server_iv, 1, write_seq)

    def _on_epoch1(self, ctype: int, version: int, seq: int, body: bytes) -> bool:
        """An encrypted record while we wait for the client's Finished: True once done."""
        plain = self._open_epoch1(ctype, version, seq, body)
        if plain is None:
            self.ignored += 1
            return False
        if ctype == CT_HANDSHAKE:
            msg_type, _mseq, _n, verify = parse_handshake_header(plain)
            if msg_type != HS_FINISHED:
                raise LegacyDtlsError(f"unexpected encrypted handshake message {msg_type}")
            if not hmac.compare_digest(verify, self._expected_client_verify):
                raise LegacyHandshakeFailed("client Finished does not verify (wrong master "
                                            "secret or a tampered handshake)")
            self._complete("Finished")
            return True
        if ctype == CT_APPLICATION_DATA:
            # Its Finished was lost but the client already sends data under the keys only
            # it and we can know: the handshake is complete from its side.
            self._complete("authenticated data")
            return True
        self.ignored += 1
        return False

    def _open_epoch1(self, ctype: int, version: int, seq: int, body: bytes) -> bytes | None:
        keys = self._keys
        assert keys is not None
        if self.suite.aead:
            if len(body) < 8 + 16 or self._gcm_read is None:
                return None
            es = (1 << 48) | seq
            aad = _MAC_HDR.pack(es, ctype, version, len(body) - 24)
            try:
                return self._gcm_read.decrypt(keys.client_iv + body[:8], body[8:], aad)
            except InvalidTag:
                return None
        cbc = CbcRecordLayer(keys.client_key, keys.client_mac, keys.server_key, keys.server_mac)
        return cbc.open_record(ctype, version, 1, seq, body)

    def _complete(self, how: str) -> None:
        self.done = True
        self._retransmit_at = None
        log.debug("legacy DTLS handshake complete (%s): %s", how, self.description)

    # result ---------------------------------------------------------------------------------

    def record_layer(self) -> DtlsRecordLayer | CbcRecordLayer:
        """The session's record layer, continuing after the sequence numbers we used."""
        if not self.done or self._keys is None:
            raise LegacyDtlsError("legacy DTLS handshake not complete")
        if self.suite.aead:
            return DtlsRecordLayer(self._dtls_keys(self._seq1))
        k = self._keys
        return CbcRecordLayer(k.client_key, k.client_mac, k.server_key, k.server_mac, 1,
                              self._seq1)
