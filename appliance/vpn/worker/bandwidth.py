"""Per-user bandwidth limits (``rx-data-per-sec`` / ``tx-data-per-sec``), sans-IO.

A shaper, not a policer: what was already read is delivered, the bucket goes into debt,
and the data path stops reading that direction until the debt is paid. TCP inside the
tunnel then sees a slower path rather than losses, which keeps the rate close to the limit.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: int, burst: int | None = None, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        # a tenth of a second of traffic, but at least a few full packets
        self.burst = float(burst if burst is not None else max(rate // 10, 16 * 1500))
        self.tokens = self.burst
        self.stamp = now

    def take(self, nbytes: int, now: float) -> float:
        """Spend ``nbytes``; returns how many seconds to pause (0.0: go on)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= nbytes
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
