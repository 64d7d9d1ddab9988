"""Certificates from an ACME CA (RFC 8555) through the ``acme`` library.

The library does the JWS, nonces, directory and order state; this module picks the
challenge (TLS-ALPN-01 on the VPN port when the sec-mod can answer it, HTTP-01 otherwise),
puts the answer where the responder finds it, installs the certificate atomically and says
when to renew (two thirds of the lifetime, with jitter).  The ``acme`` release we use has no
TLS-ALPN-01 classes any more, so the challenge type is registered here; its answer is the
empty JSON object every key-authorization challenge posts.
"""

from __future__ import annotations

import datetime
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import josepy as jose
from acme import challenges, client, crypto_util, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..atomicfile import write_atomic
from ..vpn.control.client import ConnectFailed, ControlClient, ServerError, Unreachable
from .challenges import AlpnChallengeStore, HttpChallenges

log = logging.getLogger(__name__)

USER_AGENT = "OCGate/0.1"


class AcmeError(Exception):
    pass


@challenges.ChallengeResponse.register
class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    typ = "tls-alpn-01"


@challenges.Challenge.register
class TLSALPN01(challenges.KeyAuthorizationChallenge):
    response_cls = TLSALPN01Response
    typ = response_cls.typ

    def validation(self, account_key: jose.JWK, **unused: object) -> str:
        return self.key_authorization(account_key)


@dataclass(frozen=True)
class Issued:
    fullchain_pem: bytes
    key_pem: bytes
    not_before: datetime.datetime
    not_after: datetime.datetime


def renew_at(not_before: datetime.datetime, not_after: datetime.datetime,
             rand: Callable[[], float] = random.random) -> datetime.datetime:
    """Two thirds into the lifetime, minus up to 1/20 of it so renewals spread out."""
    life = not_after - not_before
    return not_before + life * 2 / 3 - life * (rand() / 20)


def _account_key(path: Path) -> jose.JWKEC:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        write_atomic(path, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), 0o600)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AcmeError(f"{path}: the account key must be an EC key")
    return jose.JWKEC(key=key)


class AcmeIssuer:
    def __init__(self, directory_url: str, state_dir: Path, *, email: str = "",
                 ca_bundle: str | bool = True, http01: HttpChallenges | None = None,
                 alpn: AlpnChallengeStore | None = None, timeout: float = 90.0) -> None:
        self.directory_url = directory_url
        self.state_dir = Path(state_dir)
        self.email = email
        self.http01 = http01
        self.alpn = alpn
        self.timeout = timeout
        self.key = _account_key(self.state_dir / "acme-account.key")
        # acme hands verify_ssl to requests, which takes a CA bundle path as well as a bool;
        # the library's annotation says only bool
        self.net = client.ClientNetwork(self.key, user_agent=USER_AGENT,
                                        verify_ssl=cast(bool, ca_bundle), alg=jose.ES256)
        self.client = client.ClientV2(client.ClientV2.get_directory(directory_url, self.net),
                                      self.net)
        self._register()

    def _register(self) -> None:
        reg = messages.NewRegistration.from_data(email=self.email or None,
                                                 terms_of_service_agreed=True)
        try:
            regr = self.client.new_account(reg)
        except client.errors.ConflictError as exc:  # already registered with this key
            regr = self.client.query_registration(messages.RegistrationResource(
                uri=exc.location, body=messages.Registration()))
        self.net.account = regr

    def issue(self, name: str) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        order = self.client.new_order(crypto_util.make_csr(key_pem, [name]))
        cleanup: list[Callable[[], None]] = []
        try:
            for authz in order.authorizations:
                challb, how = self._choose(authz)
                response, validation = challb.response_and_validation(self.key)
                if how == "tls-alpn-01":
                    assert self.alpn is not None
                    self.alpn.put(name, validation)
                    cleanup.append(lambda: self.alpn.remove(name) if self.alpn else None)
                else:
                    assert self.http01 is not None
                    token = challb.chall.encode("token")
                    self.http01.put(token, validation)
                    cleanup.append(lambda t=token: self.http01.remove(t)  # type: ignore
                                   if self.http01 else None)
                self.client.answer_challenge(challb, response)
                log.info("reach acme name=%s challenge=%s result=answered", name, how)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.timeout)
            try:
                order = self.client.poll_and_finalize(order, deadline)
            except Exception as exc:
                raise AcmeError(f"ACME order for {name} failed: {exc}") from exc
        finally:
            for undo in cleanup:
                undo()
        chain = order.fullchain_pem.encode()
        cert = x509.load_pem_x509_certificate(chain)
        log.info("reach acme name=%s result=issued not_after=%s", name,
                 cert.not_valid_after_utc.isoformat())
        return Issued(chain, key_pem, cert.not_valid_before_utc, cert.not_valid_after_utc)

    def _choose(self, authz: messages.AuthorizationResource
                ) -> tuple[messages.ChallengeBody, str]:
        offered = {c.chall.typ: c for c in authz.body.challenges}
        if self.alpn is not None and "tls-alpn-01" in offered:
            return offered["tls-alpn-01"], "tls-alpn-01"
        if self.http01 is not None and "http-01" in offered:
            return offered["http-01"], "http-01"
        raise AcmeError(f"no challenge we can answer among {sorted(offered)}")


def install(issued: Issued, cert_path: Path, key_path: Path,
            occtl_socket: str | None = None) -> str:
    """Key first, then the chain: a reader that sees the new chain also finds its key.

    With ``occtl_socket`` the running VPN server is then told to reload, which is how it
    picks up the new pair (the sec-mod reads both files again; sessions stay up). Returns
    the server's answer, or "" without a socket; ReloadError if it refused or is not there.
    """
    write_atomic(key_path, issued.key_pem, 0o600)
    write_atomic(cert_path, issued.fullchain_pem, 0o644)
    return reload_vpn(occtl_socket) if occtl_socket else ""


class ReloadError(AcmeError):
    """The certificate is installed but the VPN server did not take it."""


def reload_vpn(occtl_socket: str) -> str:
    """``occtl reload`` through the control socket; the server's message names a pair that
    did not load ("server certificate not reloaded: ...")."""
    try:
        with ControlClient(occtl_socket) as control:
            data = control.call("reload")
    except (ConnectFailed, Unreachable, ServerError) as exc:
        raise ReloadError(f"reload via {occtl_socket} failed: {exc}") from None
    message = str(data.get("message", "")) if isinstance(data, dict) else ""
    if "not reloaded" in message:
        raise ReloadError(message)
    log.info("reach acme reload result=ok socket=%s", occtl_socket)
    return message
