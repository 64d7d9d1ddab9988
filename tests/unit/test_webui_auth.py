"""Admin sign-in: no default credentials, lockout, timeouts, sign-out, cookies, headers,
and the two security sweeps over every route: login required, CSRF required."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from appliance.webui.app import PUBLIC_ENDPOINTS
from appliance.webui.auth import AdminSessions, LoginGuard
from tests.support.webui import (
    ADMIN_PASSWORD,
    ALICE,
    UI,
    build_ui,
    post,
    sign_in,
    token,
)

PARAMS = {"name": ALICE, "slug": "network", "worker_id": "4242", "filename": "webui.css",
          "token": "t0ken", "serial": "ABCDEF"}


# --------------------------------------------------------------------------- sans-IO parts


def test_guard_locks_after_five_failures_within_fifteen_minutes() -> None:
    guard = LoginGuard()
    for i in range(4):
        verdict = guard.failure("198.18.2.1", 100.0 + i)
        assert verdict.allowed and verdict.tries_left == 4 - i
    locked = guard.failure("198.18.2.1", 110.0)
    assert not locked.allowed and locked.locked_for == pytest.approx(900.0)
    assert not guard.check("198.18.2.1", 110.0 + 899).allowed
    assert guard.check("198.18.2.1", 110.0 + 900).allowed
    assert guard.check("198.18.2.99", 110.0).allowed  # other addresses are not affected


def test_guard_forgets_failures_older_than_the_window() -> None:
    guard = LoginGuard()
    for i in range(4):
        guard.failure("c", float(i))
    assert guard.failure("c", 4 + 900.0).allowed  # the first four are out of the window
    guard.success("c")
    assert guard.check("c", 2000.0).tries_left == 5


def test_guard_memory_is_bounded() -> None:
    guard = LoginGuard(max_keys=10)
    for i in range(100):
        guard.failure(f"10.0.0.{i}", 1.0)
    assert len(guard._keys) == 10


def test_admin_sessions_idle_and_absolute_timeouts() -> None:
    store = AdminSessions(idle_timeout=60, max_age=300)
    s = store.create("admin", "c", 0.0)
    assert store.touch(s.sid, 59.0) is not None
    assert store.touch(s.sid, 118.0) is not None  # idle timer was refreshed at 59
    assert store.touch(s.sid, 179.0) is None  # idle for 61 s
    s2 = store.create("admin", "c", 0.0)
    for t in range(50, 300, 50):
        assert store.touch(s2.sid, float(t)) is not None
    assert store.touch(s2.sid, 301.0) is None  # absolute lifetime
    s3 = store.create("admin", "c", 0.0)
    store.drop(s3.sid)
    assert store.touch(s3.sid, 1.0) is None
    assert store.touch(None, 1.0) is None and store.touch(123, 1.0) is None


# --------------------------------------------------------------------------- sign-in


def test_wrong_then_right_password(ui: UI) -> None:
    client = ui.client()
    response = sign_in(client, "not the password")
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert "Wrong user name or password" in page and "4 more tries" in page
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert "Dashboard" in client.get("/").get_data(as_text=True)


def test_no_default_credentials(ui: UI) -> None:
    for username, password in (("admin", "admin"), ("admin", "password"), ("root", "root"),
                               ("", ""), (ALICE, "seven Violet kites over 19 dunes")):
        assert sign_in(ui.client(), password, username=username).status_code == 401
    ui.ctx.guard.success("127.0.0.1")
    ui.layout.admin_passwd.unlink()  # no admin file: nobody at all can sign in
    assert sign_in(ui.client()).status_code == 401


def test_lockout_after_five_failures_even_with_the_right_password(ui: UI) -> None:
    client = ui.client()
    for _ in range(4):
        assert sign_in(client, "wrong").status_code == 401
    fifth = sign_in(client, "wrong")
    assert fifth.status_code == 401 and "locked out for 15 minutes" in fifth.get_data(
        as_text=True)
    refused = sign_in(client)  # right password, but locked
    assert refused.status_code == 429
    assert "Too many failed sign-ins from this address" in refused.get_data(as_text=True)
    other = sign_in(ui.client(), environ={"REMOTE_ADDR": "198.18.2.50"})
    assert other.status_code == 303  # the lockout is per address
    ui.clock.now += 15 * 60
    assert sign_in(client).status_code == 303


def test_many_addresses_hit_the_global_limiter(ui: UI) -> None:
    for i in range(30):
        sign_in(ui.client(), "wrong", environ={"REMOTE_ADDR": f"198.51.100.{i}"})
    response = sign_in(ui.client(), environ={"REMOTE_ADDR": "198.51.100.200"})
    assert response.status_code == 429
    assert "on this device" in response.get_data(as_text=True)


def test_session_idle_timeout(ui: UI, admin) -> None:
    assert admin.get("/").status_code == 200
    ui.clock.now += 29 * 60
    assert admin.get("/").status_code == 200
    ui.clock.now += 31 * 60
    response = admin.get("/users/")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login?next=/users/")
    assert "session expired" in admin.get("/login").get_data(as_text=True)


def test_sign_out_ends_the_session_on_the_server(ui: UI, admin) -> None:
    cookie = admin.get_cookie("ocgate_admin")
    assert cookie is not None
    response = post(admin, "/logout")
    assert response.status_code == 303
    thief = ui.client()
    thief.set_cookie("ocgate_admin", cookie.value)
    assert thief.get("/").status_code == 303  # the copied cookie is worthless now


def test_sign_in_rotates_the_session(ui: UI) -> None:
    client = ui.client()
    before = token(client)
    sign_in(client)
    assert token(client, "/") != before  # new CSRF token after the privilege change


@pytest.mark.parametrize("target,expected", [("/users/", "/users/"),
                                             ("//evil.example/x", "/"),
                                             ("https://evil.example/", "/")])
def test_next_is_never_an_open_redirect(ui: UI, target: str, expected: str) -> None:
    client = ui.client()
    csrf = token(client)
    response = client.post("/login?next=" + target, data={
        "csrf_token": csrf, "username": "admin", "password": ADMIN_PASSWORD})
    assert response.headers["Location"] == expected


def test_cookie_flags_plain_http(ui: UI) -> None:
    client = ui.client()
    response = client.get("/login")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert cookie.startswith("ocgate_admin=")


def test_cookie_flags_https(tmp_path: Path) -> None:
    secure = build_ui(tmp_path / "s", https=True)
    response = secure.client().get("/login", base_url="https://localhost")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-ocgate_admin=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_security_headers_on_pages_and_api(admin) -> None:
    for path in ("/", "/api/live", "/login"):
        response = admin.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"


# --------------------------------------------------------------------------- sweeps


def _routes(app: Flask, method: str) -> list[tuple[str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if method not in (rule.methods or ()):
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", PARAMS[arg]).replace(
                f"<int:{arg}>", PARAMS[arg]).replace(f"<path:{arg}>", PARAMS[arg])
        out.append((rule.endpoint, path))
    return sorted(out)


def test_every_page_needs_a_signed_in_admin(ui: UI) -> None:
    client = ui.client()
    checked = 0
    for endpoint, path in _routes(ui.app, "GET"):
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        response = client.get(path)
        checked += 1
        if path.startswith("/api/"):
            assert response.status_code == 401, path
        else:
            assert response.status_code == 303, path
            assert response.headers["Location"].startswith("/login?next="), path
    assert checked >= 15


def test_every_post_without_csrf_token_is_refused(ui: UI, admin) -> None:
    posts = _routes(ui.app, "POST")
    assert len(posts) >= 15
    for _endpoint, path in posts:
        for data in ({}, {"csrf_token": "forged"}):
            response = admin.post(path, data=data)
            assert response.status_code == 400, (path, data)
            assert "did not come from this device" in response.get_data(as_text=True)
    # a correct token but a foreign Origin is refused too
    response = admin.post("/logout", data={"csrf_token": token(admin, "/")},
                          headers={"Origin": "https://evil.example"})
    assert response.status_code == 400
    assert admin.get("/").status_code == 200  # and nothing above signed us out


def test_unauthenticated_posts_are_refused_or_redirected(ui: UI) -> None:
    client = ui.client()
    for endpoint, path in _routes(ui.app, "POST"):
        response = client.post(path, data={"csrf_token": token(client)})
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        assert response.status_code == 303 and "/login" in response.headers["Location"], path
