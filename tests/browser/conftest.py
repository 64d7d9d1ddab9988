"""Browser tests: Debian's chromium driven by Playwright (never a downloaded browser).

Requirements, each a test failure naming what is missing (``make test`` installs them
all): root, the e2e tools (ip, openconnect, /dev/net/tun, ...), the ``playwright`` Python
package (pyproject's ``test`` extra; never ``playwright install``) and
``/usr/bin/chromium`` (apt package ``chromium``).

Chromium runs *inside a client network namespace* through a tiny wrapper script that
``exec``s ``ip netns exec <ns> /usr/bin/chromium``: it sees only the test's veth link, so
it can reach nothing but the device under test, and no page or background request of the
browser can ever leave the machine.  Screenshots go to ``tests/artifacts/firstboot/``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.prereqs import missing_e2e, require_e2e, require_module, require_path
from tests.support.netns import Netns, TestNet, delete_all_created, sweep_stale
from tests.support.workdir import workdir as support_workdir

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser_requirements() -> None:
    require_e2e()
    require_module("playwright.sync_api", "playwright")
    require_path(CHROMIUM, "chromium")


@pytest.fixture(scope="session", autouse=True)
def _namespace_hygiene() -> Iterator[None]:
    if not missing_e2e():
        sweep_stale()
    yield
    delete_all_created()


@pytest.fixture
def net(browser_e2e: None) -> Iterator[TestNet]:
    """Server namespace (the device) + client namespace (the user's computer)."""
    with TestNet() as test_net:
        yield test_net


@pytest.fixture
def browser_e2e() -> None:
    require_e2e()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """0755 (the server's workers run as nobody), named so e2e sweeps find leftovers."""
    with support_workdir("browser") as path:
        yield path


@pytest.fixture
def artifacts() -> Callable[[str], Path]:
    """Factory: a clean folder tests/artifacts/<name> (gitignored) for screenshots."""

    def folder(name: str) -> Path:
        path = ARTIFACTS / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    return folder


@pytest.fixture
def browser_in(browser_requirements: None, tmp_path: Path) -> Iterator[Callable[[Netns], Any]]:
    """Factory: a Playwright browser context whose chromium runs inside namespace ``ns``."""
    from playwright.sync_api import sync_playwright

    manager = sync_playwright()
    playwright = manager.start()
    contexts: list[Any] = []

    def launch(ns: Netns) -> Any:
        wrapper = tmp_path / f"chromium-{ns.name}.sh"
        wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {ns.name} {CHROMIUM} \"$@\"\n")
        wrapper.chmod(0o700)
        profile = tempfile.mkdtemp(prefix="ocg-chromium-", dir=tmp_path)
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(wrapper),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 900},
            timeout=60_000,
        )
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context

    yield launch
    for context in contexts:
        try:
            context.close()
        except Exception:  # the browser may already be gone with its namespace
            pass
    manager.__exit__(None, None, None)
