"""Admin UI reachability: settings page, dashboard card, and the onboarding pages switching
to the public name (and dropping the pin once the certificate is publicly trusted)."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.reach import credentials
from appliance.reach import settings as reach_settings
from appliance.state import StateLayout
from tests.support.webui import ALICE, UI, post

PUBLIC = "vpn.home.test"


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def reachable_status(name: str = PUBLIC, port: int = 443) -> dict[str, Any]:
    rules = [{"protocol": p, "external_port": port, "internal_port": 443}
             for p in ("tcp", "udp")]
    return {"status": {"kind": "reachable", "headline": "Reachable from the Internet",
                       "explanation": "...", "external_address": "198.18.0.2", "via": "pcp",
                       "rules": rules, "manual_rule": "", "details": []},
            "external_address": "198.18.0.2", "via": "pcp",
            "leases": [{"protocol": r["protocol"], "internal_port": 443,
                        "external_port": port, "lifetime": 3600} for r in rules],
            "dns": {"name": name, "published": ["198.18.0.2", None]},
            "last_check": 1_765_000_000.0, "lan_address": "198.19.1.10"}


def write_reach(layout: StateLayout, status: dict[str, Any] | None, **chosen: Any) -> None:
    reach_settings.save(layout.reach_settings, reach_settings.ReachSettings(**chosen))
    if status is not None:
        layout.reach_status.write_text(json.dumps(status))


def public_certificate(layout: StateLayout, name: str = PUBLIC) -> None:
    """What ACME installs: a chain from a CA that is not the appliance's, for ``name``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pebble Intermediate CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
            .sign(ca_key, hashes.SHA256()))
    layout.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    layout.server_key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def test_settings_page_saves_choices_and_secrets_apart(ui: UI, admin: Any) -> None:
    page = text(admin.get("/settings/reach/"))
    assert 'id="reach-form"' in page and "Not reachable from the Internet" in page
    bad = post(admin, "/settings/reach/", {"enabled": "on", "ddns": "rfc2136", "name": PUBLIC,
                                           "dns_server": "198.18.100.53",
                                           "dns_zone": "home.test", "tsig_name": "k"},
               form_page="/settings/reach/")
    assert bad.status_code == 400 and "Enter the TSIG key&#39;s secret." in text(bad)
    assert not ui.layout.reach_settings.exists()
    ok = post(admin, "/settings/reach/", {"enabled": "on", "ddns": "rfc2136", "name": PUBLIC,
                                          "dns_server": "198.18.100.53",
                                          "dns_zone": "home.test", "tsig_name": "k",
                                          "tsig_secret": "c2VjcmV0LXRzaWcta2V5",
                                          "acme": "on", "acme_ca": "staging"},
              form_page="/settings/reach/")
    assert ok.status_code == 303, text(ok)
    saved = reach_settings.load(ui.layout.reach_settings)
    assert (saved.enabled, saved.ddns, saved.name, saved.acme) == (True, "rfc2136", PUBLIC,
                                                                   True)
    assert saved.acme_directory == reach_settings.LETS_ENCRYPT_STAGING
    assert "tsig" not in ui.layout.reach_settings.read_text().replace("tsig_name", "")
    assert credentials.load(ui.layout.reach_secrets) == {"tsig_secret": "c2VjcmV0LXRzaWcta2V5"}
    assert ui.layout.reach_secrets.stat().st_mode & 0o777 == 0o600
    # saved again without typing the secret: it stays, and the page never shows it
    again = post(admin, "/settings/reach/", {"enabled": "on", "ddns": "rfc2136", "name": PUBLIC,
                                             "dns_server": "198.18.100.53",
                                             "dns_zone": "home.test", "tsig_name": "k"},
                 form_page="/settings/reach/")
    assert again.status_code == 303
    assert credentials.load(ui.layout.reach_secrets)["tsig_secret"] == "c2VjcmV0LXRzaWcta2V5"
    assert "c2VjcmV0LXRzaWcta2V5" not in text(admin.get("/settings/reach/"))


def test_dashboard_card_says_reachable_and_lists_the_facts(ui: UI, admin: Any) -> None:
    write_reach(ui.layout, reachable_status(), enabled=True, ddns="rfc2136", name=PUBLIC)
    page = text(admin.get("/"))
    card = page.split('id="reach-card"', 1)[1].split("</section>", 1)[0]
    assert "Reachable from the Internet" in card
    assert "TCP 443, UDP 443 from 198.18.0.2 to this device (pcp)" in card
    lease = re.search(r'id="reach-lease"[^>]*>([^<]+)<', card)
    assert lease and "TCP 443 for 1 hr 0 min, UDP 443 for 1 hr 0 min (pcp)" == lease.group(1), card
    assert re.search(r'id="reach-address"[^>]*>198\.18\.0\.2<', card)
    assert re.search(rf'id="reach-dns"[^>]*>{PUBLIC} → 198\.18\.0\.2<', card)
    cert = re.search(r'id="reach-cert"[^>]*>([^<]+)<', card)
    assert cert and "own CA" in cert.group(1)
    assert re.search(r'id="reach-checked"[^>]*>[^<]*2025', card)


def test_dashboard_card_gives_the_manual_rule_when_the_router_does_not_map(
        ui: UI, admin: Any) -> None:
    status = {"status": {"kind": "no-protocol", "rules": [
        {"protocol": "tcp", "external_port": 443, "internal_port": 443},
        {"protocol": "udp", "external_port": 443, "internal_port": 443}]},
        "external_address": "", "leases": [], "dns": None, "last_check": 1.0e9,
        "lan_address": "198.19.1.10"}
    write_reach(ui.layout, status, enabled=True)
    page = text(admin.get("/"))
    assert "The router does not offer automatic port forwarding" in page
    rule = re.search(r'id="reach-rule"[^>]*>([^<]+)<', page)
    assert rule and rule.group(1) == ("On your router, forward TCP port 443 to 198.19.1.10 "
                                      "port 443 and UDP port 443 to 198.19.1.10 port 443.")


def test_dashboard_card_in_another_language(ui: UI, admin: Any) -> None:
    write_reach(ui.layout, reachable_status(), enabled=True, ddns="rfc2136", name=PUBLIC)
    admin.set_cookie("ocgate_lang", "de")
    page = text(admin.get("/", headers={"Accept-Language": "de"}))
    assert "Aus dem Internet erreichbar" in page, page[:300]


def test_onboarding_uses_the_public_name_and_keeps_the_pin_for_the_own_ca(
        ui: UI, admin: Any) -> None:
    write_reach(ui.layout, reachable_status(port=8443), enabled=True, ddns="rfc2136",
                name=PUBLIC)
    page = text(admin.get(f"/users/{ALICE}/onboarding"))
    assert f"https://{PUBLIC}:8443/" in page
    assert re.search(r'id="pin">pin-sha256:', page)
    assert "--servercert=pin-sha256:" in page
    profile = admin.get(f"/users/{ALICE}/profile.xml").data
    assert f"<HostAddress>{PUBLIC}:8443</HostAddress>".encode() in profile
    assert b"<StrictCertificateTrust>false</StrictCertificateTrust>" in profile


def test_onboarding_drops_the_pin_once_the_certificate_is_public(ui: UI, admin: Any) -> None:
    write_reach(ui.layout, reachable_status(), enabled=True, ddns="rfc2136", name=PUBLIC)
    public_certificate(ui.layout)
    page = text(admin.get(f"/users/{ALICE}/onboarding"))
    assert 'id="pin"' not in page and "--servercert" not in page
    assert f"openconnect --user={ALICE} https://{PUBLIC}/" in page
    assert 'id="trusted-note"' in page
    profile = admin.get(f"/users/{ALICE}/profile.xml").data
    assert f"<HostAddress>{PUBLIC}</HostAddress>".encode() in profile
    assert b"<StrictCertificateTrust>true</StrictCertificateTrust>" in profile


def test_a_public_certificate_for_another_name_keeps_the_pin(ui: UI, admin: Any) -> None:
    write_reach(ui.layout, reachable_status(), enabled=True, ddns="rfc2136", name=PUBLIC)
    public_certificate(ui.layout, name="other.home.test")
    page = text(admin.get(f"/users/{ALICE}/onboarding"))
    assert 'id="pin"' in page and f"https://{PUBLIC}/" in page


def test_not_reachable_keeps_the_lan_address(ui: UI, admin: Any) -> None:
    status = reachable_status()
    status["status"]["kind"] = "cgnat"
    write_reach(ui.layout, status, enabled=True, ddns="rfc2136", name=PUBLIC)
    page = text(admin.get(f"/users/{ALICE}/onboarding"))
    assert PUBLIC not in page and "https://vpn.example.net/" in page
