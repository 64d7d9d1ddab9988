"""The server side of the DTLS-PSK handshake (docs/protocol.md §5.3), sans-IO, ending in DtlsKeys.

OpenSSL (pyOpenSSL over memory BIOs) runs the handshake; once it completes we derive the
record keys ourselves from the master secret and randoms and leave every later record to
``protocol.dtls.DtlsRecordLayer``. pyOpenSSL has no PSK server API, so the callback goes in
through the cffi bindings that ``cryptography`` ships (``OpenSSL._util.lib``);
``tests/unit/test_dtls.py::test_cffi_psk_symbols_present`` fails loudly if they go away.

Facts this module is built on (checked against openconnect 9.01 / GnuTLS 3.7 and ocserv):

* openconnect's GnuTLS client sends its ClientHello WITHOUT extensions (no EMS, no
  renegotiation_info, no SNI) and the PSK identity ``psk``; any identity gets the key.
* It puts the App-ID in the ClientHello session id but does not expect it back: echoing it
  would announce a resumption. With the session cache off OpenSSL answers with an empty
  session id, which is what a fresh full handshake should look like.
* ocserv sends no HelloVerifyRequest; ``cookie_exchange=True`` enables one (HMAC cookie).
* Only DTLS 1.2 with AEAD suites: DTLS 1.0 would need CBC, which our record layer lacks.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import weakref
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from ..tls.cpu import aes_accelerated
from ..tls.handshake import drain_bio
from ..tls.record import CipherInfo, TlsRecordError, cipher_info, tls12_prf
from .record import (
    CT_HANDSHAKE,
    DTLS12,
    HS_FINISHED,
    RECORD_HEADER_LEN,
    DtlsError,
    DtlsKeys,
    DtlsRecordLayer,
    iter_records,
    peek_client_hello,
)

log = logging.getLogger(__name__)

# Plain PSK (not ECDHE-PSK: openconnect offers -KX-ALL:+PSK), AEAD only, strongest first.
DTLS_PSK_CIPHERS = "PSK-AES256-GCM-SHA384:PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256"
# CPUs without AES instructions (Raspberry Pi 4): ChaCha20 first, as GnuTLS orders it.
DTLS_PSK_CIPHERS_NO_AES = "PSK-CHACHA20-POLY1305:PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256"


def default_dtls_ciphers() -> str:
    return DTLS_PSK_CIPHERS if aes_accelerated() else DTLS_PSK_CIPHERS_NO_AES
DEFAULT_MTU = 1400
_COOKIE_LEN = 16
_PSK_CALLBACK_TYPE = "unsigned int(SSL *, char *, unsigned char *, unsigned int)"


class DtlsHandshakeError(ValueError):
    """The handshake failed; ``datagrams`` holds whatever OpenSSL still wants sent (an
    alert, usually) before the attempt is forgotten."""

    def __init__(self, message: str, datagrams: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.datagrams = datagrams or []


def _ssl_key(ssl: object) -> int:
    """A dict key for an ``SSL *`` that is the same for pyOpenSSL's handle and the callback's."""
    return int(_ffi.cast("uintptr_t", ssl))


class DtlsContext(SSL.Context):
    """An SSL.Context that also owns the PSK callback and the per-connection keys.

    The callback is per context in OpenSSL but the key is per session, so connections
    register their key under their ``SSL *``; the cffi callback object lives as long as the
    context does (OpenSSL only holds a raw pointer to it).
    """

    def __init__(self) -> None:
        super().__init__(SSL.DTLS_SERVER_METHOD)
        self._psks: dict[int, bytes] = {}
        self._psk_callback = _ffi.callback(_PSK_CALLBACK_TYPE, self._on_psk)
        _lib.SSL_CTX_set_psk_server_callback(self._context, self._psk_callback)

    def register_psk(self, conn: SSL.Connection, psk: bytes) -> Callable[[], None]:
        """Answer ``conn``'s PSK requests with ``psk``; returns the function that forgets it."""
        key = _ssl_key(conn._ssl)
        self._psks[key] = psk
        return weakref.finalize(conn, _forget, self._psks, key, psk)

    def _on_psk(self, ssl: object, identity: object, out: object, max_len: int) -> int:
        # The identity is ignored on purpose: openconnect always sends "psk" and ocserv
        # answers any identity with the session's key (§5.3).
        try:
            psk = self._psks.get(_ssl_key(ssl))
            if psk is None or len(psk) > max_len:
                return 0
            _ffi.memmove(out, psk, len(psk))
            return len(psk)
        except Exception:  # an exception must not unwind through OpenSSL's C frames
            log.exception("DTLS PSK callback failed")
            return 0


def _forget(psks: dict[int, bytes], key: int, psk: bytes) -> None:
    # Only our own entry: the SSL * address may already belong to a newer connection.
    if psks.get(key) is psk:
        del psks[key]


def make_dtls_context(ciphers: str | None = None) -> DtlsContext:
    """A DTLS 1.2 server context for PSK-NEGOTIATE: PSK AEAD suites only, no certificate.

    ``ciphers`` lets the caller pin the suite to the CSTP one (ocserv's
    ``match-tls-dtls-ciphers``).
    """
    ctx = DtlsContext()
    ctx.set_min_proto_version(DTLS12)
    ctx.set_max_proto_version(DTLS12)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION
                    | SSL.OP_CIPHER_SERVER_PREFERENCE | _lib.SSL_OP_NO_QUERY_MTU)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_cipher_list((ciphers or default_dtls_ciphers()).encode())
    ctx.set_cookie_generate_callback(_cookie_generate)
    ctx.set_cookie_verify_callback(_cookie_verify)
    return ctx


def _owner(conn: SSL.Connection) -> DtlsServerHandshake:
    owner = conn.get_app_data()
    if not isinstance(owner, DtlsServerHandshake):
        raise DtlsHandshakeError("DTLS connection without its handshake object")
    return owner


def _cookie_generate(conn: SSL.Connection) -> bytes:
    return _owner(conn).cookie()


def _cookie_verify(conn: SSL.Connection, cookie: bytes) -> bool:
    return hmac.compare_digest(_owner(conn).cookie(), cookie)


def _key_block(cipher: CipherInfo, master: bytes, client_random: bytes,
               server_random: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """RFC 5246 §6.3 key expansion (DTLS 1.2 uses TLS 1.2's): client key, server key,
    client IV, server IV."""
    k, ivl = cipher.key_len, cipher.iv_len12
    block = tls12_prf(cipher.hash_name, master, b"key expansion", server_random + client_random,
                      2 * k + 2 * ivl)
    return block[:k], block[k:2 * k], block[2 * k:2 * k + ivl], block[2 * k + ivl:]


class DtlsServerHandshake:
    """Feed client datagrams, send what ``feed`` returns, until ``done``; then take
    ``keys()`` (or ``record_layer()``). Between datagrams call ``on_timeout`` once
    ``timeout()`` seconds have passed, for OpenSSL's retransmissions.

    ``session_id`` is the App-ID the session announced: ClientHellos carrying another one
    are ignored (they belong to another handshake). ``peer`` (the client's address in any
    stable byte form) only feeds the HelloVerifyRequest cookie. ``mtu`` is the largest UDP
    payload OpenSSL may send (path MTU minus IP and UDP headers); it never asks the kernel.
    """

    def __init__(self, ctx: DtlsContext, psk: bytes, session_id: bytes = b"", *,
                 mtu: int = DEFAULT_MTU, cookie_exchange: bool = False,
                 cookie_secret: bytes | None = None, peer: bytes = b"") -> None:
        if not isinstance(ctx, DtlsContext):
            raise TypeError("use make_dtls_context() to build the context")
        if not psk:
            raise ValueError("empty PSK")
        self._conn = SSL.Connection(ctx, None)
        self._conn.set_app_data(self)
        self._conn.set_accept_state()
        if _lib.SSL_set_mtu(self._conn._ssl, mtu) <= 0:
            raise ValueError(f"DTLS MTU {mtu} rejected by OpenSSL")
        if cookie_exchange:
            _lib.SSL_set_options(self._conn._ssl, _lib.SSL_OP_COOKIE_EXCHANGE)
        self._forget_psk = ctx.register_psk(self._conn, psk)
        self.session_id = session_id
        self.mtu = mtu
        self._cookie_secret = cookie_secret or secrets.token_bytes(32)
        self._peer = peer
        self._hello_random = b""
        self._epoch1_seqs: list[int] = []
        self.ignored = 0
        self.done = False
        self.final_flight: list[bytes] = []
        self._keys: DtlsKeys | None = None
        self.cipher_name = ""

    # driving --------------------------------------------------------------------------------

    def feed(self, datagram: bytes) -> list[bytes]:
        """Process one client datagram; returns the datagrams to send back."""
        if self.done:
            raise DtlsHandshakeError("DTLS handshake already complete")
        if not datagram or not self._wanted(datagram):
            self.ignored += 1
            return []
        self._conn.bio_write(bytes(datagram))
        return self._step(self._conn.do_handshake, can_finish=True)

    def timeout(self) -> float | None:
        """Seconds until OpenSSL wants ``on_timeout`` (None: no retransmission pending).

        OpenSSL keeps this timer on its own clock; it is the one clock read in this path.
        """
        if self.done:
            return None
        return self._conn.DTLSv1_get_timeout()

    def on_timeout(self) -> list[bytes]:
        """Let OpenSSL retransmit its last flight if its timer has expired."""
        if self.done:
            return []
        return self._step(self._conn.DTLSv1_handle_timeout, can_finish=False)

    def close(self) -> None:
        """Forget the PSK now rather than when the garbage collector gets round to it."""
        self._forget_psk()

    def _wanted(self, datagram: bytes) -> bool:
        try:
            hello = peek_client_hello(datagram)
        except DtlsError:
            return False
        if hello is None:
            return True
        if hello.zero_random or (self.session_id and hello.app_id != self.session_id):
            return False
        self._hello_random = hello.random
        return True

    def _step(self, action: Callable[[], object], can_finish: bool) -> list[bytes]:
        try:
            action()
            finished = can_finish  # do_handshake returning at all means it completed
        except SSL.WantReadError:
            finished = False
        except SSL.Error as exc:
            out = self._drain()
            self.close()
            raise DtlsHandshakeError(f"DTLS handshake failed: {exc}", out) from None
        out = self._drain()
        if finished and not self.done:
            try:
                self._finish(out)
            except DtlsHandshakeError:
                self.close()
                raise
        return out

    def _drain(self) -> list[bytes]:
        """OpenSSL's output, cut into records and packed back into datagrams of at most
        ``mtu`` bytes: a memory BIO is a byte stream and forgets where datagrams ended."""
        raw = drain_bio(self._conn)
        datagrams: list[bytes] = []
        current = bytearray()
        pos = 0
        for _ctype, _version, epoch, seq, fragment in iter_records(bytes(raw)):
            record = bytes(raw[pos:pos + RECORD_HEADER_LEN + len(fragment)])
            pos += len(record)
            if epoch == 1:
                self._epoch1_seqs.append(seq)
            if current and len(current) + len(record) > self.mtu:
                datagrams.append(bytes(current))
                current = bytearray()
            current += record
        if current:
            datagrams.append(bytes(current))
        return datagrams

    def cookie(self) -> bytes:
        """Stateless HelloVerifyRequest cookie: HMAC of the peer and the client random (a
        client must repeat its random in the second ClientHello, RFC 6347 §4.2.1)."""
        mac = hmac.new(self._cookie_secret, self._peer + b"|" + self._hello_random,
                       hashlib.sha256)
        return mac.digest()[:_COOKIE_LEN]

    # result ---------------------------------------------------------------------------------

    def _finish(self, final_flight: list[bytes]) -> None:
        conn = self._conn
        if conn.get_protocol_version_name() != "DTLSv1.2":
            raise DtlsHandshakeError(f"negotiated {conn.get_protocol_version_name()}")
        self.cipher_name = conn.get_cipher_name() or ""
        try:
            cipher = cipher_info(self.cipher_name)
        except TlsRecordError as exc:
            raise DtlsHandshakeError(str(exc)) from None
        master, client_random, server_random = \
            conn.master_key(), conn.client_random(), conn.server_random()
        if master is None or client_random is None or server_random is None:
            raise DtlsHandshakeError("OpenSSL kept no DTLS session secrets")
        client_key, server_key, client_iv, server_iv = _key_block(
            cipher, master, client_random, server_random)
        if not self._epoch1_seqs:
            raise DtlsHandshakeError("OpenSSL finished without sending its Finished")
        # Records OpenSSL already sent under the new keys (its Finished) used up sequence
        # numbers that we must not reuse.
        keys = DtlsKeys(cipher, client_key, client_iv, server_key, server_iv, 1,
                        max(self._epoch1_seqs) + 1)
        _check_own_finished(keys, final_flight)
        self._keys = keys
        self.final_flight = final_flight
        self.done = True
        self.close()
        log.debug("DTLS handshake done: %s", self.description)

    @property
    def description(self) -> str:
        """ocserv/GnuTLS style session description, e.g. "(DTLS1.2)-(PSK)-(AES-256-GCM)"."""
        if self._keys is None:
            return ""
        return f"(DTLS1.2)-(PSK)-({self._keys.cipher.aead})"

    def keys(self) -> DtlsKeys:
        if self._keys is None:
            raise DtlsHandshakeError("DTLS handshake not complete")
        return self._keys

    def record_layer(self) -> DtlsRecordLayer:
        """The record layer for this session, able to repeat our last flight if the client
        shows it was lost."""
        return DtlsRecordLayer(self.keys(), self.final_flight)


def _check_own_finished(keys: DtlsKeys, final_flight: list[bytes]) -> None:
    """Open OpenSSL's epoch-1 Finished with the keys we derived: if our key schedule or
    nonce layout ever disagrees with OpenSSL's, fail here instead of on every packet."""
    gcm = keys.cipher.aead != "CHACHA20-POLY1305"
    aead = AESGCM(keys.write_key) if gcm else ChaCha20Poly1305(keys.write_key)
    for datagram in final_flight:
        for ctype, version, epoch, seq, frag in iter_records(datagram):
            if epoch != keys.epoch or ctype != CT_HANDSHAKE:
                continue
            es = (epoch << 48) | seq
            try:
                if gcm:
                    nonce, body = keys.write_iv + frag[:8], frag[8:]
                else:
                    nonce = (int.from_bytes(keys.write_iv, "big") ^ es).to_bytes(12, "big")
                    body = frag
                aad = (es.to_bytes(8, "big") + bytes((ctype,)) + version.to_bytes(2, "big")
                       + (len(body) - 16).to_bytes(2, "big"))
                plain = aead.decrypt(nonce, body, aad)
            except (InvalidTag, ValueError, OverflowError):
                raise DtlsHandshakeError("derived DTLS keys do not open OpenSSL's Finished") \
                    from None
            if plain[:1] == bytes((HS_FINISHED,)):
                return
    raise DtlsHandshakeError("no Finished message in OpenSSL's last flight")
