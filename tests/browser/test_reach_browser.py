"""The "Reach from the Internet" wizard step and the dashboard card, in chromium, on the
appliance behind a real home router (tests/e2e/reach_rig.py: miniupnpd, bind9).

The wizard runs in the LAN namespace as the device runs it; "Check the router now" maps the
VPN port through miniupnpd and removes it again; the owner picks RFC 2136 for the name.
After apply, the reachability service (``reach run --state``) publishes the name in bind9
and writes the status the admin UI's dashboard card shows.  Screenshots:
tests/artifacts/reach/.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.state import StateLayout
from tests.e2e import reach_rig
from tests.e2e.reach_rig import APPLIANCE, BIND_IP, NAME, ROUTER_WAN, TSIG_NAME, ZONE, Home
from tests.prereqs import needs
from tests.support.device import Shots
from tests.support.netns import Netns
from tests.support.nsprocess import NsProcess
from tests.support.wizard import VPN_PASSWORD, VPN_USER, read_code, submit_step

pytestmark = [needs(reach_rig.require_tools)]

ADMIN_PASSWORD = "quiet Harbor lantern 73 maple"
UI_PORT = 8080


def _wizard(home: Home, state: Path, log: Path) -> NsProcess:
    proc = NsProcess(home.lan, [sys.executable, "-u", "-m", "appliance.firstboot", "--state",
                                str(state), "--port", "80", "--no-mdns", "--subnet-policy",
                                "documentation", "--handover", "none", "--linger", "60",
                                "--reach-probe", BIND_IP], log)
    proc.wait_port(80, "wizard")
    return proc


def _walk_wizard(page: Any, shots: Shots, code: str, home: Home) -> None:
    base = f"http://{APPLIANCE}"
    page.goto(base + "/setup/")
    page.fill("#code", code)
    submit_step(page, "code-form")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.fill("#confirm", ADMIN_PASSWORD)
    submit_step(page, "admin-form")
    assert page.url.endswith("/setup/network")
    submit_step(page, "network-form")
    assert page.url.endswith("/setup/reach")
    shots(page, "wizard-reach")
    submit_step(page, "reach-check-form")  # miniupnpd maps, the check removes it again
    assert page.url.endswith("/setup/reach")
    assert "Reachable from the Internet" in page.inner_text("#reach-headline")
    assert page.inner_text("#reach-address").strip() == ROUTER_WAN
    assert "TCP 443" in page.inner_text("#reach-why")
    assert APPLIANCE not in home.router_rules(), "the wizard's check left a mapping behind"
    shots(page, "wizard-reach-checked")
    page.select_option("#ddns", "rfc2136")
    page.fill("#name", NAME)
    page.fill("#dns_server", BIND_IP)
    page.fill("#dns_zone", ZONE)
    page.fill("#tsig_name", TSIG_NAME)
    page.fill("#tsig_secret", "not base64!")
    submit_step(page, "reach-form")
    assert "base64" in page.inner_text(".notice-error")
    shots(page, "wizard-reach-error")
    page.fill("#tsig_secret", home.tsig_secret)
    submit_step(page, "reach-form")
    assert page.url.endswith("/setup/subnet"), page.url
    submit_step(page, "subnet-form")
    submit_step(page, "certs-form")
    page.fill("#username", VPN_USER)
    page.fill("#password", VPN_PASSWORD)
    page.fill("#confirm", VPN_PASSWORD)
    submit_step(page, "user-form")
    submit_step(page, "apply-form")
    assert page.url.endswith("/setup/done")
    submit_step(page, "finish-form")


def test_wizard_step_and_dashboard_card(workdir: Path, browser_in: Callable[[Netns], Any],
                                        artifacts: Callable[[str], Path]) -> None:
    shots = Shots(artifacts("reach"))
    (workdir / "rig").mkdir()
    with Home(workdir / "rig") as home:
        layout = StateLayout.at(workdir / "state")
        wizard = _wizard(home, layout.root, workdir / "wizard.log")
        try:
            page = browser_in(home.lan).new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            _walk_wizard(page, shots, read_code(layout), home)
            wizard.proc.wait(15)
        finally:
            wizard.stop()
        chosen = json.loads(layout.reach_settings.read_text())
        assert (chosen["enabled"], chosen["ddns"], chosen["name"]) == (True, "rfc2136", NAME)
        assert json.loads(layout.reach_secrets.read_text()) == {"tsig_secret": home.tsig_secret}
        assert layout.reach_secrets.stat().st_mode & 0o777 == 0o600

        # the service takes the owner's choices from the state folder
        home.reach("run", "--once", "--keep", "--state", str(layout.root), "--lan-address",
                   APPLIANCE, "--probe-target", BIND_IP)
        assert home.dig(NAME) == ROUTER_WAN
        assert json.loads(layout.reach_status.read_text())["status"]["kind"] == "reachable"

        ui = NsProcess(home.lan, [sys.executable, "-u", "-m", "appliance.webui", "--state",
                                  str(layout.root), "--host", APPLIANCE, "--port",
                                  str(UI_PORT)], workdir / "webui.log")
        try:
            ui.wait_port(UI_PORT, "admin UI")
            base = f"http://{APPLIANCE}:{UI_PORT}"
            page.goto(base + "/")
            page.fill("#username", "admin")
            page.fill("#password", ADMIN_PASSWORD)
            with page.expect_navigation():
                page.click("#login-form button[type=submit]")
            assert "Reachable from the Internet" in page.inner_text("#reach-headline")
            assert page.inner_text("#reach-address").strip() == ROUTER_WAN
            assert page.inner_text("#reach-dns").strip() == f"{NAME} → {ROUTER_WAN}"
            lease = page.inner_text("#reach-lease")
            assert re.search(r"TCP 443 for .*UDP 443 for ", lease), lease
            assert "own CA" in page.inner_text("#reach-cert")
            assert page.inner_text("#reach-checked").strip() not in ("", "never")
            shots(page, "dashboard-card")
            page.goto(base + "/settings/reach/")
            assert page.input_value("#name") == NAME
            assert page.input_value("#tsig_secret") == "", "a saved secret must not be shown"
            shots(page, "settings-reach")
            page.goto(base + f"/users/{VPN_USER}/onboarding")
            assert page.inner_text("#server-url").strip() == f"https://{NAME}/"
            shots(page, "onboarding-public-name")
        finally:
            ui.stop()
        # the one refused form (status 400) is all the console may have seen: no script
        # error, no CSP violation
        assert problems == ["Failed to load resource: the server responded with a status of "
                            "400 (BAD REQUEST)"], problems
