"""Issue 21 in a real browser: the admin UI's dashboard, users and onboarding pages in
Persian and Chinese, and a language choice that outlives the cookie.

The admin switches the language once on the dashboard; it must hold on every page, and,
signed in again from a browser with no cookie at all, the admin's stored choice must come
back right after sign-in.  Headings are compared to the catalog (tests/browser/
test_i18n_wizard.py); in Persian the side navigation is measured right of the content while
the pin and the openconnect command stay left to right.  Shots: tests/artifacts/i18n/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance import pki
from tests.support import harness
from tests.support.device import (
    ADMIN_PASSWORD,
    ALICE,
    ALICE_PASSWORD,
    WebUIProcess,
    make_device_state,
)
from tests.support.i18n import TAGS, check_page, translations
from tests.support.netns import Netns, TestNet

UI_PORT = 8443


def _submit(page: Any, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def _sign_in(page: Any, base: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    _submit(page, "#login-form button[type=submit]")


@pytest.mark.parametrize("code", ["fa", "zh_Hans"])
def test_admin_pages_in_persian_and_chinese_and_the_choice_survives_sign_in(
    code: str, net: TestNet, workdir: Path, browser_in: Callable[[Netns], Any],
    artifacts: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    translated = translations(code)
    shots = artifacts(f"i18n/webui-{code}")
    layout = make_device_state(net, workdir / "state")
    cert = pki.load_cert(layout.server_cert)
    pin = pki.pin_sha256(cert)
    files = harness.ServerFiles(
        dir=workdir, conf=layout.conf, cert=layout.server_cert, key=layout.server_key,
        ca=layout.ca_cert, ca_key=layout.ca_key, passwd=layout.passwd, pin=pin,
        sha1=pki.sha1_fingerprint_hex(cert), device=f"ocgt{net.block}",
        users={ALICE: ALICE_PASSWORD}, socket_file=layout.socket_file,
        occtl_socket=layout.occtl_socket, pid_file=layout.pid_file)
    server = harness.Server(net, files)
    webui = WebUIProcess(net.server_ns, layout, net.server_ip, workdir / "webui.log",
                         server.log_path)
    try:
        server.start()
        webui.wait_listening()
        launch_globals = browser_in.__globals__  # type: ignore[attr-defined]
        monkeypatch.setitem(launch_globals, "CHROMIUM_ARGS", [
            *launch_globals["CHROMIUM_ARGS"],
            "--ignore-certificate-errors-spki-list=" + pin.removeprefix("pin-sha256:")])
        base = f"https://{net.server_ip}:{UI_PORT}"
        page = browser_in(net.client_ns).new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        _sign_in(page, base)
        assert page.get_attribute("html", "lang") == "en"
        page.click("#lang-switch summary")
        with page.expect_navigation():
            page.click(f"#lang-{code}")
        check_page(page, code, shots, "01-dashboard", translated)
        page.goto(base + "/users/")
        check_page(page, code, shots, "02-users", translated)
        page.goto(base + f"/users/{ALICE}/onboarding")
        check_page(page, code, shots, "03-onboarding", translated)
        for selector in ("#pin", "#command"):
            direction = page.eval_on_selector(selector, "e => getComputedStyle(e).direction")
            assert direction == "ltr", selector
        assert pin in page.inner_text("#pin")
        assert "openconnect" in page.inner_text("#command")
        _submit(page, "#logout-form button[type=submit]")
        assert page.get_attribute("html", "lang") == TAGS[code]  # the cookie still holds

        # another browser, no cookie: English until sign-in, then the admin's own choice
        fresh = browser_in(net.client_ns).new_page()
        fresh.goto(base + "/login")
        assert fresh.get_attribute("html", "lang") == "en"
        _sign_in(fresh, base)
        check_page(fresh, code, shots, "04-dashboard-after-sign-in", translated)
        assert problems == []
        assert "Traceback" not in webui.output(), webui.output()
    finally:
        webui.stop()
        server.stop()
