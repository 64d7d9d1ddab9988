"""ocserv's ban points: every connection and every wrong password from an address costs
points; an address that reaches ``max-ban-score`` is refused at accept() for ``ban-time``.

Sans-IO: the caller passes the clock. Points decay all at once: an address that collected
no new points for ``ban-reset-time`` starts from zero again, as in ocserv.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .ipv6 import ban_key

MAX_ENTRIES = 16384  # addresses remembered; the oldest harmless ones go first


@dataclass
class BanEntry:
    score: int = 0
    last_points: float = 0.0
    banned_until: float = 0.0


@dataclass(frozen=True)
class BanSettings:
    max_score: int = 80  # 0 disables banning
    ban_time: int = 300
    reset_time: int = 1200
    points_wrong_password: int = 10
    points_connection: int = 1
    points_kkdcp: int = 1

    @classmethod
    def from_config(cls, cfg: object) -> BanSettings:
        def get(name: str, default: int) -> int:
            value = getattr(cfg, name, None)
            return default if value is None else int(value)

        return cls(get("max_ban_score", 80), get("ban_time", 300), get("ban_reset_time", 1200),
                   get("ban_points_wrong_password", 10), get("ban_points_connection", 1),
                   get("ban_points_kkdcp", 1))


class BanTable:
    def __init__(self, settings: BanSettings) -> None:
        self.settings = settings
        self._entries: dict[str, BanEntry] = {}

    @staticmethod
    def exempt(ip: str) -> bool:
        """Loopback never gets banned (local tools and health checks)."""
        try:
            return ipaddress.ip_address(ip).is_loopback
        except ValueError:
            return False

    def add(self, ip: str, points: int, now: float) -> bool:
        """Add points; True if this made the address banned."""
        s = self.settings
        if s.max_score <= 0 or points <= 0 or self.exempt(ip):
            return False
        ip = ban_key(ip)  # IPv6 by /64, v4-mapped as IPv4 (ocserv)
        entry = self._entries.get(ip)
        if entry is None:
            self._make_room(now)
            entry = self._entries[ip] = BanEntry()
        if entry.banned_until <= now and now - entry.last_points > s.reset_time:
            entry.score = 0
        entry.score += points
        entry.last_points = now
        if entry.score >= s.max_score and entry.banned_until <= now:
            entry.banned_until = now + s.ban_time
            return True
        return False

    def banned(self, ip: str, now: float) -> bool:
        entry = self._entries.get(ban_key(ip))
        return entry is not None and entry.banned_until > now

    def unban(self, ip: str) -> bool:
        return self._entries.pop(ban_key(ip), None) is not None

    def points(self, now: float) -> list[tuple[str, int, float | None]]:
        """(ip, score, banned until or None) of every address with points."""
        out = []
        for ip, e in self._entries.items():
            if now - e.last_points > self.settings.reset_time and e.banned_until <= now:
                continue
            out.append((ip, e.score, e.banned_until if e.banned_until > now else None))
        return out

    def _make_room(self, now: float) -> None:
        if len(self._entries) < MAX_ENTRIES:
            return
        stale = [ip for ip, e in self._entries.items()
                 if e.banned_until <= now and now - e.last_points > self.settings.reset_time]
        for ip in stale or sorted(self._entries, key=lambda k: self._entries[k].last_points)[
                :len(self._entries) // 4]:
            del self._entries[ip]
