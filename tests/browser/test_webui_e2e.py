"""Issue #7 end to end: the admin UI in a browser, driving a real VPN server and clients.

Topology (namespaces made here, documentation addresses only):

* server namespace = the device: the VPN server (``python3 -m appliance.vpn`` through the
  e2e harness) and the admin UI (``python3 -m appliance.webui --https``), both reading the
  state folder the first-boot wizard's apply step wrote;
* client namespace 1 = the admin's laptop: Debian's chromium (Playwright) trusts exactly
  the device key (``--ignore-certificate-errors-spki-list`` with the pin), and a real
  ``openconnect`` connects there as the user the admin adds in the UI;
* client namespace 2: a second ``openconnect``, to prove a route change applies to new
  sessions while the first one stays up.

Screenshots of every page, light and dark: tests/artifacts/webui/.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import harness
from tests.support.device import (
    ADMIN_PASSWORD,
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    UI_PORT,
    Shots,
    WebUIProcess,
    device_server_files,
    make_device_state,
)
from tests.support.netns import Netns, TestNet
from tests.support.waiting import wait_until

NEW_ROUTE = "198.18.2.0/24"


def _submit(page: Any, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def test_admin_ui_end_to_end(
    net: TestNet, workdir: Path, browser_in: Callable[[Netns], Any],
    artifacts: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = time.monotonic()
    shots = Shots(artifacts("webui"))
    layout = make_device_state(net, workdir / "state")
    files = device_server_files(net, workdir, layout, layout, {ALICE: ALICE_PASSWORD})
    pin = files.pin
    server = harness.Server(net, files)
    webui = WebUIProcess(net.server_ns, layout, net.server_ip, workdir / "webui.log",
                         server.log_path)
    laptop = harness.Client(net, files, name="laptop")
    second_link = net.add_client()
    second = harness.Client(net, files, link=second_link, name="second")
    try:
        server.start()
        webui.wait_listening()
        # Chromium trusts exactly the device key, like openconnect's --servercert.
        launch_globals = browser_in.__globals__  # type: ignore[attr-defined]
        monkeypatch.setitem(launch_globals, "CHROMIUM_ARGS", [
            *launch_globals["CHROMIUM_ARGS"],
            "--ignore-certificate-errors-spki-list=" + pin.removeprefix("pin-sha256:")])
        context = browser_in(net.client_ns)
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        base = f"https://{net.server_ip}:{UI_PORT}"
        _run_scenario(page, base, shots, net, server, laptop, second, second_link)
        # 4xx answers are the scenario's own (wrong password); ERR_NETWORK_CHANGED is Chromium
        # noticing the VPN clients that share its namespace bring their TUNs up or down: a
        # poll in flight is dropped and the next one succeeds.
        assert [p for p in problems if "status of 4" not in p
                and "ERR_NETWORK_CHANGED" not in p] == [], problems
        assert "Traceback" not in webui.output(), webui.output()
    finally:
        for client in (laptop, second):
            client.close()
        webui.stop()
        server.stop()
    elapsed = time.monotonic() - started
    print(f"\n[webui e2e] {elapsed:.1f} s, {shots.count} pages x 2 colour schemes")
    assert elapsed < 90


def _run_scenario(page: Any, base: str, shots: Shots, net: TestNet, server: harness.Server,
                  laptop: harness.Client, second: harness.Client, second_link: Any) -> None:
    # ---- sign in: the wrong password first, then the right one
    page.goto(base + "/sessions/")
    assert "/login?next=/sessions/" in page.url
    shots(page, "login")
    page.fill("#username", "admin")
    page.fill("#password", "not the password")
    _submit(page, "#login-form button[type=submit]")
    assert "Wrong user name or password" in page.inner_text("#login-error")
    shots(page, "login-wrong-password")
    page.fill("#password", ADMIN_PASSWORD)
    _submit(page, "#login-form button[type=submit]")
    assert page.url.endswith("/sessions/")

    # ---- add a user
    page.goto(base + "/users/")
    page.fill("#username", BOB)
    page.fill("#password", BOB_PASSWORD)
    page.fill("#confirm", BOB_PASSWORD)
    _submit(page, "#add-user-form button[type=submit]")
    assert page.url.endswith(f"/users/{BOB}")
    assert "was added" in page.inner_text(".notice-success")
    shots(page, "user-detail")
    page.goto(base + "/users/")
    assert BOB in page.inner_text("#users-table")
    shots(page, "users")

    # ---- a real openconnect connects with it (DTLS), traffic flows
    assert laptop.connect(BOB, BOB_PASSWORD, no_dtls=False), laptop.log
    assert laptop.wait_dtls(), laptop.log
    traffic = threading.Thread(target=lambda: (
        harness.transfer(net, 3_000_000, "down"), harness.transfer(net, 1_000_000, "up")))
    traffic.start()
    page.goto(base + "/")
    wait_until(lambda: page.inner_text("#session-count").strip() == "1", 10, "the session count")

    # ---- the session appears with live bytes (the page updates itself)
    page.goto(base + "/sessions/")
    row = f"#sessions-table tr[data-user={BOB}]"
    page.wait_for_selector(row)
    assert "DTLS" in page.inner_text(row)
    assert str(ipaddress.ip_address(laptop.address())) in page.inner_text(row)
    traffic.join(30)
    cell = f"{row} td[data-field=tx_h]"
    wait_until(lambda: "MB" in page.inner_text(cell), 25, "live byte counters")
    shots(page, "sessions-live-bytes")
    page.goto(base + "/")
    wait_until(lambda: len((page.get_attribute("#series-tx", "points") or "").split()) > 1,
              15, "the throughput graph")
    shots(page, "dashboard")

    # ---- change a route in settings, review the diff, apply (= write + reload)
    page.goto(base + "/settings/")
    shots(page, "settings")
    page.click("#group-dns-routes")
    assert page.input_value("#opt-route").strip() == net.route
    page.fill("#opt-route", f"{net.route}\n{NEW_ROUTE}")
    _submit(page, "#settings-form button[type=submit]")
    assert page.url.endswith("/settings/review")
    assert f"+route = {NEW_ROUTE}" in page.inner_text("#diff")
    shots(page, "settings-diff")
    _submit(page, "#apply-form button[type=submit]")
    assert "connected users stay connected" in page.inner_text(".notice-success")
    shots(page, "settings-dns-routes")
    wait_until(lambda: "configuration reloaded" in server.log, 10, "the server's reload")

    # ---- a new session gets the new route; the existing one stays up
    assert second.connect(ALICE, ALICE_PASSWORD), second.log
    assert f"{NEW_ROUTE}" in second.split_includes(), second.split_includes()
    assert NEW_ROUTE not in laptop.split_includes()
    assert laptop.running and harness.ping(net.client_ns, net.inside_ip).ok
    assert harness.ping(second_link.ns, net.inside_ip).ok

    # ---- disconnect the first session from the UI: its openconnect exits
    page.goto(base + "/sessions/")
    page.wait_for_selector(f"#sessions-table tr[data-user={ALICE}]")
    with page.expect_navigation():
        page.click(f"{row} button")
    assert "was disconnected" in page.inner_text(".notice-success")
    assert laptop.wait_exit(15) is not None, laptop.log
    assert second.running
    page.wait_for_selector(row, state="detached")
    shots(page, "sessions-after-disconnect")

    # ---- every other page, light and dark
    for path, name, marker in (
            (f"/users/{BOB}/onboarding", "onboarding", "#qr svg"),
            ("/settings/raw", "settings-advanced", "#text"),
            ("/backup/", "backup", "#restore-form"),
            ("/logs/", "logs", "#log"),
            ("/diagnostics/", "diagnostics", "#listeners")):
        page.goto(base + path)
        page.wait_for_selector(marker)
        shots(page, name)
    page.goto(base + f"/users/{BOB}/onboarding")
    assert page.inner_text("#pin").strip() == laptop.files.pin
    page.goto(base + "/logs/?q=reloaded")
    assert "configuration reloaded" in page.inner_text("#log")
    page.goto(base + "/diagnostics/")
    diagnostics = page.inner_text("main")
    assert "TCP port 443" in diagnostics and "listening" in diagnostics.lower()

    # ---- sign out: the session is gone
    _submit(page, "#logout-form button[type=submit]")
    page.goto(base + "/")
    assert "/login" in page.url
