"""Issue #6 end to end: a fresh device, a browser, the wizard, then a real VPN connection.

Topology (all inside namespaces made here, documentation addresses only):

* server namespace = the device: the wizard (``python3 -m appliance.firstboot``) listens
  on port 80; a blackhole route 203.0.113.0/26 collides with the first automatic VPN
  subnet of the documentation policy, so the wizard must propose 203.0.113.64/26;
* client namespace = the user's laptop: Debian's chromium (driven by Playwright) walks
  through every step, including a wrong setup code, a weak password and a typed subnet
  that collides; afterwards ``openconnect`` connects with the user the wizard created
  to the VPN server started from the configuration the wizard wrote, and pings the
  device's inside address through the tunnel.

Screenshots of every step: tests/artifacts/firstboot/.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import pki
from appliance.state import StateLayout
from appliance.vpn.config import load_config
from tests.support import harness
from tests.support.netns import INSIDE_DNS, Netns, TestNet
from tests.support.wizard import VPN_PASSWORD, VPN_USER, WizardProcess, read_code, submit_step

ADMIN_PASSWORD = "quiet Harbor lantern 73 maple"
COLLIDING_ROUTE = "203.0.113.0/26"
EXPECTED_POOL = "203.0.113.64/26"



def _shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)



def test_wizard_from_fresh_state_to_vpn_connection(
    net: TestNet, workdir: Path, browser_in: Callable[[Netns], Any],
    artifacts: Callable[[str], Path],
) -> None:
    started = time.monotonic()
    shots = artifacts("firstboot")
    device = net.server_ns
    device.ip("route", "add", "blackhole", COLLIDING_ROUTE)
    device.etc_dir.mkdir(parents=True, exist_ok=True)  # the device's own resolver
    (device.etc_dir / "resolv.conf").write_text(f"nameserver {INSIDE_DNS}\n")
    layout = StateLayout.at(workdir / "state")
    wizard = WizardProcess(device, layout.root, workdir / "wizard.log")
    try:
        code = read_code(layout)
        deadline = time.monotonic() + 10
        while code not in wizard.output():  # printed on the console too
            assert time.monotonic() < deadline, wizard.output()
            time.sleep(0.1)
        pin = _walk_through_wizard(browser_in(net.client_ns), net, shots, code)
        wizard.proc.wait(15)  # "Finish" ends the wizard
        assert wizard.proc.returncode == 0, wizard.output()
    finally:
        wizard.stop()
    assert layout.is_setup_done() and not layout.setup_code.exists()
    cfg = load_config(str(layout.conf))
    assert str(cfg.ipv4_network) == EXPECTED_POOL
    assert pin == pki.pin_sha256(pki.load_cert(layout.server_cert))
    _connect_with_openconnect(net, workdir, layout, pin)
    assert time.monotonic() - started < 90



def _walk_through_wizard(context: Any, net: TestNet, shots: Path, code: str) -> str:
    page = context.new_page()
    problems: list[str] = []  # CSP violations and script errors show up here
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"http://{net.server_ip}/some/other/path")  # captive: lands on the wizard
    assert page.url.endswith("/setup/code")
    _shot(page, shots, "01-setup-code")

    page.fill("#code", "AAAA-BBBB-CCCC-DDDD")
    submit_step(page, "code-form")
    assert "not the setup code" in page.inner_text(".notice-error")
    _shot(page, shots, "02-setup-code-wrong")
    page.fill("#code", code.lower().replace("-", " "))
    submit_step(page, "code-form")
    assert page.url.endswith("/setup/admin")
    _shot(page, shots, "03-admin")

    page.fill("#username", "admin")
    page.fill("#password", "Password2024!")
    page.fill("#confirm", "Password2024!")
    submit_step(page, "admin-form")
    assert "most common passwords" in page.inner_text(".notice-error")
    _shot(page, shots, "04-admin-weak-password")
    page.fill("#password", ADMIN_PASSWORD)
    page.fill("#confirm", ADMIN_PASSWORD)
    submit_step(page, "admin-form")
    assert page.url.endswith("/setup/network")
    assert "offline" in page.inner_text("#internet-status")  # no default route in the ns
    assert net.server_ip in page.inner_text("#detected")
    _shot(page, shots, "05-network")

    assert page.input_value("#server") == net.server_ip
    page.fill("#names", "vpn.example.net")
    submit_step(page, "network-form")
    assert page.url.endswith("/setup/reach")
    submit_step(page, "reach-skip-form")
    assert page.url.endswith("/setup/subnet")
    assert EXPECTED_POOL in page.inner_text("#proposal")
    assert page.input_value("#pool") == EXPECTED_POOL
    assert page.input_value("#dns").strip() == INSIDE_DNS
    _shot(page, shots, "06-subnet-proposed")
    page.fill("#pool", "203.0.113.0/24")
    submit_step(page, "subnet-form")
    assert f"overlaps {COLLIDING_ROUTE}" in page.inner_text(".notice-error")
    _shot(page, shots, "07-subnet-conflict-refused")
    page.fill("#pool", EXPECTED_POOL)
    page.check("input[name=mode][value=full]")
    submit_step(page, "subnet-form")
    assert page.url.endswith("/setup/certificates")
    _shot(page, shots, "08-certificates")

    submit_step(page, "certs-form")
    assert page.url.endswith("/setup/user")
    _shot(page, shots, "09-first-user")
    page.fill("#username", VPN_USER)
    page.fill("#password", VPN_PASSWORD)
    page.fill("#confirm", VPN_PASSWORD)
    submit_step(page, "user-form")
    assert page.url.endswith("/setup/review")
    assert EXPECTED_POOL in page.inner_text("#review")
    _shot(page, shots, "10-review")

    submit_step(page, "apply-form")
    assert page.url.endswith("/setup/done")
    pin = page.inner_text("#pin").strip()
    command = page.inner_text("#command").strip()
    assert command == (f"openconnect --servercert={pin} --user={VPN_USER} "
                       f"https://{net.server_ip}/")
    _shot(page, shots, "11-done")
    page.emulate_media(color_scheme="dark")
    _shot(page, shots, "12-done-dark")
    page.emulate_media(color_scheme="light")

    submit_step(page, "finish-form")
    assert "Setup finished" in page.inner_text("h1")
    _shot(page, shots, "13-finished")
    page.close()
    assert [p for p in problems if "status of 4" not in p] == [], problems
    return pin


def _connect_with_openconnect(net: TestNet, workdir: Path, layout: StateLayout,
                              pin: str) -> None:
    cert = pki.load_cert(layout.server_cert)
    files = harness.ServerFiles(
        dir=workdir, conf=layout.conf, cert=layout.server_cert, key=layout.server_key,
        ca=layout.ca_cert, ca_key=layout.ca_key, passwd=layout.passwd, pin=pin,
        sha1=pki.sha1_fingerprint_hex(cert), device="vpns", users={VPN_USER: VPN_PASSWORD},
        socket_file=layout.socket_file, occtl_socket=layout.occtl_socket,
        pid_file=layout.pid_file)
    server = harness.Server(net, files)
    client = harness.Client(net, files, name="laptop")
    try:
        server.start()
        assert client.connect(VPN_USER, VPN_PASSWORD), client.log
        address = ipaddress.ip_address(client.address())
        assert address in ipaddress.ip_network(EXPECTED_POOL)
        result = harness.ping(net.client_ns, net.inside_ip)
        assert result.ok, (result, client.log, server.log)
    finally:
        client.close()
        server.stop()
