"""The sec-mod's side of the AnyConnect features: who may fetch the user-profile, logout,
and the certificate rule for CONNECT (docs/protocol.md §2.6, §2.9, §7.6, §11 items 24, 27).

These are verdicts about cookies, so they live with the cookie store in the sec-mod, never
in a worker: a worker can only ask. The CONNECT rule is enforced twice over: the worker
asks ``ConnectCertCheck`` on the connection whose handshake the sec-mod ran (so the sec-mod
knows that connection's certificate), and ``SessionOpen`` from main is refused unless such
a check just said yes for the same cookie. A worker that skips the question gets nothing.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Protocol

from .. import ipc
from ..config import Config, ConfigError, load_user_config
from ..protocol.anyconnect import MAX_PROFILE_BYTES, AnyConnectError, ProfileRef, profile_ref

log = logging.getLogger(__name__)

APPROVAL_TTL = 30.0  # seconds between the worker's check and main's SessionOpen


class _Session(Protocol):
    sid: str
    username: str
    groupname: str


def connect_needs_cert(cfg: Config, cert_required: bool) -> bool:
    """ocserv's rule (worker-auth.c auth_cookie): with certificate authentication the
    CONNECT connection must present the certificate again, unless cisco-client-compat,
    because AnyConnect opens a new connection for CONNECT without one (§2.6)."""
    return cert_required and not cfg.cisco_client_compat


def _key(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode()).digest()


@dataclass
class CertGate:
    """Yes-answers of ConnectCertCheck, waiting for main's SessionOpen of the same cookie."""

    approvals: dict[bytes, float] = field(default_factory=dict)

    def check(self, cookie: str, session: _Session | None, cert_username: str | None,
              required: bool, now: float) -> str:
        """"" when the CONNECT may go on, else the reason it may not."""
        if session is None:
            return "cookie is not valid"
        if required:
            if cert_username is None:
                return "no certificate on the CONNECT connection"
            if cert_username != session.username:
                return (f"certificate of '{cert_username}' presented for a session of "
                        f"'{session.username}'")
        self._sweep(now)
        self.approvals[_key(cookie)] = now + APPROVAL_TTL
        return ""

    def admit(self, cookie: str, required: bool, now: float) -> bool:
        """Main's SessionOpen: allowed when no certificate is needed, or when the worker's
        connection just proved one for this cookie (each approval is used once)."""
        deadline = self.approvals.pop(_key(cookie), None)
        return not required or (deadline is not None and deadline >= now)

    def _sweep(self, now: float) -> None:
        for key in [k for k, d in self.approvals.items() if d < now]:
            del self.approvals[key]


@dataclass
class ProfileCache:
    """The advertised user-profile (name + SHA-1), re-read when the file changes."""

    stamp: tuple[str, int, int] | None = None
    ref: ProfileRef | None = None

    def advert(self, path: str | None) -> ProfileRef | None:
        if not path:
            return None
        try:
            st = os.stat(path)
        except OSError as exc:
            log.error("user-profile %s cannot be read: %s", path, exc)
            return None
        stamp = (path, st.st_mtime_ns, st.st_size)
        if stamp != self.stamp:
            self.stamp, self.ref = stamp, None
            data = read_profile(path)
            if data is not None:
                try:
                    self.ref = profile_ref(path, data)
                except AnyConnectError as exc:
                    log.error("user-profile %s not advertised: %s", path, exc)
        return self.ref


def read_profile(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        log.error("user-profile %s cannot be read: %s", path, exc)
        return None
    if len(data) > MAX_PROFILE_BYTES:
        log.error("user-profile %s is larger than %d bytes", path, MAX_PROFILE_BYTES)
        return None
    return data


def profile_path_for(cfg: Config, session: _Session) -> str | None:
    """The session's user-profile: a per-user/per-group value wins over the global one
    (ocserv serves ``user_config->xml_config_file``)."""
    try:
        user = load_user_config(cfg, session.username, session.groupname or None)
    except (ConfigError, OSError) as exc:
        log.error("per-user configuration of '%s': %s", session.username, exc)
        return cfg.user_profile
    return getattr(user, "user_profile", None) or cfg.user_profile


def profile_answer(cfg: Config, session: _Session | None) -> ipc.ProfileData:
    """The ProfileFetch answer: 401 for a bad cookie, 404 when no profile applies."""
    if session is None:
        return ipc.ProfileData(ok=False, status=401)
    path = profile_path_for(cfg, session)
    data = read_profile(path) if path else None
    if data is None:
        return ipc.ProfileData(ok=False, status=404)
    log.info("user '%s' fetched the user-profile %s", session.username, path)
    return ipc.ProfileData(ok=True, status=200, content=base64.b64encode(data).decode())
