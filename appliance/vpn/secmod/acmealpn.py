"""TLS-ALPN-01 (RFC 8737) on the VPN's TLS port, so a certificate needs no port 80.

The reachability service (appliance/reach/acmecert.py) drops one challenge certificate per
name being validated into ``acme-alpn/`` beside ``server-cert``; the sec-mod, which runs
every handshake, answers a ClientHello offering ALPN ``acme-tls/1`` with that certificate,
selects acme-tls/1, and ends the connection once the handshake is done (the CA reads the
certificate and nothing else).  A name with no challenge waiting fails the handshake: the
real certificate is never shown to an acme-tls/1 client.  VPN clients never offer
acme-tls/1, so their handshakes are untouched.
"""

from __future__ import annotations

import logging

from OpenSSL import SSL

from ...reach.challenges import ACME_TLS_ALPN, AlpnChallengeStore
from ..protocol.tls.clienthello import HelloInfo
from ..protocol.tls.handshake import HandshakeError, make_alpn_challenge_context

log = logging.getLogger(__name__)

class AcmeAlpn:
    """The ContextChooser the sec-mod hands every ServerHandshake."""

    def __init__(self, store: AlpnChallengeStore) -> None:
        self.store = store

    def choose(self, hello: HelloInfo) -> SSL.Context | None:
        if ACME_TLS_ALPN not in hello.alpn:
            return None
        found = self.store.lookup(hello.sni or "")
        if found is None:
            log.info("acme-tls/1 name=%s result=refused reason=no-challenge", hello.sni or "-")
            raise HandshakeError("acme-tls/1 for a name with no challenge waiting")
        try:
            ctx = make_alpn_challenge_context(*found, ACME_TLS_ALPN)
        except (ValueError, TypeError, SSL.Error) as exc:
            log.warning("acme-tls/1 name=%s result=refused reason=bad-challenge-file: %s",
                        hello.sni, exc)
            raise HandshakeError("unusable acme-tls/1 challenge certificate") from None
        log.info("acme-tls/1 name=%s result=serving", hello.sni)
        return ctx
