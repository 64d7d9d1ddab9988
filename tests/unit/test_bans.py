"""Ban points as ocserv counts them, with a clock we control."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.main.bans import MAX_ENTRIES, BanSettings, BanTable

S = BanSettings(max_score=30, ban_time=300, reset_time=1200, points_wrong_password=10,
                points_connection=1)


def test_wrong_passwords_ban_then_expire():
    t = BanTable(S)
    assert not t.add("198.18.0.2", 10, now=0)
    assert not t.add("198.18.0.2", 10, now=1)
    assert t.add("198.18.0.2", 10, now=2)  # reaches 30: banned now
    assert t.banned("198.18.0.2", now=3)
    assert not t.banned("198.18.0.3", now=3)  # another address is fine
    assert t.banned("198.18.0.2", now=301)
    assert not t.banned("198.18.0.2", now=303)  # ban-time is over


def test_points_reset_after_quiet_period():
    t = BanTable(S)
    t.add("198.18.0.2", 20, now=0)
    assert not t.add("198.18.0.2", 10, now=1201)  # reset first: 10 < 30
    assert [(ip, score) for ip, score, _ in t.points(now=1202)] == [("198.18.0.2", 10)]


def test_unban_disabled_and_loopback():
    t = BanTable(S)
    t.add("198.18.0.2", 30, now=0)
    assert t.unban("198.18.0.2") and not t.banned("198.18.0.2", now=1)
    assert not t.add("127.0.0.1", 1000, now=0)
    off = BanTable(BanSettings(max_score=0))
    assert not off.add("198.18.0.2", 1000, now=0) and not off.banned("198.18.0.2", 1)


def test_table_is_bounded():
    t = BanTable(S)
    for i in range(MAX_ENTRIES + 100):
        t.add(f"2001:db8::{i:x}", 1, now=float(i))
    assert len(t._entries) <= MAX_ENTRIES


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["198.18.0.2", "198.18.0.3", "::1", "bogus"]),
                          st.integers(0, 50), st.floats(0, 10_000)), max_size=50))
def test_never_raises(events):
    t = BanTable(S)
    for ip, points, now in sorted(events, key=lambda e: e[2]):
        t.add(ip, points, now)
        t.banned(ip, now)
        t.points(now)
