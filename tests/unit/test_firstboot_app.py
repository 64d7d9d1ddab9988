"""The wizard's pages through Flask's test client: the whole flow, captive rules, guards."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from flask import Flask
from flask.testing import FlaskClient

from appliance.firstboot.app import create_app
from appliance.firstboot.apply import CommandResult, Handover
from appliance.firstboot.context import WizardContext
from appliance.firstboot.network import InterfaceAddress, NetworkInfo, Route
from appliance.firstboot.setupcode import SetupCodeStore
from appliance.firstboot.subnets import DOCUMENTATION_POLICY
from appliance.state import StateLayout
from appliance.vpn.config import load_config
from appliance.vpn.passwd import load_passwd, verify_password

STRONG = "correct horse battery staple"
STRONG2 = "violet Ocean lantern 42 quietly"


def fake_info() -> NetworkInfo:
    """A LAN host 198.18.2.10/24 with a gateway, plus a route on the first candidate."""
    return NetworkInfo(
        addresses=[
            InterfaceAddress("lo", ipaddress.ip_interface("127.0.0.1/8"), "host", True),
            InterfaceAddress("eth0", ipaddress.ip_interface("198.18.2.10/24")),
        ],
        routes=[
            Route(None, ipaddress.ip_address("198.18.2.1"), "eth0"),
            Route(ipaddress.ip_network("198.18.2.0/24"), None, "eth0"),
            Route(ipaddress.ip_network("203.0.113.0/26"), None, None, "main", "blackhole"),
        ],
        resolvers=[ipaddress.ip_address("198.18.2.53")],
        hostname="testbox",
    )


class Wizard:
    def __init__(self, tmp_path: Path) -> None:
        self.layout = StateLayout.at(tmp_path / "state")
        self.layout.root.mkdir()
        self.code = SetupCodeStore(self.layout.setup_code).ensure()
        self.ran: list[list[str]] = []
        self.now = 1000.0
        self.applied: list[object] = []

        def runner(argv: list[str]) -> CommandResult:
            self.ran.append(list(argv))
            return CommandResult(list(argv), True)

        self.ctx = WizardContext(
            layout=self.layout, policy=DOCUMENTATION_POLICY, probe=fake_info,
            handover=Handover(runner), handover_commands=[["systemctl", "enable", "x"]],
            on_applied=self.applied.append, clock=lambda: self.now)
        self.app: Flask = create_app(self.ctx)
        self.client: FlaskClient = self.app.test_client()

    def token(self, path: str) -> str:
        page = self.client.get(path, base_url="http://198.18.2.10")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
        assert match, page.get_data(as_text=True)[:500]
        return match.group(1)

    def post(self, path: str, data: dict[str, str], token_from: str | None = None):  # noqa: ANN201
        data = {"csrf_token": self.token(token_from or path), **data}
        return self.client.post(path, data=data, base_url="http://198.18.2.10")

    def run_until_review(self, *, method: str = "password") -> None:
        assert self.post("/setup/code", {"code": self.code.lower()}).status_code == 303
        assert self.post("/setup/admin", {"username": "root-admin", "password": STRONG,
                                          "confirm": STRONG}).status_code == 303
        assert self.post("/setup/network", {"action": "save", "server": "vpn.example.net",
                                            "hostname": "testbox", "names": "alt.example.net"}
                         ).status_code == 303
        assert self.post("/setup/reach", {"action": "skip"}).status_code == 303
        page = self.client.get("/setup/subnet", base_url="http://198.18.2.10")
        assert "203.0.113.64/26" in page.get_data(as_text=True)  # 203.0.113.0/26 is taken
        assert self.post("/setup/subnet", {"pool": "203.0.113.64/26", "mode": "full",
                                           "routes": "", "dns": "198.18.2.53", "pool6": ""}
                         ).status_code == 303
        assert self.post("/setup/certificates", {"key_type": "ec"}).status_code == 303
        data = {"username": "alice", "method": method, "password": STRONG2,
                "confirm": STRONG2}
        assert self.post("/setup/user", data).status_code == 303


@pytest.fixture
def wiz(tmp_path: Path) -> Wizard:
    return Wizard(tmp_path)


def test_whole_flow_writes_a_working_state(wiz: Wizard) -> None:
    wiz.run_until_review()
    review = wiz.client.get("/setup/review", base_url="http://198.18.2.10")
    assert b"https://vpn.example.net/" in review.data
    response = wiz.post("/setup/apply", {}, token_from="/setup/review")
    assert response.status_code == 303 and response.location.endswith("/setup/done")
    layout = wiz.layout
    assert layout.is_setup_done()
    assert not layout.setup_code.exists()  # the code is invalidated
    cfg = load_config(str(layout.conf))
    assert str(cfg.ipv4_network) == "203.0.113.64/26"
    assert cfg.dns == ["198.18.2.53"] and cfg.tunnel_all_dns
    assert [str(r) for r in cfg.route] == ["0.0.0.0/0"]
    assert cfg.server_cert == str(layout.server_cert)
    users = load_passwd(layout.passwd)
    assert verify_password(users["alice"], STRONG2)
    admins = load_passwd(layout.admin_passwd)
    assert verify_password(admins["root-admin"], STRONG)
    for secret in (layout.passwd, layout.admin_passwd, layout.ca_key, layout.server_key,
                   layout.conf):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    assert wiz.ran == [["systemctl", "enable", "x"]] and len(wiz.applied) == 1
    done = wiz.client.get("/setup/done", base_url="http://198.18.2.10").get_data(as_text=True)
    pin = re.search(r'id="pin">(pin-sha256:[^<]+)<', done)
    assert pin and "openconnect --servercert=" + pin.group(1) in done
    assert "--user=alice https://vpn.example.net/" in done
    for system in ("Windows", "macOS", "Linux", "Android", "iOS"):
        assert system in done
    # every later request lands on the final page
    assert wiz.client.get("/setup/admin", base_url="http://198.18.2.10").location.endswith(
        "/setup/done")


def test_certificate_user_gets_a_pkcs12_only_in_its_own_browser(wiz: Wizard) -> None:
    wiz.run_until_review(method="certificate")
    wiz.post("/setup/apply", {}, token_from="/setup/review")
    done = wiz.client.get("/setup/done", base_url="http://198.18.2.10").get_data(as_text=True)
    password = re.search(r'id="p12-password">([^<]+)<', done)
    assert password
    blob = wiz.client.get("/setup/done/client.p12", base_url="http://198.18.2.10")
    assert blob.status_code == 200 and blob.mimetype == "application/x-pkcs12"
    key, cert, cas = pkcs12.load_key_and_certificates(blob.data, password.group(1).encode())
    assert key is not None and cert is not None
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "alice"
    cfg = load_config(str(wiz.layout.conf))
    assert [m.name for m in cfg.enable_auth] == ["certificate"]
    assert cfg.cert_user_oid == "0.9.2342.19200300.100.1.1"
    other = wiz.app.test_client()
    assert other.get("/setup/done/client.p12", base_url="http://198.18.2.10").status_code == 404
    assert b"only be downloaded from the browser" in other.get(
        "/setup/done", base_url="http://198.18.2.10").data


def test_wrong_codes_are_rate_limited_per_client(wiz: Wizard) -> None:
    for attempt in range(5):
        r = wiz.post("/setup/code", {"code": "0000-0000-0000-0000"})
        assert r.status_code == 403, attempt
    assert b"Wait 2 seconds" in r.data
    r = wiz.post("/setup/code", {"code": wiz.code})  # even the right code must wait now
    assert r.status_code == 429 and b"Too many wrong setup codes" in r.data
    wiz.now += 2.5
    r = wiz.post("/setup/code", {"code": "0000-0000-0000-0001"})
    assert r.status_code == 403 and b"Wait 4 seconds" in r.data
    wiz.now += 4.5
    assert wiz.post("/setup/code", {"code": wiz.code}).status_code == 303


def test_wrong_code_message_counts_down(wiz: Wizard) -> None:
    r = wiz.post("/setup/code", {"code": "nope"})
    assert b"4 more tries" in r.data


def test_weak_admin_password_is_refused_with_reasons(wiz: Wizard) -> None:
    wiz.post("/setup/code", {"code": wiz.code})
    r = wiz.post("/setup/admin", {"username": "admin", "password": "Password123!",
                                  "confirm": "Password123!"})
    assert r.status_code == 400 and b"most common passwords" in r.data
    r = wiz.post("/setup/admin", {"username": "admin", "password": STRONG,
                                  "confirm": STRONG + "x"})
    assert r.status_code == 400 and b"differ" in r.data


def test_steps_cannot_be_skipped(wiz: Wizard) -> None:
    r = wiz.client.get("/setup/review", base_url="http://198.18.2.10")
    assert r.status_code == 303 and r.location.endswith("/setup/code")
    wiz.post("/setup/code", {"code": wiz.code})
    r = wiz.client.get("/setup/certificates", base_url="http://198.18.2.10")
    assert r.location.endswith("/setup/admin")


def test_post_without_csrf_token_is_refused(wiz: Wizard) -> None:
    wiz.client.get("/setup/code", base_url="http://198.18.2.10")
    r = wiz.client.post("/setup/code", data={"code": wiz.code}, base_url="http://198.18.2.10")
    assert r.status_code == 400 and b"did not come from this device" in r.data
    r = wiz.client.post("/setup/code", data={"code": wiz.code, "csrf_token": "forged"},
                        base_url="http://198.18.2.10")
    assert r.status_code == 400
    assert wiz.ctx.drafts.__len__() == 0


def test_cross_origin_post_is_refused_even_with_token(wiz: Wizard) -> None:
    token = wiz.token("/setup/code")
    r = wiz.client.post("/setup/code", data={"code": wiz.code, "csrf_token": token},
                        base_url="http://198.18.2.10",
                        headers={"Origin": "http://evil.example"})
    assert r.status_code == 400


@pytest.mark.parametrize("path", ["/", "/generate_204", "/hotspot-detect.html", "/admin",
                                  "/setupx", "/index.html?x=1"])
def test_captive_redirects_every_other_path(wiz: Wizard, path: str) -> None:
    r = wiz.client.get(path, base_url="http://198.18.2.10")
    assert r.status_code == 302 and r.location in ("/setup/", "http://198.18.2.10/setup/")


@pytest.mark.parametrize("host", ["connectivitycheck.gstatic.com", "evil.example",
                                  "captive.apple.com:80", "10.0.0.1"])
def test_captive_redirects_foreign_host_names_to_the_device(wiz: Wizard, host: str) -> None:
    r = wiz.client.get("/setup/code", base_url=f"http://{host}")
    assert r.status_code == 302
    assert r.location == "http://198.18.2.10/setup/"


@pytest.mark.parametrize("host", ["198.18.2.10", "ocgate.local", "testbox.local",
                                  "localhost:8080"])
def test_own_host_names_are_served(wiz: Wizard, host: str) -> None:
    assert wiz.client.get("/setup/code", base_url=f"http://{host}").status_code == 200


def test_security_headers_on_wizard_pages(wiz: Wizard) -> None:
    r = wiz.client.get("/setup/code", base_url="http://198.18.2.10")
    csp = r.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_subnet_conflict_typed_by_the_user_is_refused(wiz: Wizard) -> None:
    wiz.post("/setup/code", {"code": wiz.code})
    wiz.post("/setup/admin", {"username": "a", "password": STRONG, "confirm": STRONG})
    wiz.post("/setup/network", {"action": "save", "server": "198.18.2.10", "hostname": "x",
                                "names": ""})
    wiz.post("/setup/reach", {"action": "skip"})
    r = wiz.post("/setup/subnet", {"pool": "203.0.113.0/24", "mode": "full", "dns": ""})
    assert r.status_code == 400 and b"overlaps 203.0.113.0/26" in r.data
    r = wiz.post("/setup/subnet", {"pool": "10.73.0.0/24", "mode": "full", "dns": ""})
    assert r.status_code == 400 and b"documentation range" in r.data
    r = wiz.post("/setup/subnet", {"pool": "203.0.113.128/26", "mode": "lan",
                                   "routes": "198.18.2.0/24", "dns": "",
                                   "ipv6": "on", "pool6": "2001:db8:1::/64"})
    assert r.status_code == 303
    sub = wiz.ctx.drafts.get(next(iter(wiz.ctx.drafts._drafts))).subnet  # noqa: SLF001
    assert sub is not None and not sub.full_tunnel and str(sub.ipv6) == "2001:db8:1::/64"


def test_changing_names_drops_the_certificates(wiz: Wizard) -> None:
    wiz.run_until_review()
    draft = next(iter(wiz.ctx.drafts._drafts.values()))  # noqa: SLF001
    assert draft.certs is not None
    wiz.post("/setup/network", {"action": "save", "server": "other.example.net",
                                "hostname": "testbox", "names": ""})
    assert draft.certs is None
    r = wiz.client.get("/setup/review", base_url="http://198.18.2.10")
    assert r.location.endswith("/setup/subnet") or r.location.endswith("/setup/certificates")


def test_finish_sets_the_event_once(wiz: Wizard) -> None:
    wiz.run_until_review()
    wiz.post("/setup/apply", {}, token_from="/setup/review")
    calls: list[int] = []
    wiz.ctx.on_finish = lambda: calls.append(1)
    r = wiz.post("/setup/finish", {}, token_from="/setup/done")
    assert r.status_code == 200 and wiz.ctx.finished.is_set() and calls == [1]


# --------------------------------------------------------------------------- reach


def _to_reach(wiz: Wizard) -> None:
    wiz.post("/setup/code", {"code": wiz.code})
    wiz.post("/setup/admin", {"username": "a", "password": STRONG, "confirm": STRONG})
    r = wiz.post("/setup/network", {"action": "save", "server": "198.18.2.10", "hostname": "x",
                                    "names": ""})
    assert r.location.endswith("/setup/reach")


def test_reach_step_checks_the_router_and_keeps_the_answer(wiz: Wizard) -> None:
    asked: list[tuple[str, int]] = []

    def check(lan: str, port: int) -> dict[str, object]:
        asked.append((lan, port))
        return {"status": {"kind": "no-protocol", "rules": [
            {"protocol": "tcp", "external_port": port, "internal_port": port},
            {"protocol": "udp", "external_port": port, "internal_port": port}]},
            "external_address": "", "leases": [], "dns": None, "last_check": 1.0e9,
            "lan_address": lan}

    wiz.ctx.reach_check = check
    _to_reach(wiz)
    page = wiz.client.get("/setup/reach", base_url="http://198.18.2.10").get_data(as_text=True)
    assert 'id="reach-check-form"' in page and 'id="reach-card"' not in page
    assert wiz.post("/setup/reach", {"action": "check"}).status_code == 303
    assert asked == [("198.18.2.10", 443)]
    page = wiz.client.get("/setup/reach", base_url="http://198.18.2.10").get_data(as_text=True)
    assert "The router does not offer automatic port forwarding" in page
    assert ("On your router, forward TCP port 443 to 198.18.2.10 port 443 and UDP port 443 "
            "to 198.18.2.10 port 443.") in page
    # an incomplete choice is refused with the reasons, and nothing is kept
    r = wiz.post("/setup/reach", {"action": "save", "enabled": "on", "ddns": "duckdns",
                                  "name": "myvpn", "acme": "on", "acme_ca": "letsencrypt"})
    assert r.status_code == 400 and b"Enter the DuckDNS token." in r.data
    r = wiz.post("/setup/reach", {"action": "save", "enabled": "on", "ddns": "",
                                  "acme": "on", "acme_ca": "letsencrypt"})
    assert r.status_code == 400 and b"needs a public name" in r.data
    r = wiz.post("/setup/reach", {"action": "save", "enabled": "on", "ddns": "duckdns",
                                  "name": "myvpn", "token": "tok-1", "acme": "on",
                                  "acme_ca": "letsencrypt", "email": "me@example.org"})
    assert r.status_code == 303 and r.location.endswith("/setup/subnet")


def test_reach_choice_is_applied_with_its_secrets_0600(wiz: Wizard) -> None:
    wiz.run_until_review()
    r = wiz.post("/setup/reach", {"action": "save", "enabled": "on", "ddns": "dyndns2",
                                  "name": "vpn.example.net", "username": "owner",
                                  "password": "dyn-pass-9", "acme": ""})
    assert r.status_code == 303
    wiz.post("/setup/apply", {}, token_from="/setup/review")
    layout = wiz.layout
    chosen = json.loads(layout.reach_settings.read_text())
    assert chosen["enabled"] and chosen["ddns"] == "dyndns2"
    assert chosen["ddns_url"] == "https://dynupdate.no-ip.com"
    assert "dyn-pass-9" not in layout.reach_settings.read_text()
    assert json.loads(layout.reach_secrets.read_text()) == {"username": "owner",
                                                            "password": "dyn-pass-9"}
    assert layout.reach_secrets.stat().st_mode & 0o777 == 0o600


def test_skipping_reach_writes_it_off(wiz: Wizard) -> None:
    wiz.run_until_review()  # skips the step
    wiz.post("/setup/apply", {}, token_from="/setup/review")
    assert json.loads(wiz.layout.reach_settings.read_text())["enabled"] is False
    assert not wiz.layout.reach_secrets.exists()
