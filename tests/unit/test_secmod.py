"""Cookie validity rules of docs/protocol.md 7.6, with a clock we control."""

from __future__ import annotations

from appliance.vpn.secmod.cookies import AUTH_SLACK, SessionStore


def test_cookie_valid_for_active_session_plus_timeout():
    store = SessionStore(cookie_timeout=300)
    cookie, session = store.create("alice", "", "198.18.0.2", now=1000.0)
    assert len(cookie) == 44  # base64 of 32 random bytes, like ocserv
    assert store.open(cookie, now=1000.0 + 300) is session
    # while connected it never expires
    assert store.expire(now=10_000.0) == []
    store.close(session.sid, invalidate=False, now=10_000.0)
    # after the connection ends: cookie-timeout (+ ocserv's slack) more
    assert store.open(cookie, now=10_000.0 + 300 + AUTH_SLACK - 1) is session
    store.close(session.sid, invalidate=False, now=10_300.0)
    assert store.open(cookie, now=10_300.0 + 300 + AUTH_SLACK + 1) is None


def test_takeover_counts_and_invalidation():
    store = SessionStore(cookie_timeout=60)
    cookie, session = store.create("bob", "staff", "198.18.0.2", now=0.0)
    assert store.open(cookie, now=1.0) is session
    assert store.open(cookie, now=2.0) is session  # a second connection takes over
    assert session.in_use == 2
    store.close(session.sid, invalidate=False, now=3.0)  # the old one ends
    assert session.expires is None  # still in use by the new one
    store.close(session.sid, invalidate=True, now=4.0)  # user logout
    assert store.open(cookie, now=5.0) is None


def test_unknown_and_expired_cookies_are_refused():
    store = SessionStore(cookie_timeout=10)
    cookie, _ = store.create("carol", "", "198.18.0.2", now=0.0)
    assert store.open("not-a-cookie", now=1.0) is None
    assert store.open(cookie, now=10 + AUTH_SLACK + 1) is None
    assert store.expire(now=10 + AUTH_SLACK + 1) != []
    assert store.listing() == []


def test_cookies_are_not_kept_in_clear():
    store = SessionStore(cookie_timeout=10)
    cookie, _ = store.create("dave", "", "198.18.0.2", now=0.0)
    assert cookie not in repr(store.listing())
    assert all(cookie.encode() not in s.cookie_hash for s in store._by_hash.values())
