"""The sec-mod restart budget (appliance/vpn/main/supervise.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.main.supervise import RestartBudget


def test_restarts_within_the_limit_then_gives_up() -> None:
    budget = RestartBudget(limit=3, window=60.0)
    assert [budget.allow(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert not budget.allow(3.0)
    assert not budget.allow(59.0)


def test_old_restarts_are_forgotten_after_the_window() -> None:
    budget = RestartBudget(limit=2, window=10.0)
    assert budget.allow(0.0) and budget.allow(5.0)
    assert not budget.allow(9.9)
    assert budget.allow(10.0)  # the one at 0.0 has left the window
    assert not budget.allow(14.0)
    assert budget.allow(15.1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=40))
def test_never_more_than_limit_in_any_window(gaps: list[float]) -> None:
    budget = RestartBudget(limit=3, window=60.0)
    now, allowed = 0.0, []
    for gap in gaps:
        now += gap
        if budget.allow(now):
            allowed.append(now)
    for i, start in enumerate(allowed):
        assert sum(1 for t in allowed[i:] if t - start < 60.0) <= 3
