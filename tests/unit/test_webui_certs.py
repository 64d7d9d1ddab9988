"""Client certificates from the admin UI (issue, PKCS#12, revoke, CRL) and the RADIUS notice."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from flask.testing import FlaskClient

from appliance import pki
from appliance.vpn.config import load_config
from appliance.webui.backup import make_backup, plan_restore
from appliance.webui.clientcerts import ClientCertError, ClientCerts
from appliance.webui.radiusinfo import radius_server_name, read_radius_info
from tests.support.webui import ALICE, UI, post

NOW = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)


def _crl(path: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(path.read_bytes())


def test_issue_gives_a_loadable_p12_and_keeps_no_key(ui: UI) -> None:
    certs = ClientCerts(ui.layout)
    change = certs.ensure_cert_login(NOW)
    assert set(change.options) == {"enable-auth", "ca-cert", "cert-user-oid", "crl"}
    bundle = certs.issue(ALICE, NOW, days=30)
    key, cert, extra = pkcs12.load_key_and_certificates(bundle.p12, bundle.password.encode())
    assert key is not None and cert is not None
    assert cert.subject.get_attributes_for_oid(x509.NameOID.USER_ID)[0].value == ALICE
    ca = pki.load_cert(ui.layout.ca_cert)
    cert.verify_directly_issued_by(ca)
    assert [c.subject for c in extra] == [ca.subject]
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(bundle.p12, b"wrong password")
    record = certs.for_user(ALICE)[0]
    assert record.serial == format(cert.serial_number, "X")
    assert record.not_after.startswith("2026-05-31")
    stored = ui.layout.client_certs.read_text()
    assert "PRIVATE" not in stored and bundle.password not in stored
    assert not any("PRIVATE KEY" in p.read_text(errors="replace")
                   for p in ui.layout.root.rglob("*") if p.is_file()
                   and p != ui.layout.ca_key and p != ui.layout.server_key)
    cfg = load_config(str(ui.layout.conf))
    assert [m.name for m in cfg.enable_auth] == ["certificate"]
    assert cfg.crl == str(ui.layout.crl) and cfg.ca_cert and cfg.cert_user_oid
    assert certs.ensure_cert_login(NOW).options == ()  # idempotent


def test_revoke_regenerates_the_crl(ui: UI) -> None:
    certs = ClientCerts(ui.layout)
    certs.ensure_cert_login(NOW)
    assert list(_crl(ui.layout.crl)) == []
    first = certs.issue(ALICE, NOW)
    second = certs.issue(ALICE, NOW)
    certs.revoke(first.record.serial, NOW + datetime.timedelta(minutes=1))
    crl = _crl(ui.layout.crl)
    assert crl.is_signature_valid(pki.load_cert(ui.layout.ca_cert).public_key())
    assert [r.serial_number for r in crl] == [int(first.record.serial, 16)]
    assert crl.next_update_utc is not None and crl.next_update_utc > NOW + datetime.timedelta(
        days=3000)
    statuses = {r.serial: r.status(NOW) for r in certs.for_user(ALICE)}
    assert statuses == {first.record.serial: "revoked", second.record.serial: "valid"}
    with pytest.raises(ClientCertError):
        certs.revoke(first.record.serial, NOW)
    with pytest.raises(ClientCertError):
        certs.revoke("DEADBEEF", NOW)
    assert ui.layout.crl.stat().st_mode & 0o777 == 0o644


def test_backup_carries_certificates_and_crl(ui: UI, tmp_path: Path) -> None:
    certs = ClientCerts(ui.layout)
    certs.ensure_cert_login(NOW)
    bundle = certs.issue(ALICE, NOW)
    certs.revoke(bundle.record.serial, NOW)
    plan = plan_restore(make_backup(ui.layout), ui.layout)
    assert {"client-certs.json", "certs/crl.pem"} <= set(plan.files)


def test_ui_issue_download_once_and_revoke(ui: UI, admin: FlaskClient) -> None:
    client = admin
    page = post(client, f"/users/{ALICE}/certs/issue", {"days": "90"},
                form_page=f"/users/{ALICE}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200, text
    password = re.search(r'id="p12-password"><code>([^<]+)</code>', text).group(1)  # type: ignore[union-attr]
    action = re.search(r'action="([^"]+/certs/download/[^"]+)"', text).group(1)  # type: ignore[union-attr]
    assert ("reload", None) in ui.vpn.calls
    download = post(client, action, form_page=f"/users/{ALICE}")
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/x-pkcs12"
    key, cert, _ = pkcs12.load_key_and_certificates(download.data, password.encode())
    assert key is not None and cert is not None
    again = post(client, action, form_page=f"/users/{ALICE}")
    assert again.status_code == 404  # one time only
    serial = format(cert.serial_number, "X")
    page = client.get(f"/users/{ALICE}").get_data(as_text=True)
    assert serial in page and "valid" in page and password not in page
    revoked = post(client, f"/users/{ALICE}/certs/{serial}/revoke",
                   form_page=f"/users/{ALICE}")
    assert revoked.status_code == 303
    assert [r.serial_number for r in _crl(ui.layout.crl)] == [cert.serial_number]
    assert post(client, f"/users/{ALICE}/certs/ABC123/revoke",
                form_page=f"/users/{ALICE}").status_code == 404


def test_download_belongs_to_the_issuing_session(ui: UI, admin: FlaskClient) -> None:
    text = post(admin, f"/users/{ALICE}/certs/issue",
                form_page=f"/users/{ALICE}").get_data(as_text=True)
    action = re.search(r'action="([^"]+/certs/download/[^"]+)"', text).group(1)  # type: ignore[union-attr]
    from tests.support.webui import sign_in
    other = ui.client()
    sign_in(other)
    assert post(other, action, form_page=f"/users/{ALICE}").status_code == 404


# --------------------------------------------------------------------------- RADIUS


RADCLI = """# radcli
nas-identifier ocgate
authserver 198.51.100.5:1812:not-shown-secret
acctserver 198.51.100.5:1813
servers /etc/radcli/servers
"""


def _use_radius(ui: UI, tmp_path: Path) -> None:
    radcli = tmp_path / "radiusclient.conf"
    radcli.write_text(RADCLI)
    text = ui.layout.conf.read_text()
    text = re.sub(r"(?m)^auth = .*$", f"auth = radius[config={radcli},groupconfig=true]", text)
    ui.layout.conf.write_text(text)


def test_radius_server_name() -> None:
    assert radius_server_name(RADCLI) == "198.51.100.5:1812"
    assert radius_server_name("authserver radius.example\n") == "radius.example:1812"
    assert radius_server_name("authserver [2001:db8::5]:1812:s\n") == "[2001:db8::5]:1812"
    assert radius_server_name("# nothing\n") is None


def test_radius_users_page_offers_no_local_edits(ui: UI, admin: FlaskClient,
                                                 tmp_path: Path) -> None:
    client = admin
    before = client.get("/users/").get_data(as_text=True)
    assert 'id="add-user-form"' in before and "radius-notice" not in before
    _use_radius(ui, tmp_path)
    info = read_radius_info(ui.layout.conf)
    assert info is not None and info.server == "198.51.100.5:1812"
    page = client.get("/users/").get_data(as_text=True)
    assert "RADIUS server 198.51.100.5:1812" in page and "not-shown-secret" not in page
    assert 'id="add-user-form"' not in page
    detail = client.get(f"/users/{ALICE}").get_data(as_text=True)
    for form in ("password-form", "delete-form", "lock-form", "groups-form"):
        assert f'id="{form}"' not in detail
    passwd = ui.layout.passwd.read_text()
    for path, data in (("/users/add", {"username": "zed", "password": "x", "confirm": "x"}),
                       (f"/users/{ALICE}/password", {"password": "x", "confirm": "x"}),
                       (f"/users/{ALICE}/delete", {"confirm": ALICE}),
                       (f"/users/{ALICE}/lock", {"locked": "1"})):
        assert post(client, path, data, form_page="/users/").status_code == 409
    assert ui.layout.passwd.read_text() == passwd
    from tests.support.webui import session_user
    ui.vpn.users_list = [session_user()]
    sessions = client.get("/sessions/").get_data(as_text=True)
    assert re.search(r'data-field="source"><span class="pill"[^>]*>RADIUS<', sessions)


def test_deleting_a_user_revokes_their_certificates(ui: UI, admin: FlaskClient) -> None:
    certs = ClientCerts(ui.layout)
    certs.ensure_cert_login(NOW)
    bundle = certs.issue(ALICE, datetime.datetime.now(datetime.UTC))
    gone = post(admin, f"/users/{ALICE}/delete", {"confirm": ALICE},
                form_page=f"/users/{ALICE}")
    assert gone.status_code == 303
    assert [r.serial_number for r in _crl(ui.layout.crl)] == [int(bundle.record.serial, 16)]
