"""The shared web foundation: CSRF on every unsafe method, headers, cookies, server stop."""

from __future__ import annotations

import http.client
import re

import pytest
from flask import Flask, render_template_string

from appliance.web import WebServer, create_base_app

FORM = """{% from "macros.html" import csrf_field %}<form method=post>{{ csrf_field() }}</form>"""


@pytest.fixture
def app() -> Flask:
    app = create_base_app(__name__, https=True, cookie_name="t")

    @app.route("/form", methods=["GET", "POST", "PUT", "DELETE"])
    def form() -> str:
        return render_template_string(FORM)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    return app


def _token(client) -> str:  # noqa: ANN001
    html = client.get("/form", base_url="https://box").get_data(as_text=True)
    match = re.search(r'value="([^"]+)"', html)
    assert match
    return match.group(1)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_unsafe_methods_need_the_token(app: Flask, method: str) -> None:
    client = app.test_client()
    token = _token(client)
    assert client.open("/form", method=method, base_url="https://box").status_code == 400
    r = client.open("/form", method=method, base_url="https://box",
                    data={"csrf_token": token + "x"})
    assert r.status_code == 400
    r = client.open("/form", method=method, base_url="https://box", data={"csrf_token": token})
    assert r.status_code == 200
    r = client.open("/form", method=method, base_url="https://box",
                    headers={"X-CSRF-Token": token})
    assert r.status_code == 200


def test_token_of_another_session_is_refused(app: Flask) -> None:
    token = _token(app.test_client())
    other = app.test_client()
    other.get("/form", base_url="https://box")
    assert other.post("/form", base_url="https://box",
                      data={"csrf_token": token}).status_code == 400


def test_foreign_origin_is_refused(app: Flask) -> None:
    client = app.test_client()
    token = _token(client)
    r = client.post("/form", base_url="https://box", data={"csrf_token": token},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 400
    r = client.post("/form", base_url="https://box", data={"csrf_token": token},
                    headers={"Origin": "https://box"})
    assert r.status_code == 200


def test_headers_and_cookie_flags(app: Flask) -> None:
    r = app.test_client().get("/form", base_url="https://box")
    assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("__Host-t=")
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie


def test_stylesheet_is_served_and_has_dark_mode(app: Flask) -> None:
    r = app.test_client().get("/static/ocgate.css", base_url="https://box")
    assert r.status_code == 200 and b"prefers-color-scheme: dark" in r.data


def test_errors_do_not_leak_details(app: Flask) -> None:
    r = app.test_client().get("/boom", base_url="https://box")
    assert r.status_code == 500 and b"secret detail" not in r.data


def test_web_server_serves_and_stops(app: Flask) -> None:
    server = WebServer(app, ["127.0.0.1"], 0)
    server.start_thread()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/static/ocgate.css")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Server") == "OCGate"
        conn.close()
    finally:
        server.stop()
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=2).request("GET", "/")
