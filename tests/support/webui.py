"""The admin UI test set-up: a real state folder, a fake VPN, a signed-in client.

The state folder is made by the first-boot wizard's own apply step, so the UI is tested
against exactly what a device has after setup.  The VPN server is replaced by
:class:`FakeVpn`, which records the orders the UI gives over the "control socket".
The ``ui`` and ``admin`` fixtures are in tests/unit/conftest.py.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from appliance.firstboot.apply import apply_plan
from appliance.firstboot.certs import make_certificates
from appliance.firstboot.plan import (
    AdminAccount,
    CertificateSet,
    FirstUser,
    NetworkChoice,
    SetupPlan,
    SubnetChoice,
)
from appliance.state import StateLayout
from appliance.vpn.control import BanInfo, SessionInfo, StatusInfo, UserInfo
from appliance.vpn.passwd import hash_password
from appliance.web.vpnclient import Snapshot, VpnUnavailable
from appliance.webui import WebUIContext, create_app
from appliance.webui.system import SystemHealth

ADMIN, ADMIN_PASSWORD = "admin", "quiet Harbor lantern 73 maple"
ALICE, ALICE_PASSWORD = "alice", "seven Violet kites over 19 dunes"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

_CERTS: dict[str, CertificateSet] = {}


def certificates() -> CertificateSet:
    """One CA + server certificate per test session (EC, fast, but not free)."""
    if "set" not in _CERTS:
        _CERTS["set"] = make_certificates("ocgate", ["vpn.example.net"], ["198.18.2.10"])
    return _CERTS["set"]


def make_state(root: Path) -> StateLayout:
    layout = StateLayout.at(root)
    plan = SetupPlan(
        admin=AdminAccount(ADMIN, hash_password(ADMIN_PASSWORD)),
        network=NetworkChoice("vpn.example.net", ["vpn.example.net"], ["198.18.2.10"]),
        subnet=SubnetChoice(ipaddress.ip_network("10.73.0.0/24"), None, False,
                            [ipaddress.ip_network("192.168.1.0/24")], ["192.168.1.1"]),
        certs=certificates(),
        user=FirstUser(ALICE, "password", password_hash=hash_password(ALICE_PASSWORD)),
    )
    apply_plan(plan, layout)
    return layout


@dataclass
class FakeVpn:
    """Stands in for the control socket; ``online = False`` makes every call fail."""

    online: bool = True
    users_list: list[UserInfo] = field(default_factory=list)
    bans_list: list[BanInfo] = field(default_factory=list)
    status_info: StatusInfo = field(default_factory=lambda: StatusInfo(
        up_since=time.time() - 3600, rx=1000, tx=5000))
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def _check(self) -> None:
        if not self.online:
            raise VpnUnavailable("error connecting to ocserv socket: No such file")

    def status(self) -> StatusInfo:
        self._check()
        return self.status_info

    def users(self) -> list[UserInfo]:
        self._check()
        return list(self.users_list)

    def sessions(self) -> list[SessionInfo]:
        self._check()
        return []

    def bans(self) -> list[BanInfo]:
        self._check()
        return list(self.bans_list)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.status(), self.users())

    def disconnect_id(self, id: int) -> bool:
        self._check()
        self.calls.append(("disconnect id", id))
        before = len(self.users_list)
        self.users_list = [u for u in self.users_list if u.id != id]
        return len(self.users_list) < before

    def disconnect_user(self, name: str) -> int:
        self._check()
        self.calls.append(("disconnect user", name))
        before = len(self.users_list)
        self.users_list = [u for u in self.users_list if u.username != name]
        return before - len(self.users_list)

    def unban(self, ip: str) -> bool:
        self._check()
        self.calls.append(("unban", ip))
        return any(b.ip == ip for b in self.bans_list)

    def reload(self) -> str:
        self._check()
        self.calls.append(("reload", None))
        return "reloading the configuration"


def session_user(id: int = 4242, name: str = ALICE, dtls: bool = True) -> UserInfo:
    return UserInfo(id=id, username=name, remote_ip="198.51.100.7", ipv4="10.73.0.2",
                    rx=123456, tx=7654321, connected_at=time.time() - 125,
                    dtls_cipher="(DTLS1.2)-(PSK)-(AES-256-GCM)" if dtls else "",
                    tls_ciphersuite="(TLS1.3)-(AES-256-GCM)")


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_health() -> SystemHealth:
    return SystemHealth(12.5, 2, 0.4, 41.0, 400_000_000, 1_000_000_000, 48.5,
                        time.time() - 7200)


@dataclass
class UI:
    """A test setup: app, its context, the fake VPN, the state folder and a clock."""

    app: Flask
    ctx: WebUIContext
    vpn: FakeVpn
    layout: StateLayout
    clock: Clock

    def client(self) -> FlaskClient:
        return self.app.test_client()


def build_ui(root: Path, **kwargs: Any) -> UI:
    layout = make_state(root)
    vpn = FakeVpn()
    clock = Clock()
    ctx = WebUIContext(layout=layout, vpn=vpn, clock=clock, health=fake_health, **kwargs)
    app = create_app(ctx)
    app.config["TESTING"] = True
    return UI(app, ctx, vpn, layout, clock)


def token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client: FlaskClient, password: str = ADMIN_PASSWORD, *,
            username: str = ADMIN, environ: dict[str, str] | None = None) -> Any:
    csrf = token(client)
    return client.post("/login", data={"csrf_token": csrf, "username": username,
                                       "password": password},
                       environ_base=environ or {})


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None,
         form_page: str = "/", **kwargs: Any) -> Any:
    """POST with a valid CSRF token taken from ``form_page``."""
    return client.post(path, data={"csrf_token": token(client, form_page), **(data or {})},
                       **kwargs)
