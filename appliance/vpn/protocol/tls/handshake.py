"""The server side of the TLS handshake, sans-IO, ending in ``TrafficKeys``.

OpenSSL (through pyOpenSSL, over memory BIOs) does the handshake; we feed it whole records
one at a time so that the moment the handshake completes we know exactly which bytes are
the first application records: those, and every later one, belong to our own record layer
(protocol/tls/record.py). The keys come from OpenSSL's keylog callback (TLS 1.3 traffic secrets) or
from the master secret and randoms (TLS 1.2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _ssl_lib

from .clienthello import ClientHelloError, HelloInfo, peek_client_hello
from .cpu import aes_accelerated
from .credentials import Credentials
from .priorities import parse_priorities
from .record import (
    CT_CHANGE_CIPHER_SPEC,
    MAX_CIPHERTEXT,
    TLS12,
    TLS13,
    TrafficKeys,
    cipher_info,
    tls12_server_keys,
    tls13_server_keys,
)

log = logging.getLogger(__name__)

PSK_LABEL = b"EXPORTER-openconnect-psk"

# AEAD only: our record layer implements nothing else, and neither should a VPN in 2026.
# ocserv's built-in priorities when tls-priorities is not set (docs/protocol.md §10.4).
DEFAULT_PRIORITIES = "NORMAL:%SERVER_PRECEDENCE:%COMPAT"
_OPENSSL_VERSIONS = {TLS12: SSL.TLS1_2_VERSION, TLS13: SSL.TLS1_3_VERSION}


class HandshakeError(Exception):
    """The handshake failed; the connection must be closed."""


def make_server_context(credentials: Credentials, priorities: str | None = None,
                        ca_file: str | None = None, *, client_certs: bool = False,
                        crl_file: str | None = None, resume_timeout: int = 0) -> SSL.Context:
    """A server context following ocserv's ``tls-priorities`` (see protocol/tls/priorities.py).

    With ``client_certs`` the client is asked for a certificate (optional, like ocserv's
    GNUTLS_CERT_REQUEST) that is verified against ``ca_file`` and ``crl_file``. A missing
    or failing certificate does not abort the handshake: the outcome is recorded in the
    result and the auth dialogue answers 401 where a certificate is required
    (docs/protocol.md §2.6, §2.7), as ocserv does. ``credentials`` come from
    protocol/tls/credentials.py (an encrypted key is unlocked there, never at a console).

    With ``resume_timeout`` (seconds) the context keeps TLS 1.2 sessions by session ID,
    as ocserv's sec-mod does, so that a reconnecting client can resume; never tickets,
    whose key would have to be shared. The caller bounds how many sessions one context
    collects (secmod/resumption.py).
    """
    policy = parse_priorities(priorities or DEFAULT_PRIORITIES, aes_hw=aes_accelerated())
    if policy.inert:
        log.info("tls-priorities: no effect in an AEAD-only TLS 1.2+ server: %s",
                 ", ".join(policy.inert))
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(_OPENSSL_VERSIONS[policy.min_version])
    ctx.set_max_proto_version(_OPENSSL_VERSIONS[policy.max_version])
    options = SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION
    if policy.server_preference:
        options |= SSL.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_options(options)
    if resume_timeout > 0:
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        ctx.set_session_id(b"ocgate-vpn")
        ctx.set_timeout(resume_timeout)
    else:
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_cipher_list(policy.tls12_cipher_list.encode())
    ctx.set_tls13_ciphersuites(policy.tls13_suites.encode())
    _set_groups(ctx, policy.groups_list)
    leaf, *extra = credentials.chain
    ctx.use_certificate(leaf)
    for cert in extra:
        ctx.add_extra_chain_cert(cert)
    ctx.use_privatekey(credentials.key)
    ctx.check_privatekey()
    if ca_file:
        ctx.load_verify_locations(ca_file)
    if client_certs:
        _request_client_certs(ctx, ca_file, crl_file)
    ctx.set_keylog_callback(_keylog)
    return ctx


def make_alpn_challenge_context(cert_pem: bytes, key_pem: bytes, protocol: bytes
                                ) -> SSL.Context:
    """A context that answers with one certificate and selects ALPN ``protocol`` (RFC 8737
    3: the TLS-ALPN-01 challenge certificate, TLS 1.2 or later, acme-tls/1 selected)."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.use_certificate(x509.load_pem_x509_certificate(cert_pem))
    ctx.use_privatekey(serialization.load_pem_private_key(key_pem, None))  # type: ignore[arg-type]
    ctx.check_privatekey()

    def select(_conn: SSL.Connection, offered: list[bytes]) -> object:
        return protocol if protocol in offered else SSL.NO_OVERLAPPING_PROTOCOLS

    ctx.set_alpn_select_callback(select)  # type: ignore[arg-type]
    ctx.set_keylog_callback(_keylog)
    return ctx


def _set_groups(ctx: SSL.Context, groups: str) -> None:
    """pyOpenSSL has no groups setter; cryptography's bindings carry the OpenSSL call
    (tests/unit/test_tlspriorities.py fails loudly if it disappears)."""
    if _ssl_lib.SSL_CTX_set1_curves_list(ctx._context, groups.encode()) != 1:  # noqa: SLF001
        raise ValueError(f"OpenSSL refused the key-exchange groups {groups!r}")


def _request_client_certs(ctx: SSL.Context, ca_file: str | None, crl_file: str | None) -> None:
    if not ca_file:
        raise ValueError("client certificates need a CA file (ca-cert)")
    ctx.load_client_ca(ca_file.encode())
    if crl_file:
        with open(crl_file, "rb") as handle:
            data = handle.read()
        try:
            crl = (x509.load_pem_x509_crl(data) if b"-----BEGIN" in data
                   else x509.load_der_x509_crl(data))
        except ValueError as exc:
            raise ValueError(f"cannot read CRL {crl_file}: {exc}") from None
        store = ctx.get_cert_store()
        assert store is not None
        store.add_crl(crl)
        store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
    ctx.set_verify(SSL.VERIFY_PEER, _verify_client)


def _verify_client(conn: SSL.Connection, _cert: crypto.X509, errnum: int, depth: int,
                   ok: int) -> bool:
    """Record OpenSSL's verdict on each chain element and let the handshake go on.

    The handshake must not fail on a bad certificate: ocserv answers such clients with an
    HTTP 401 (and may fall back to a password where the certificate is only optional).
    """
    owner = conn.get_app_data()
    if isinstance(owner, ServerHandshake):
        if not ok and errnum == X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
            return True  # GnuTLS's rule, not OpenSSL's; the CRL is still checked (below)
        if not ok:
            owner._cert_errors.append(f"depth {depth}: {_VERIFY_ERRORS.get(errnum, errnum)}")
        elif depth == 0:
            owner._leaf_checked = True
    return True


# The CRL's issuer (the CA) has a keyUsage without cRLSign. OpenSSL refuses such a CRL and
# with it every client certificate; GnuTLS, and so ocserv, does not ask for the bit. Only
# this one complaint is waived: OpenSSL goes on to verify the CRL's signature with the CA's
# key and to look the certificate up in it, and a failure there is an error as before
# (tests/e2e/test_certs_tls.py: a revoked certificate is still refused).
X509_V_ERR_KEYUSAGE_NO_CRL_SIGN = 35

# The X509_V_ERR_* codes a misconfigured or hostile client certificate typically produces.
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    3: "unable to get CRL",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    23: "certificate revoked",
    8: "CRL signature failure",
    11: "CRL is not yet valid",
    12: "CRL has expired",
    26: "unsuitable certificate purpose",
}


def _keylog(conn: SSL.Connection, line: bytes) -> None:
    owner = conn.get_app_data()
    if isinstance(owner, ServerHandshake):
        label, _random, secret = line.split(b" ")
        owner._secrets[label.decode()] = bytes.fromhex(secret.decode())


@dataclass(frozen=True)
class HandshakeResult:
    keys: TrafficKeys
    psk: bytes  # the DTLS PSK (docs/protocol.md 5.3), exported now so the handshake can go away
    # ocserv/GnuTLS style, e.g. "(TLS1.2)-(ECDHE-SECP256R1)-(RSA-SHA256)-(AES-256-GCM)"
    description: str
    sni: str | None
    # The client's certificate (DER), if it sent one, and whether it verified against the
    # CA (and CRL). Stays in the security module: the worker never needs it.
    client_cert: bytes | None = None
    client_cert_verified: bool = False
    client_cert_problem: str = ""
    alpn: bytes | None = None  # the ALPN protocol selected (only ever acme-tls/1 so far)
    resumed: bool = False  # an abbreviated TLS 1.2 handshake on a cached session


# Looks at the ClientHello and returns the context to answer it with (None: the default);
# raises HandshakeError to refuse it.
ContextChooser = Callable[[HelloInfo], "SSL.Context | None"]


class ServerHandshake:
    """Feed client bytes, send what ``feed`` returns, until ``done``; then take ``result``
    and ``leftover`` (the first application bytes, not yet decrypted).

    With ``choose``, OpenSSL is started only once the whole ClientHello is in, with the
    context ``choose`` picks from its SNI and ALPN (the sec-mod's TLS-ALPN-01 answer)."""

    def __init__(self, ctx: SSL.Context, choose: ContextChooser | None = None) -> None:
        self._choose = choose
        self._conn = SSL.Connection(ctx, None)
        if choose is None:
            self._start()
        self._secrets: dict[str, bytes] = {}
        self._cert_errors: list[str] = []
        self._leaf_checked = False
        self._inbuf = bytearray()
        self._ccs_sent = False  # our ChangeCipherSpec went out (in any flight)
        self._records_after_ccs = 0  # our records since then, all under the new keys
        self.done = False
        self.leftover = b""
        self.result: HandshakeResult | None = None

    def _start(self) -> None:
        self._conn.set_app_data(self)
        self._conn.set_accept_state()

    def _chosen(self) -> bool:
        """True once OpenSSL runs (the ClientHello has been looked at when asked to)."""
        if self._choose is None:
            return True
        try:
            hello = peek_client_hello(bytes(self._inbuf))
        except ClientHelloError as exc:
            raise HandshakeError(f"TLS handshake failed: {exc}") from None
        if hello is None:
            return False
        ctx = self._choose(hello)
        if ctx is not None:
            self._conn = SSL.Connection(ctx, None)
        self._choose = None
        self._start()
        return True

    def feed(self, data: bytes) -> bytes:
        """Process client bytes; returns bytes to send to the client."""
        if self.done:
            raise HandshakeError("handshake already complete")
        self._inbuf += data
        if not self._chosen():
            return b""
        out = bytearray()
        while not self.done:
            record = self._next_record()
            if record is None:
                break
            self._conn.bio_write(record)
            final = self._step()
            flight = self._drain()
            if final:
                flight = self._finish(flight)
            else:  # a resumed TLS 1.2 handshake sends our CCS and Finished before it ends
                self._count_records(flight)
            out += flight
        return bytes(out)

    def _next_record(self) -> bytes | None:
        buf = self._inbuf
        if len(buf) < 5:
            return None
        length = int.from_bytes(buf[3:5], "big")
        if length > MAX_CIPHERTEXT:
            raise HandshakeError("oversized TLS record during handshake")
        if len(buf) < 5 + length:
            return None
        record = bytes(buf[:5 + length])
        del buf[:5 + length]
        return record

    def _step(self) -> bool:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.Error as exc:
            self._conn.set_app_data(None)  # see _finish
            raise HandshakeError(f"TLS handshake failed: {exc}") from None
        return True

    def _drain(self) -> bytes:
        return drain_bio(self._conn)

    def _finish(self, final_flight: bytes) -> bytes:
        """Derive the record keys; returns the part of the last flight to send.

        In TLS 1.3 everything OpenSSL writes after the client's Finished is NewSessionTicket
        records (OP_NO_TICKET only makes them stateful, and pyOpenSSL cannot set the ticket
        count to 0). We never resume sessions, so those tickets would be useless to the
        client: they are dropped unsent and our record layer starts at sequence number 0,
        which is exactly what the client expects when no ticket was sent.
        """
        conn = self._conn
        version = TLS13 if conn.get_protocol_version_name() == "TLSv1.3" else TLS12
        cipher = cipher_info(conn.get_cipher_name() or "")
        if version == TLS13:
            try:
                keys = tls13_server_keys(cipher, self._secrets["CLIENT_TRAFFIC_SECRET_0"],
                                         self._secrets["SERVER_TRAFFIC_SECRET_0"], 0)
            except KeyError as exc:
                raise HandshakeError(f"keylog did not provide {exc}") from None
            final_flight = b""
        else:
            master, client_random, server_random = \
                conn.master_key(), conn.client_random(), conn.server_random()
            if master is None or client_random is None or server_random is None:
                raise HandshakeError("OpenSSL kept no TLS 1.2 session secrets")
            keys = tls12_server_keys(cipher, master, client_random, server_random)
            self._count_records(final_flight)
            extra = self._records_after_ccs - 1  # minus our Finished
            if extra:
                keys = replace(keys, write_seq=keys.write_seq + extra)
        psk = conn.export_keying_material(PSK_LABEL, 32)
        sni = conn.get_servername()
        cert, verified, problem = self._client_certificate()
        self.result = HandshakeResult(keys, psk, _describe(conn, version, cipher.aead),
                                      sni.decode("ascii", "replace") if sni else None,
                                      cert, verified, problem,
                                      conn.get_alpn_proto_negotiated() or None,
                                      resumed=bool(_ssl_lib.SSL_session_reused(
                                          conn._ssl)))  # noqa: SLF001
        self.leftover = bytes(self._inbuf)
        self._inbuf.clear()
        self.done = True
        self._secrets.clear()
        # The callbacks are done with us: without this cycle the OpenSSL state is freed as
        # soon as the sec-mod drops the handshake, not at the next cyclic collection.
        conn.set_app_data(None)
        # Our record layer, not OpenSSL, ends the connection; freeing an SSL object that
        # never sent close_notify would take its session out of the resumption cache.
        conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        return final_flight

    def _count_records(self, flight: bytes) -> None:
        """Count our records that follow our ChangeCipherSpec (sent under the new keys):
        our record layer's first sequence number depends on it."""
        pos = 0
        while pos + 5 <= len(flight):
            if self._ccs_sent:
                self._records_after_ccs += 1
            if flight[pos] == CT_CHANGE_CIPHER_SPEC:
                self._ccs_sent = True
            pos += 5 + int.from_bytes(flight[pos + 3:pos + 5], "big")

    def _client_certificate(self) -> tuple[bytes | None, bool, str]:
        """(DER, verified, why not): verified only if OpenSSL checked the leaf and found
        nothing wrong anywhere in the chain."""
        peer = self._conn.get_peer_certificate(as_cryptography=True)
        if peer is None:
            return None, False, "no certificate"
        der = peer.public_bytes(serialization.Encoding.DER)
        if self._cert_errors:
            return der, False, "; ".join(self._cert_errors[:4])
        if not self._leaf_checked:
            return der, False, "certificate was not verified"
        return der, True, ""


def drain_bio(conn: SSL.Connection) -> bytes:
    """Everything OpenSSL has written into the connection's outgoing memory BIO."""
    out = bytearray()
    while True:
        try:
            chunk = conn.bio_read(65536)
        except SSL.WantReadError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)




def _describe(conn: SSL.Connection, version: int, aead: str) -> str:
    """ocserv prints GnuTLS' session description; we print the same shape."""
    name = conn.get_cipher_name() or ""
    if version == TLS13:
        return f"(TLS1.3)-({aead})"
    kx = "ECDHE" if name.startswith("ECDHE") else "DHE"
    auth = "ECDSA" if "ECDSA" in name else "RSA"
    return f"(TLS1.2)-({kx})-({auth})-({aead})"
