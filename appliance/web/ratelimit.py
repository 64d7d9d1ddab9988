"""Failure-driven rate limiting for secrets typed into a web form.

The setup code (80 bits) and later the admin password are only as strong as the number of
guesses an attacker on the LAN gets.  After a few free mistakes every further failure
doubles the wait, per client address and, with a higher allowance, globally (an attacker
with many addresses still gets nowhere).  Successes reset a client's count.  Time is passed
in as ``now`` (a monotonic float) so that the behaviour is testable without sleeping.
Memory stays bounded: idle records are forgotten and the table has a size cap.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from .l10n import format_wait

GLOBAL_KEY = "*"


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    last_failure: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt may proceed now, and otherwise for how long to wait."""

    allowed: bool
    retry_after: float = 0.0
    scope: str = ""  # "client" or "global" when refused
    tries_left: int | None = None  # free tries left before delays start (client scope)


class RateLimiter:
    """Exponential backoff after ``free_failures`` failures for one family of keys."""

    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_delay: float = 2.0,
        max_delay: float = 900.0,
        forget_after: float = 3600.0,
        max_keys: int = 4096,
    ) -> None:
        if free_failures < 0 or base_delay <= 0 or max_delay < base_delay or max_keys < 1:
            raise ValueError("invalid rate limiter parameters")
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def delay_for(self, failures: int) -> float:
        """Wait imposed after ``failures`` consecutive failures (0 while still free)."""
        if failures < self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures, 64)  # 2**64 * base is past any cap
        return min(self.base_delay * (2.0 ** exponent), self.max_delay)

    def _get(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and now - record.last_failure > self.forget_after:
            del self._records[key]
            return None
        return record

    def retry_after(self, key: str, now: float) -> float:
        """Seconds ``key`` must still wait; 0.0 means an attempt is allowed now."""
        with self._lock:
            record = self._get(key, now)
            return max(0.0, record.blocked_until - now) if record else 0.0

    def failures(self, key: str, now: float) -> int:
        with self._lock:
            record = self._get(key, now)
            return record.failures if record else 0

    def failure(self, key: str, now: float) -> float:
        """Record a failed attempt; returns the wait now imposed on ``key``."""
        with self._lock:
            record = self._get(key, now) or _Record()
            record.failures += 1
            record.last_failure = now
            record.blocked_until = now + self.delay_for(record.failures)
            self._records[key] = record
            self._records.move_to_end(key)
            while len(self._records) > self.max_keys:
                self._records.popitem(last=False)
            return record.blocked_until - now

    def success(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)


class Throttle:
    """A per-client limiter plus a global one with a larger allowance."""

    def __init__(self, per_client: RateLimiter | None = None,
                 overall: RateLimiter | None = None) -> None:
        # "is None", not "or": an empty RateLimiter is falsy (it has a length).
        self.per_client = RateLimiter() if per_client is None else per_client
        self.overall = (RateLimiter(free_failures=30, base_delay=1.0, max_delay=300.0)
                        if overall is None else overall)

    def check(self, client: str, now: float) -> Verdict:
        wait = self.per_client.retry_after(client, now)
        if wait > 0:
            return Verdict(False, wait, "client")
        wait = self.overall.retry_after(GLOBAL_KEY, now)
        if wait > 0:
            return Verdict(False, wait, "global")
        left = max(0, self.per_client.free_failures - self.per_client.failures(client, now))
        return Verdict(True, tries_left=left)

    def failure(self, client: str, now: float) -> Verdict:
        """Record a failure; the verdict says what the *next* attempt will face."""
        wait = self.per_client.failure(client, now)
        wait_all = self.overall.failure(GLOBAL_KEY, now)
        left = max(0, self.per_client.free_failures - self.per_client.failures(client, now))
        if wait > 0 or wait_all > 0:
            scope = "client" if wait >= wait_all else "global"
            return Verdict(False, max(wait, wait_all), scope, left)
        return Verdict(True, tries_left=left)

    def success(self, client: str) -> None:
        self.per_client.success(client)


def describe_wait(seconds: float) -> str:
    """'12 seconds', '3 minutes' (in the page's language): for messages shown to a person."""
    return format_wait(seconds)
