"""The factory: which back ends a configuration asks for. RADIUS is imported only when configured,
so pyrad is never loaded otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import AuthMethod
from .base import PAM_ANSWER_TIMEOUT, AuthConfigError, PasswordBackend
from .groups import GroupPolicy
from .pam import PamAuth
from .plain import PlainAuth

# --------------------------------------------------------------------------- set-up


@dataclass
class AuthSetup:
    """What the configuration asks for, decided once at start-up."""

    password: PasswordBackend | None = None
    cert_required: bool = False  # auth = certificate: no login without one
    cert_sufficient: bool = False  # certificate alone logs in (cert-only, or enable-auth)
    groups: GroupPolicy = field(default_factory=GroupPolicy)

    @property
    def wants_cert(self) -> bool:
        return self.cert_required or self.cert_sufficient


def make_setup(auth: Sequence[AuthMethod], enable_auth: Sequence[AuthMethod],
               ca_cert: str | None, cert_user_oid: str | None,
               groups: GroupPolicy | None = None,
               answer_timeout: float = PAM_ANSWER_TIMEOUT) -> AuthSetup:
    """Back-ends for ``auth`` (all must pass) and ``enable-auth`` (any one suffices)."""
    setup = AuthSetup(groups=groups or GroupPolicy())
    for method in auth:
        if method.name == "certificate":
            setup.cert_required = True
        else:
            setup.password = _password_backend(method, answer_timeout)
    setup.cert_sufficient = setup.cert_required and setup.password is None
    for method in enable_auth:
        if method.name == "certificate":
            setup.cert_sufficient = True
        else:  # config/model.py refuses these already; never ignore an authentication setting
            raise AuthConfigError(f"enable-auth = {method.name} is not implemented")
    if setup.password is None and not setup.wants_cert:
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
