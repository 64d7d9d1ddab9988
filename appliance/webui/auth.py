"""Admin sign-in: credentials from the wizard's file, lockout, server-side sessions.

There is no default account: the only admin is the one the first-boot wizard wrote to
``STATE/admin.passwd`` (ocpasswd format, crypt hash).  Guessing is bounded twice:

* :class:`LoginGuard`: 5 failed sign-ins from one address within 15 minutes lock that
  address out for 15 minutes (the OpenVPN Access Server rule); a success clears it;
* the global limiter of :class:`appliance.web.ratelimit.Throttle` slows everybody down
  exponentially once many failures pile up from many addresses.

The signed Flask cookie only carries a random session id; :class:`AdminSessions` holds
the session on the server, so "Sign out" and the idle/absolute timeouts really end it
(a copied cookie is worthless afterwards).  Both classes take ``now`` from the caller.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from ..vpn.passwd import PasswdEntry, PasswdError, load_passwd, verify_password

log = logging.getLogger(__name__)

MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60.0
LOCKOUT_SECONDS = 15 * 60.0
MAX_TRACKED = 4096
MAX_SESSIONS = 32


@dataclass(frozen=True)
class GuardVerdict:
    """Whether a sign-in attempt may run; ``locked_for`` seconds otherwise."""

    allowed: bool
    locked_for: float = 0.0
    tries_left: int = MAX_FAILURES


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginGuard:
    """Per-key lockout after ``max_failures`` failures within ``window`` seconds."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = FAILURE_WINDOW,
                 lockout: float = LOCKOUT_SECONDS, max_keys: int = MAX_TRACKED) -> None:
        if max_failures < 1 or window <= 0 or lockout <= 0 or max_keys < 1:
            raise ValueError("invalid login guard parameters")
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def _prune(self, record: _Failures, now: float) -> None:
        while record.times and now - record.times[0] >= self.window:
            record.times.popleft()

    def check(self, key: str, now: float) -> GuardVerdict:
        with self._lock:
            record = self._keys.get(key)
            if record is None:
                return GuardVerdict(True)
            if record.locked_until > now:
                return GuardVerdict(False, record.locked_until - now, 0)
            self._prune(record, now)
            return GuardVerdict(True, tries_left=self.max_failures - len(record.times))

    def failure(self, key: str, now: float) -> GuardVerdict:
        """Record a failure; the verdict is what the *next* attempt faces."""
        with self._lock:
            record = self._keys.get(key) or _Failures()
            self._prune(record, now)
            record.times.append(now)
            if len(record.times) >= self.max_failures:
                record.locked_until = now + self.lockout
                record.times.clear()
            self._keys[key] = record
            self._keys.move_to_end(key)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            if record.locked_until > now:
                return GuardVerdict(False, record.locked_until - now, 0)
            return GuardVerdict(True, tries_left=self.max_failures - len(record.times))

    def success(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)


@dataclass
class AdminSession:
    """One signed-in browser; times are monotonic seconds."""

    sid: str
    username: str
    client: str
    created: float
    seen: float


class AdminSessions:
    """Server-side sessions with an idle timeout and an absolute lifetime."""

    def __init__(self, idle_timeout: float = 30 * 60.0, max_age: float = 12 * 3600.0,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, AdminSession] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, username: str, client: str, now: float) -> AdminSession:
        with self._lock:
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)  # the least recently used goes
            record = AdminSession(secrets.token_urlsafe(32), username, client, now, now)
            self._sessions[record.sid] = record
            return record

    def touch(self, sid: object, now: float) -> AdminSession | None:
        """The live session for ``sid`` (refreshing its idle timer), or None."""
        if not isinstance(sid, str):
            return None
        with self._lock:
            record = self._sessions.get(sid)
            if record is None:
                return None
            if now - record.seen > self.idle_timeout or now - record.created > self.max_age:
                del self._sessions[sid]
                return None
            record.seen = now
            self._sessions.move_to_end(sid)
            return record

    def drop(self, sid: object) -> None:
        with self._lock:
            if isinstance(sid, str):
                self._sessions.pop(sid, None)

    def __len__(self) -> int:
        return len(self._sessions)


def load_admins(path: Path) -> dict[str, PasswdEntry]:
    """The admin accounts; an unreadable or missing file means nobody can sign in."""
    try:
        return load_passwd(path)
    except PasswdError as exc:
        log.error("no admin account can sign in: %s", exc)
        return {}


def check_credentials(path: Path, username: str, password: str) -> bool:
    """True only for a known, unlocked admin with the right password.

    Always costs one hash computation (verify_password burns one for unknown users), so
    the answer time does not reveal whether the user name exists.
    """
    if len(username) > 256 or len(password) > 1024:
        verify_password(None, "")
        return False
    entry = load_admins(path).get(username)
    return verify_password(entry, password)
