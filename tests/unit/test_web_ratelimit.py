"""Exponential backoff per client and globally, with an injected clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.web.ratelimit import RateLimiter, Throttle, describe_wait


def test_free_failures_then_doubling_delays() -> None:
    limiter = RateLimiter(free_failures=5, base_delay=2.0, max_delay=60.0)
    now = 100.0
    waits = [limiter.failure("a", now + i * 1000) for i in range(9)]
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4:] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert limiter.delay_for(50) == 60.0


def test_retry_after_counts_down_and_success_resets() -> None:
    limiter = RateLimiter(free_failures=1, base_delay=10.0)
    limiter.failure("a", 0.0)
    assert limiter.retry_after("a", 3.0) == 7.0
    assert limiter.retry_after("a", 11.0) == 0.0
    assert limiter.retry_after("b", 3.0) == 0.0
    limiter.success("a")
    assert limiter.failures("a", 11.0) == 0


def test_records_are_forgotten_and_bounded() -> None:
    limiter = RateLimiter(free_failures=1, base_delay=1.0, forget_after=60.0, max_keys=3)
    limiter.failure("old", 0.0)
    assert limiter.failures("old", 61.0) == 0
    for key in "abcde":
        limiter.failure(key, 100.0)
    assert len(limiter) == 3


def test_global_limit_catches_many_addresses() -> None:
    throttle = Throttle(per_client=RateLimiter(free_failures=5),
                        overall=RateLimiter(free_failures=10, base_delay=1.0))
    for i in range(10):
        throttle.failure(f"198.51.100.{i}", 0.0)
    verdict = throttle.check("198.51.100.200", 0.5)
    assert not verdict.allowed and verdict.scope == "global"
    assert throttle.check("198.51.100.200", 1.5).allowed


def test_verdict_tells_tries_left() -> None:
    throttle = Throttle()
    assert throttle.check("c", 0.0).tries_left == 5
    assert throttle.failure("c", 0.0).tries_left == 4


def test_describe_wait() -> None:
    assert describe_wait(0.2) == "1 second"
    assert describe_wait(31.5) == "32 seconds"
    assert describe_wait(900) == "15 minutes"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=40))
def test_waits_never_shrink_while_failures_accumulate(gaps: list[float]) -> None:
    limiter = RateLimiter(free_failures=3, base_delay=1.0, max_delay=500.0,
                          forget_after=1e12)
    now, last = 0.0, 0.0
    for gap in gaps:
        now += gap
        wait = limiter.failure("k", now)
        assert 0.0 <= wait <= 500.0
        assert wait >= last
        last = wait
