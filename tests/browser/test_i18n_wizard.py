"""Issue 21 in a real browser: the whole wizard in Persian and in Chinese.

The language is chosen once with the switch on the first page and must hold on every later
page (cookie).  Each page's heading must be one of the language's own translations, read
from the catalog (not text copied here), so this fails while a catalog is empty and keeps
passing when a translator rewords.  In Persian the layout is mirrored: the step navigation
is measured to the right of the content, while the pin and the openconnect command keep a
computed left-to-right direction.  Screenshots light and dark: tests/artifacts/i18n/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.state import StateLayout
from tests.support.device import ADMIN_PASSWORD
from tests.support.i18n import check_page, direction, translations
from tests.support.netns import INSIDE_DNS, Netns, TestNet
from tests.support.wizard import VPN_PASSWORD, VPN_USER, WizardProcess, read_code, submit_step


@pytest.mark.parametrize("code", ["fa", "zh_Hans"])
def test_the_whole_wizard_in_persian_and_chinese(
    code: str, net: TestNet, workdir: Path, browser_in: Callable[[Netns], Any],
    artifacts: Callable[[str], Path],
) -> None:
    translated = translations(code)
    shots = artifacts(f"i18n/wizard-{code}")
    device = net.server_ns
    device.etc_dir.mkdir(parents=True, exist_ok=True)
    (device.etc_dir / "resolv.conf").write_text(f"nameserver {INSIDE_DNS}\n")
    layout = StateLayout.at(workdir / "state")
    wizard = WizardProcess(device, layout.root, workdir / "wizard.log")
    try:
        code_text = read_code(layout)
        page = browser_in(net.client_ns).new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(f"http://{net.server_ip}/")
        assert page.url.endswith("/setup/code")
        page.click("#lang-switch summary")
        with page.expect_navigation():
            page.click(f"#lang-{code}")
        assert page.url.endswith("/setup/code")
        check_page(page, code, shots, "01-code", translated)

        page.fill("#code", code_text)
        submit_step(page, "code-form")
        assert page.url.endswith("/setup/admin")
        check_page(page, code, shots, "02-admin", translated)
        page.fill("#username", "admin")
        page.fill("#password", ADMIN_PASSWORD)
        page.fill("#confirm", ADMIN_PASSWORD)
        submit_step(page, "admin-form")
        assert page.url.endswith("/setup/network")
        check_page(page, code, shots, "03-network", translated)
        page.fill("#names", "vpn.example.test")
        submit_step(page, "network-form")
        assert page.url.endswith("/setup/reach")
        check_page(page, code, shots, "04a-reach", translated)
        submit_step(page, "reach-skip-form")
        assert page.url.endswith("/setup/subnet")
        check_page(page, code, shots, "04-subnet", translated)
        submit_step(page, "subnet-form")
        assert page.url.endswith("/setup/certificates")
        check_page(page, code, shots, "05-certificates", translated)
        submit_step(page, "certs-form")
        assert page.url.endswith("/setup/user")
        check_page(page, code, shots, "06-user", translated)
        page.fill("#username", VPN_USER)
        page.fill("#password", VPN_PASSWORD)
        page.fill("#confirm", VPN_PASSWORD)
        submit_step(page, "user-form")
        assert page.url.endswith("/setup/review")
        check_page(page, code, shots, "07-review", translated)
        submit_step(page, "apply-form")
        assert page.url.endswith("/setup/done")
        check_page(page, code, shots, "08-done", translated)
        # technical text stays as typed, left to right, even inside a right-to-left page
        for selector in ("#pin", "#command"):
            assert direction(page, selector) == "ltr", selector
        pin = page.inner_text("#pin").strip()
        assert page.inner_text("#command").strip() == (
            f"openconnect --servercert={pin} --user={VPN_USER} https://{net.server_ip}/")
        submit_step(page, "finish-form")
        check_page(page, code, shots, "09-finished", translated)
        assert problems == []
        wizard.proc.wait(15)
    finally:
        wizard.stop()
    assert layout.is_setup_done()
