"""Checks the browser tests make of a page in another language: heading translated (as the
catalog says, not as a test copy says), ``lang``/``dir`` right, navigation mirrored in
right-to-left languages, screenshots light and dark."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

from appliance.web.i18n import DOMAIN, LANGUAGES, TRANSLATIONS

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


def direction(page: Any, selector: str) -> str:
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
