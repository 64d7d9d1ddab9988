"""The device of the browser tests: the state the first-boot wizard leaves, the admin UI
process in the server namespace, the files the VPN harness needs to drive that device's
server, and full-page screenshots."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

from appliance import pki
from appliance.firstboot.apply import apply_plan
from appliance.firstboot.certs import make_certificates
from appliance.firstboot.plan import (
    AdminAccount,
    FirstUser,
    NetworkChoice,
    SetupPlan,
    SubnetChoice,
)
from appliance.state import StateLayout
from appliance.vpn.config import ConfigDocument, write_config_atomic
from appliance.vpn.passwd import hash_password
from tests.support import harness
from tests.support.netns import Netns, TestNet
from tests.support.nsprocess import NsProcess

ADMIN_PASSWORD = "quiet Harbor lantern 73 maple"
ALICE, ALICE_PASSWORD = "alice", "seven Violet kites over 19 dunes"
BOB, BOB_PASSWORD = "bob", "amber Falcon river 58 tundra"
UI_PORT = 8443


def make_device_state(net: TestNet, root: Path) -> StateLayout:
    """What the wizard leaves behind, for this test network (LAN-only routes)."""
    layout = StateLayout.at(root)
    certs = make_certificates("ocgate", [], [net.server_ip])
    plan = SetupPlan(
        admin=AdminAccount("admin", hash_password(ADMIN_PASSWORD)),
        network=NetworkChoice(net.server_ip, [], [net.server_ip]),
        subnet=SubnetChoice(ipaddress.ip_network(net.pool), None, False,
                            [ipaddress.ip_network(net.route)], [net.dns]),
        certs=certs,
        user=FirstUser(ALICE, "password", password_hash=hash_password(ALICE_PASSWORD)),
    )
    apply_plan(plan, layout)
    doc = ConfigDocument.load(str(layout.conf))
    for key, value in (("max-ban-score", "0"), ("device", f"ocgt{net.block}"),
                       ("rate-limit-ms", "0")):
        doc.set(key, value)
    write_config_atomic(str(layout.conf), doc.text())
    return layout


class WebUIProcess(NsProcess):
    """``python3 -m appliance.webui --https`` in the server namespace."""

    def __init__(self, ns: Netns, layout: StateLayout, host: str, log: Path,
                 server_log: Path) -> None:
        super().__init__(ns, [sys.executable, "-u", "-m", "appliance.webui", "--state",
                              str(layout.root), "--host", host, "--port", str(UI_PORT),
                              "--https", "--log-file", str(server_log)], log)

    def wait_listening(self, timeout: float = 20.0) -> None:
        self.wait_port(UI_PORT, "admin UI", timeout)


class Shots:
    """Full-page screenshots, each page in the light and the dark colour scheme.

    (Waiting happens in Python: Playwright's string predicates need 'unsafe-eval', which
    the UI's Content Security Policy rightly forbids.)
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def __call__(self, page: Any, name: str) -> None:
        self.count += 1
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}-{scheme}.png"),
                            full_page=True)
        page.emulate_media(color_scheme="light")


def device_server_files(net: TestNet, workdir: Path, layout: StateLayout,
                        pin_from: StateLayout, users: dict[str, str]) -> harness.ServerFiles:
    """The harness's view of the device's VPN server (``pin_from``: whose key it presents)."""
    cert = pki.load_cert(pin_from.server_cert)
    return harness.ServerFiles(
        dir=workdir, conf=layout.conf, cert=layout.server_cert, key=layout.server_key,
        ca=layout.ca_cert, ca_key=layout.ca_key, passwd=layout.passwd,
        pin=pki.pin_sha256(cert), sha1=pki.sha1_fingerprint_hex(cert),
        device=f"ocgt{net.block}", users=users, socket_file=layout.socket_file,
        occtl_socket=layout.occtl_socket, pid_file=layout.pid_file)
