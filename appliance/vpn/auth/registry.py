"""The factory: which back ends a configuration asks for. RADIUS is imported only when configured,
so pyrad is never loaded otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import AuthMethod
from .base import PAM_ANSWER_TIMEOUT, AuthConfigError, PasswordBackend
from .groups import GroupPolicy
from .pam import PamAccounting, PamAuth
from .plain import PlainAuth

# --------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class Method:
    """One way to log in: what it asks for.  The ``auth`` lines together are the first
    (every part must pass); each ``enable-auth`` line is one more, any one suffices."""

    cert: bool
    password: bool


@dataclass
class AuthSetup:
    """What the configuration asks for, decided once at start-up."""

    password: PasswordBackend | None = None  # at most one, wherever it is configured
    methods: tuple[Method, ...] = ()
    groups: GroupPolicy = field(default_factory=GroupPolicy)
    account: PamAccounting | None = None  # acct = pam (RADIUS accounting lives in main)

    @property
    def cert_required(self) -> bool:
        """The ``auth`` lines include certificate: ocserv then holds a CONNECT without a
        certificate to it (secmod/anyconnect.py connect_needs_cert)."""
        return bool(self.methods) and self.methods[0].cert

    @property
    def wants_cert(self) -> bool:
        """Some method uses a certificate: the TLS handshake asks for one."""
        return any(m.cert for m in self.methods)

    def first(self, has_cert: bool) -> Method | None:
        """The method a connection starts with: the ``auth`` one, or with a verified
        certificate the first that uses certificates (what a CONNECT on a connection
        that did not log in is held to)."""
        if not self.methods:
            return None
        if has_cert and not self.methods[0].cert:
            return next((m for m in self.methods if m.cert), self.methods[0])
        return self.methods[0]

    def select(self, has_cert: bool) -> Method | None:
        """The method a connection logs in with, chosen as ocserv's worker does: the
        ``auth`` one, or with a verified certificate the first that uses certificates;
        a method that needs a certificate the client did not give hands over to the next
        not yet tried.  None: every method needs a certificate."""
        chosen = self.first(has_cert)
        if chosen is None:
            return None
        tried = [chosen]
        while chosen.cert and not has_cert:
            following = next((m for m in self.methods
                              if not any(m is t for t in tried)), None)
            if following is None:
                return None
            chosen = following
            tried.append(chosen)
        return chosen


def make_setup(auth: Sequence[AuthMethod], enable_auth: Sequence[AuthMethod],
               ca_cert: str | None, cert_user_oid: str | None,
               groups: GroupPolicy | None = None,
               answer_timeout: float = PAM_ANSWER_TIMEOUT,
               acct: AuthMethod | None = None) -> AuthSetup:
    """Back-ends for ``auth`` (all must pass), ``enable-auth`` (any one suffices) and
    ``acct = pam``."""
    setup = AuthSetup(groups=groups or GroupPolicy())
    if acct is not None and acct.name == "pam":
        setup.account = PamAccounting()
    methods = [Method(cert=any(m.name == "certificate" for m in auth),
                      password=any(m.name != "certificate" for m in auth))]
    for method in [*auth, *enable_auth]:
        if method.name == "certificate":
            continue
        if setup.password is not None:  # config/model.py refuses it first, as ocserv
            raise AuthConfigError("only one password-based authentication method may be "
                                  "configured")
        setup.password = _password_backend(method, answer_timeout)
    for method in enable_auth:
        methods.append(Method(cert=method.name == "certificate",
                              password=method.name != "certificate"))
    setup.methods = tuple(methods)
    if not auth:
        raise AuthConfigError("no usable authentication method configured")
    if setup.wants_cert and not ca_cert:
        raise AuthConfigError("certificate authentication needs 'ca-cert'")
    if setup.wants_cert and not cert_user_oid:
        raise AuthConfigError("certificate authentication needs 'cert-user-oid'")
    return setup


def _password_backend(method: AuthMethod, answer_timeout: float) -> PasswordBackend:
    if method.name == "plain":
        return PlainAuth(method.params.get("passwd"), method.params.get("otp"))
    if method.name == "pam":
        gid_min = int(method.params.get("gid-min", "0"))
        return PamAuth(method.params.get("service", "ocserv"), gid_min, answer_timeout)
    if method.name == "radius":
        from .radius.auth import RadiusAuth  # imports pyrad: only for RADIUS set-ups
        from .radius.conf import RadiusConfError

        try:
            return RadiusAuth.from_params(method.params, answer_timeout)
        except RadiusConfError as exc:
            raise AuthConfigError(f"auth = radius: {exc}") from None
    raise AuthConfigError(f"authentication method '{method.name}' is not implemented")
