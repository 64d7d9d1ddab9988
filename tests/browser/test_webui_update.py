"""The update page in Debian's chromium: upload with a progress bar, RAUC's verdict on the
page, install with progress, the reboot request.  RAUC is real (Debian's ``rauc``
service on a private bus, file-backed slots: tests/support/rauc.py); the admin UI runs in
the device namespace, the browser in the client namespace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.update.bootenv import BootEnv
from appliance.webui.updates import CHUNK_BYTES
from tests.support.device import (
    ADMIN_PASSWORD,
    UI_PORT,
    WebUIProcess,
    device_server_files,
    make_device_state,
)
from tests.support.netns import Netns, TestNet
from tests.support.rauc import RaucDevice, make_bundle, mk, require_rauc, small_rootfs


def _submit(page: Any, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def _wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_update_page_in_the_browser(
    net: TestNet, workdir: Path, browser_in: Callable[[Netns], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_rauc()
    keys = mk.ensure_signing_keys(workdir / "keys")
    other = mk.ensure_signing_keys(workdir / "other", name="Somebody else")
    rootfs = small_rootfs(workdir, blob=2_500_000)  # several upload pieces
    ours = make_bundle(workdir, rootfs, keys, fmt="plain", name="ours.raucb")
    theirs = make_bundle(workdir, rootfs, other, fmt="verity", name="theirs.raucb")
    layout = make_device_state(net, workdir / "state")
    files = device_server_files(net, workdir, layout, layout, {})
    rebooted = workdir / "rebooted"
    with RaucDevice(workdir / "dev", keys.ca_cert) as device:
        for name, value in device.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("OCGATE_RAUC_CONF", str(device.conf))
        monkeypatch.setenv("OCGATE_KERNEL_CMDLINE", str(device.cmdline))
        monkeypatch.setenv("OCGATE_REBOOT_COMMAND", f"touch {rebooted}")
        webui = WebUIProcess(net.server_ns, layout, net.server_ip, workdir / "webui.log",
                             workdir / "server.log")
        try:
            webui.wait_listening()
            launch_globals = browser_in.__globals__  # type: ignore[attr-defined]
            monkeypatch.setitem(launch_globals, "CHROMIUM_ARGS", [
                *launch_globals["CHROMIUM_ARGS"],
                "--ignore-certificate-errors-spki-list="
                + files.pin.removeprefix("pin-sha256:")])
            page = browser_in(net.client_ns).new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            base = f"https://{net.server_ip}:{UI_PORT}"
            page.goto(base + "/update/")
            page.fill("#username", "admin")
            page.fill("#password", ADMIN_PASSWORD)
            _submit(page, "#login-form button[type=submit]")
            assert page.url.endswith("/update/")
            assert page.inner_text("#slot") == "A"

            # another CA's bundle: the script shows RAUC's refusal, nothing is offered
            page.set_input_files("#bundle", str(theirs))
            page.click("#upload-form button[type=submit]")
            _wait("the refusal", lambda: page.is_visible("#upload-error"))
            assert "signature" in page.inner_text("#upload-error")
            assert page.query_selector("#ready") is None

            # ours: uploaded with the progress bar, checked, version and signer shown
            page.set_input_files("#bundle", str(ours))
            with page.expect_navigation():
                page.click("#upload-form button[type=submit]")
            assert page.inner_text("#bundle-version") == "2.0"
            assert "OCGate updates signer" in page.inner_text("#bundle-signer")
            assert ours.stat().st_size > 3 * CHUNK_BYTES

            _submit(page, "#install-form button[type=submit]")
            _wait("the installation", lambda: page.get_attribute(
                "#install-progress", "value") == "100", 90)
            _wait("the reboot request", rebooted.exists, 30)
            done = page.get_attribute("#install", "data-done")
            _wait("the done message", lambda: page.inner_text("#install-message") == done)
            assert BootEnv.parse(device.bootenv.read_text()).primary() == "B"
            assert device.slot_b.read_bytes()[:rootfs.stat().st_size] == rootfs.read_bytes()
            assert problems == [], problems
            assert "Traceback" not in webui.output(), webui.output()
        finally:
            webui.stop()
