"""Issue 21 in a real browser: the whole wizard in Persian and in Chinese.

The language is chosen once with the switch on the first page and must hold on every later
page (cookie).  Each page's heading must be one of the language's own translations, read
from the catalog (not text copied here), so this fails while a catalog is empty and keeps
passing when a translator rewords.  In Persian the layout is mirrored: the step navigation
is measured to the right of the content, while the pin and the openconnect command keep a
computed left-to-right direction.  Screenshots light and dark: tests/artifacts/i18n/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po

from appliance.state import StateLayout
from appliance.web.i18n import DOMAIN, LANGUAGES, TRANSLATIONS
from tests.browser.test_firstboot_wizard import (
    ADMIN_PASSWORD,
    DNS,
    VPN_PASSWORD,
    VPN_USER,
    WizardProcess,
    _read_code,
    _submit,
)
from tests.e2e.netns import Netns, TestNet

TAGS = {language.code: language.tag for language in LANGUAGES}


TAG = re.compile(r"<[^>]+>")
PLACEHOLDER = re.compile(r"%\\\(\w+\\\)[sd]")


def translations(code: str) -> list[re.Pattern[str]]:
    """Every non-empty, non-fuzzy translation of ``code``'s catalog, as a pattern in which
    a placeholder such as ``%(product)s`` matches any text."""
    with (TRANSLATIONS / code / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as handle:
        catalog = read_po(handle, locale=code)
    found: set[str] = set()
    for message in catalog:
        if message.id and not message.fuzzy:
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            found.update(" ".join(s.split()) for s in strings if s)
    texts = sorted({TAG.sub("", text) for text in found})  # inner_text drops the markup
    return [re.compile(PLACEHOLDER.sub(".+?", re.escape(text))) for text in texts]


def _box(page: Any, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box, f"{selector} is not laid out"
    return box


def _direction(page: Any, selector: str) -> str:
    return str(page.eval_on_selector(selector, "e => getComputedStyle(e).direction"))


def check_page(page: Any, code: str, shots: Path, name: str,
                translated: list[re.Pattern[str]]) -> None:
    """Language kept, heading translated, layout mirrored in RTL; shots light and dark."""
    assert page.get_attribute("html", "lang") == TAGS[code], page.url
    rtl = code == "fa"
    assert page.get_attribute("html", "dir") == ("rtl" if rtl else "ltr")
    heading = " ".join(page.inner_text("main h1").split())
    assert any(p.fullmatch(heading) for p in translated), \
        f"{code} {page.url}: heading {heading!r} is not translated"
    for selector in ("nav.stepnav", "nav.sidenav"):
        if not page.locator(selector).count():
            continue
        nav, main = _box(page, selector), _box(page, "main.content")
        nav_centre, main_centre = nav["x"] + nav["width"] / 2, main["x"] + main["width"] / 2
        if rtl:
            assert nav_centre > main_centre, (page.url, nav, main)  # navigation on the right
        else:
            assert nav_centre < main_centre, (page.url, nav, main)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(shots / f"{code}-{name}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")


@pytest.mark.parametrize("code", ["fa", "zh_Hans"])
def test_the_whole_wizard_in_persian_and_chinese(
    code: str, net: TestNet, workdir: Path, browser_in: Callable[[Netns], Any],
    artifacts: Callable[[str], Path],
) -> None:
    translated = translations(code)
    shots = artifacts(f"i18n/wizard-{code}")
    device = net.server_ns
    device.etc_dir.mkdir(parents=True, exist_ok=True)
    (device.etc_dir / "resolv.conf").write_text(f"nameserver {DNS}\n")
    layout = StateLayout.at(workdir / "state")
    wizard = WizardProcess(device, layout.root, workdir / "wizard.log")
    try:
        code_text = _read_code(layout)
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
        _submit(page, "code-form")
        assert page.url.endswith("/setup/admin")
        check_page(page, code, shots, "02-admin", translated)
        page.fill("#username", "admin")
        page.fill("#password", ADMIN_PASSWORD)
        page.fill("#confirm", ADMIN_PASSWORD)
        _submit(page, "admin-form")
        assert page.url.endswith("/setup/network")
        check_page(page, code, shots, "03-network", translated)
        page.fill("#names", "vpn.example.test")
        _submit(page, "network-form")
        assert page.url.endswith("/setup/subnet")
        check_page(page, code, shots, "04-subnet", translated)
        _submit(page, "subnet-form")
        assert page.url.endswith("/setup/certificates")
        check_page(page, code, shots, "05-certificates", translated)
        _submit(page, "certs-form")
        assert page.url.endswith("/setup/user")
        check_page(page, code, shots, "06-user", translated)
        page.fill("#username", VPN_USER)
        page.fill("#password", VPN_PASSWORD)
        page.fill("#confirm", VPN_PASSWORD)
        _submit(page, "user-form")
        assert page.url.endswith("/setup/review")
        check_page(page, code, shots, "07-review", translated)
        _submit(page, "apply-form")
        assert page.url.endswith("/setup/done")
        check_page(page, code, shots, "08-done", translated)
        # technical text stays as typed, left to right, even inside a right-to-left page
        for selector in ("#pin", "#command"):
            assert _direction(page, selector) == "ltr", selector
        pin = page.inner_text("#pin").strip()
        assert page.inner_text("#command").strip() == (
            f"openconnect --servercert={pin} --user={VPN_USER} https://{net.server_ip}/")
        _submit(page, "finish-form")
        check_page(page, code, shots, "09-finished", translated)
        assert problems == []
        wizard.proc.wait(15)
    finally:
        wizard.stop()
    assert layout.is_setup_done()
