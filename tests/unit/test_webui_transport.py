"""The UI's two transports: the VPN control socket client and HTTPS inside waitress."""

from __future__ import annotations

import http.cookiejar
import re
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import pki
from appliance.vpn.control import BanInfo, ControlServer, SessionInfo, StatusInfo, UserInfo
from appliance.web.tlsserver import HttpsWebServer
from appliance.web.vpnclient import VpnCommandError, VpnControl, VpnUnavailable
from appliance.webui import WebUIContext, create_app
from tests.support.control import LoopThread
from tests.support.fakes import FakeProvider
from tests.support.webui import ADMIN, ADMIN_PASSWORD, make_state


def one_user_provider() -> FakeProvider:
    """main with one connected user; disconnect orders really end sessions."""
    return FakeProvider(
        user_list=[UserInfo(id=77, username="alice", ipv4="10.73.0.2", rx=10, tx=20,
                            dtls_cipher="(DTLS1.2)-(PSK)-(AES-256-GCM)")],
        session_list=[SessionInfo("abcdef", "alice")],
        ban_list=[BanInfo("198.18.2.66", 90, 2e9)],
        status_info=StatusInfo(up_since=1000.0, rx=10, tx=20),
        bannable="198.18.2.66",
        reload_text="reloading the configuration",
        drop_disconnected=True,
        stoppable=False,
    )


@pytest.fixture
def control(tmp_path: Path) -> Iterator[tuple[VpnControl, FakeProvider]]:
    provider = one_user_provider()
    path = str(tmp_path / "occtl.socket")
    loop = LoopThread(ControlServer(path, provider))
    try:
        yield VpnControl(path), provider
    finally:
        loop.stop()


def test_vpn_control_against_the_real_control_server(control) -> None:  # noqa: ANN001
    vpn, provider = control
    assert vpn.status().active_sessions == 1
    (user,) = vpn.users()
    assert user.username == "alice" and user.dtls_cipher and user.rx == 10
    assert vpn.sessions()[0].full_session_id == "abcdef"
    assert vpn.bans()[0].score == 90
    snap = vpn.snapshot()
    assert snap.status.rx == 10 and len(snap.users) == 1
    assert vpn.unban("198.18.2.66") and not vpn.unban("198.18.2.67")
    assert vpn.reload().startswith("reloading") and provider.reloads == 1
    assert vpn.disconnect_id(77) is True and vpn.disconnect_id(77) is False
    assert vpn.disconnect_user("alice") == 0
    with pytest.raises(VpnCommandError):
        vpn.disconnect_user("")  # the server refuses an empty name


def test_vpn_control_unreachable(tmp_path: Path) -> None:
    vpn = VpnControl(str(tmp_path / "missing.socket"), timeout=0.5)
    with pytest.raises(VpnUnavailable):
        vpn.status()
    # a socket that accepts but never answers: a page must not hang
    path = tmp_path / "silent.socket"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    try:
        started = time.monotonic()
        with pytest.raises(VpnUnavailable):
            VpnControl(str(path), timeout=0.3).users()
        assert time.monotonic() - started < 2
    finally:
        listener.close()


# --------------------------------------------------------------------------- HTTPS


@pytest.fixture
def https_ui(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    layout = make_state(tmp_path / "state")
    ctx = WebUIContext.for_state(layout.root, https=True)
    server = HttpsWebServer(create_app(ctx), ["127.0.0.1"], 0, cert=layout.server_cert,
                            key=layout.server_key)
    server.start_thread()
    client_ctx = ssl.create_default_context(cafile=str(layout.ca_cert))
    client_ctx.check_hostname = False  # the test certificate names vpn.example.net
    try:
        yield f"https://127.0.0.1:{server.port}", client_ctx
    finally:
        server.stop()


def _opener(tls: ssl.SSLContext) -> Any:
    return urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=tls),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def test_https_sign_in_round_trip(https_ui) -> None:  # noqa: ANN001
    base, tls = https_ui
    opener = _opener(tls)
    with opener.open(base + "/", timeout=10) as response:
        assert response.url.endswith("/login?next=/")
        page = response.read().decode()
        assert response.headers["Strict-Transport-Security"]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    data = urllib.parse.urlencode({"csrf_token": csrf, "username": ADMIN,
                                   "password": ADMIN_PASSWORD}).encode()
    with opener.open(base + "/login", data=data, timeout=10) as response:
        assert "Dashboard" in response.read().decode()
    with opener.open(base + "/static/ui/webui.css", timeout=10) as response:
        assert b".sidenav" in response.read()


def test_a_silent_client_does_not_block_others(https_ui) -> None:  # noqa: ANN001
    base, tls = https_ui
    host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port
    silent = [socket.create_connection((host, port)) for _ in range(3)]
    half = socket.create_connection((host, port))
    half.send(b"\x16\x03\x01\x00\x05")  # the start of a ClientHello, then nothing
    try:
        started = time.monotonic()
        with _opener(tls).open(base + "/login", timeout=5) as response:
            assert response.status == 200
        assert time.monotonic() - started < 3
    finally:
        for sock in [*silent, half]:
            sock.close()


def test_plain_http_to_the_https_port_is_dropped(https_ui) -> None:  # noqa: ANN001
    base, tls = https_ui
    parts = urllib.parse.urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = sock.recv(100)
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"HTTP/")
    with _opener(tls).open(base + "/login", timeout=5) as response:  # still serving
        assert response.status == 200


def test_many_requests_in_parallel_over_tls(https_ui) -> None:  # noqa: ANN001
    base, tls = https_ui
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            for _ in range(5):
                with _opener(tls).open(base + "/static/ui/live.js", timeout=10) as response:
                    assert b"fetch(url" in response.read()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


def test_server_context_refuses_old_tls(tmp_path: Path) -> None:
    from appliance.web.tlsserver import server_context

    key_ca, ca = pki.make_ca("t")
    key, cert = pki.make_server_cert(key_ca, ca, names=["x.test"], addresses=[])
    pki.write_cert(tmp_path / "c.pem", cert)
    pki.write_key(tmp_path / "k.pem", key)
    ctx = server_context(tmp_path / "c.pem", tmp_path / "k.pem")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_TICKET


# --------------------------------------------------------------------------- command line


def _call(app: Any, **environ: str) -> tuple[str, dict[str, str]]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    app({"SERVER_NAME": "198.18.2.1", **environ}, start_response)
    return seen["status"], seen["headers"]


def test_http_redirect_app() -> None:
    from appliance.webui.__main__ import redirect_app

    status, headers = _call(redirect_app(8443), HTTP_HOST="198.18.2.1:80",
                            PATH_INFO="/users/")
    assert status.startswith("301") and headers["Location"] == "https://198.18.2.1:8443/users/"
    _, headers = _call(redirect_app(443), HTTP_HOST="[2001:db8::1]", PATH_INFO="/")
    assert headers["Location"] == "https://[2001:db8::1]/"
    _, headers = _call(redirect_app(8443), HTTP_HOST="evil.example/@x", PATH_INFO="/a b")
    assert headers["Location"] == "https://198.18.2.1:8443/a%20b"


def test_cli_refuses_to_start_without_the_admin_account(tmp_path: Path) -> None:
    from appliance.webui.__main__ import build_parser, make_server

    args = build_parser().parse_args(["--state", str(tmp_path), "--port", "0"])
    with pytest.raises(SystemExit, match="There is no default"):
        make_server(args)


def test_cli_serves_https_with_the_device_certificate(tmp_path: Path) -> None:
    from appliance.webui.__main__ import build_parser, make_server

    layout = make_state(tmp_path / "state")
    args = build_parser().parse_args(["--state", str(layout.root), "--host", "127.0.0.1",
                                      "--port", "0", "--https"])
    server = make_server(args)
    assert isinstance(server, HttpsWebServer)
    server.start_thread()
    try:
        tls = ssl.create_default_context(cafile=str(layout.ca_cert))
        tls.check_hostname = False
        with _opener(tls).open(f"https://127.0.0.1:{server.port}/login", timeout=10) as r:
            assert "Sign in" in r.read().decode()
    finally:
        server.stop()
