"""Wiring of legacy (non-PSK) DTLS into a session: the CONNECT-time decision and the
handshake object DtlsChannel runs (docs/protocol.md §5.1, §5.4, §5.5).

The protocol work is in ``protocol/dtls/legacy.py`` (sans-IO); this module adds the clock
and the adaptation to the interface DtlsChannel already drives for the PSK handshake, so
the channel, main's UDP routing (by session id at offset 59, §5.7) and the data path stay
the same for both modes.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from ..config import Config
from ..protocol import cstp
from ..protocol.dtls.handshake import DtlsHandshakeError
from ..protocol.dtls.legacy import (
    SESSION_ID_LEN,
    CbcRecordLayer,
    LegacyDtlsError,
    LegacyHandshakeFailed,
    LegacyServerHandshake,
    LegacySuite,
    select_suite,
)
from ..protocol.dtls.record import DtlsRecordLayer
from .dtlschannel import DtlsChannel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LegacyOffer:
    """What this session announces instead of PSK-NEGOTIATE, decided at CONNECT."""

    suite: LegacySuite
    session_id: bytes  # fresh per CONNECT, 32 bytes (X-DTLS-Session-ID, §11 item 6)
    master_secret: bytes  # the client's X-DTLS-Master-Secret

    def __repr__(self) -> str:  # the master secret never reaches a log line
        return f"LegacyOffer({self.suite.name}, session={self.session_id.hex()[:8]}…)"

    @property
    def overhead(self) -> int:
        return self.suite.overhead

    def response_params(self, base: cstp.DtlsParams) -> cstp.DtlsParams:
        """``base`` (port, DPD, keepalive) with the legacy headers instead of the PSK ones:
        X-DTLS-Session-ID + X-DTLS[12]-CipherSuite + X-DTLS-MTU (§3.3)."""
        return cstp.DtlsParams(port=base.port, dpd=base.dpd, keepalive=base.keepalive,
                               rekey_time=base.rekey_time, app_id=None,
                               cipher_suite=self.suite.name,
                               session_id=self.session_id.hex(),
                               dtls12=self.suite.dtls12_header)

    def channel(self) -> DtlsChannel:
        """A DtlsChannel whose handshakes are ours instead of OpenSSL's PSK one."""
        return DtlsChannel(self.handshake)

    def handshake(self) -> LegacyHandshakeDriver:
        return LegacyHandshakeDriver(LegacyServerHandshake(self.suite, self.session_id,
                                                           self.master_secret))


def legacy_offer(cfg: Config, creq: cstp.ConnectRequest,
                 tls_bulk: str | None) -> LegacyOffer | None:
    """The legacy DTLS mode for this CONNECT, or None (then: PSK, or no DTLS at all).

    As ocserv: only with ``dtls-legacy`` on, a UDP port, the client's master secret, and
    when PSK-NEGOTIATE is not going to be used (not offered, or ``dtls-psk = false``).
    """
    if not (cfg.udp_port and cfg.dtls_legacy and creq.dtls_master_secret is not None):
        return None
    if cfg.dtls_psk and creq.psk_negotiate:
        return None
    suite = select_suite(creq.dtls_ciphersuites, creq.dtls12_ciphersuites, tls_bulk)
    if suite is None:
        log.info("client offered no legacy DTLS suite we support (%s / %s); TLS only",
                 ":".join(creq.dtls_ciphersuites), ":".join(creq.dtls12_ciphersuites))
        return None
    offer = LegacyOffer(suite, os.urandom(SESSION_ID_LEN), creq.dtls_master_secret)
    log.info("legacy DTLS offered: %s", suite.name)
    return offer


class LegacyHandshakeDriver:
    """LegacyServerHandshake behind the interface DtlsChannel drives (the PSK
    handshake's): the monotonic clock goes in here, and a datagram the handshake cannot
    use is dropped without ending it, because anyone can send datagrams to our port."""

    def __init__(self, hs: LegacyServerHandshake) -> None:
        self.hs = hs
        self.dropped = 0

    @property
    def done(self) -> bool:
        return self.hs.done

    @property
    def description(self) -> str:
        return self.hs.description

    def feed(self, datagram: bytes) -> list[bytes]:
        try:
            return self.hs.feed(datagram, time.monotonic())
        except LegacyHandshakeFailed as exc:
            raise DtlsHandshakeError(f"legacy DTLS: {exc}") from None
        except LegacyDtlsError as exc:
            self.dropped += 1
            log.debug("legacy DTLS: datagram dropped: %s", exc)
            return []

    def timeout(self) -> float | None:
        return self.hs.timeout(time.monotonic())

    def on_timeout(self) -> list[bytes]:
        try:
            return self.hs.on_timeout(time.monotonic())
        except LegacyHandshakeFailed as exc:
            raise DtlsHandshakeError(f"legacy DTLS: {exc}") from None

    def close(self) -> None:
        """Nothing to release: no OpenSSL object, no registered key."""

    def record_layer(self) -> DtlsRecordLayer | CbcRecordLayer:
        return self.hs.record_layer()
