"""Files that may be downloaded exactly once, by the admin session that made them.

A PKCS#12 bundle holds a private key the device must not keep: it lives here, in memory,
until its first download or a short expiry, whichever comes first.  Tying it to the
admin's session id means a leaked download link is worthless to anybody else.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

TTL_SECONDS = 10 * 60.0
MAX_PENDING = 16


@dataclass(frozen=True)
class PendingDownload:
    owner: str
    filename: str
    mimetype: str
    data: bytes
    expires: float


class OneTimeDownloads:
    def __init__(self, ttl: float = TTL_SECONDS, max_pending: int = MAX_PENDING) -> None:
        self.ttl = ttl
        self.max_pending = max_pending
        self._items: OrderedDict[str, PendingDownload] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, owner: str, filename: str, mimetype: str, data: bytes, now: float) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expire(now)
            while len(self._items) >= self.max_pending:
                self._items.popitem(last=False)
            self._items[token] = PendingDownload(owner, filename, mimetype, data,
                                                 now + self.ttl)
        return token

    def take(self, token: str, owner: str, now: float) -> PendingDownload | None:
        """The file, removed from memory; None if unknown, expired or someone else's."""
        with self._lock:
            self._expire(now)
            item = self._items.get(token)
            if item is None or not secrets.compare_digest(item.owner, owner):
                return None
            del self._items[token]
            return item

    def _expire(self, now: float) -> None:
        for token in [t for t, item in self._items.items() if item.expires <= now]:
            del self._items[token]

    def __len__(self) -> int:
        return len(self._items)
