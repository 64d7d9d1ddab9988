from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.worker.bandwidth import TokenBucket


def test_long_run_rate_matches_the_limit():
    bucket = TokenBucket(1_000_000, now=0.0)
    now, sent = 0.0, 0
    while now < 10.0:  # a sender that always obeys the pause
        sent += 64 * 1400
        now += max(bucket.take(64 * 1400, now), 0.001)
    assert abs(sent / now - 1_000_000) / 1_000_000 < 0.05


def test_burst_then_pause():
    bucket = TokenBucket(100_000, burst=50_000, now=0.0)
    assert bucket.take(50_000, 0.0) == 0.0
    assert abs(bucket.take(10_000, 0.0) - 0.1) < 1e-9


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**9), st.lists(st.tuples(st.integers(0, 70000), st.floats(0, 5)),
                                       max_size=50))
def test_pause_is_never_negative(rate, steps):
    bucket = TokenBucket(rate, now=0.0)
    now = 0.0
    for nbytes, dt in steps:
        now += dt
        assert bucket.take(nbytes, now) >= 0.0
