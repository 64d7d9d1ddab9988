"""The sec-mod's cookie store: who logged in, and for how long a cookie stays good.

Only the sec-mod holds it (main asks through SessionOpen/SessionClose), and it keeps hashes,
not cookies, so that even a dump of the store cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field

from .. import ipc

AUTH_SLACK = 15  # seconds of grace ocserv adds to cookie validity (docs/protocol.md 7.6)


@dataclass
class Session:
    cookie_hash: bytes
    sid: str
    username: str
    groupname: str
    remote_ip: str
    created: float
    expires: float | None  # None while a connection uses it
    in_use: int = 0
    extra: dict = field(default_factory=dict)  # back-end session attributes (RADIUS)
    accounted: bool = False  # acct = pam accepted it at its first open (ocserv: session_is_open)
    device: tuple[str, str] = ("", "")  # (device type, platform) the login's request named
    vhost: str = ""  # the virtual host it logged in to ("": the default one)


def _hash_cookie(cookie: str) -> bytes:
    """Sessions are keyed by a hash so that even a memory dump of the store holds no cookie."""
    return hashlib.sha256(cookie.encode()).digest()


class SessionStore:
    """Cookies and their validity: the active session plus cookie-timeout (docs/protocol.md 7.6)."""

    def __init__(self, cookie_timeout: int) -> None:
        self.cookie_timeout = cookie_timeout
        self._by_hash: dict[bytes, Session] = {}

    def create(self, username: str, groupname: str, remote_ip: str,
               now: float, extra: dict | None = None,
               device: tuple[str, str] = ("", ""), vhost: str = "") -> tuple[str, Session]:
        cookie = base64.b64encode(secrets.token_bytes(32)).decode()
        session = Session(_hash_cookie(cookie), secrets.token_hex(16), username, groupname,
                          remote_ip, now, now + self.cookie_timeout + AUTH_SLACK,
                          extra=extra or {}, device=device, vhost=vhost)
        self._by_hash[session.cookie_hash] = session
        return cookie, session

    def open(self, cookie: str, now: float) -> Session | None:
        session = self._by_hash.get(_hash_cookie(cookie))
        if session is None or (session.expires is not None and session.expires < now):
            return None
        session.in_use += 1
        session.expires = None
        return session

    def close(self, sid: str, invalidate: bool, now: float) -> None:
        for key, session in list(self._by_hash.items()):
            if session.sid != sid:
                continue
            session.in_use = max(0, session.in_use - 1)
            if invalidate:
                del self._by_hash[key]
            elif session.in_use == 0:
                session.expires = now + self.cookie_timeout + AUTH_SLACK

    def peek(self, cookie: str, now: float) -> Session | None:
        """The live session a cookie names, without counting a connection on it."""
        session = self._by_hash.get(_hash_cookie(cookie))
        if session is None or (session.expires is not None and session.expires < now):
            return None
        return session

    def revoke(self, cookie: str) -> Session | None:
        """Logout: the cookie stops working at once (docs/protocol.md §7.6, §11 item 27)."""
        return self._by_hash.pop(_hash_cookie(cookie), None)

    def expire(self, now: float) -> list[str]:
        gone = [k for k, s in self._by_hash.items() if s.expires is not None and s.expires < now]
        sids = [self._by_hash[k].sid for k in gone]
        for key in gone:
            del self._by_hash[key]
        return sids

    def listing(self) -> list[ipc.SessionEntry]:
        return [ipc.SessionEntry(s.sid, s.username, s.groupname, s.remote_ip, s.created,
                                 s.expires, s.in_use, s.vhost) for s in self._by_hash.values()]
