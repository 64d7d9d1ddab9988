"""Issue #7 leftovers and the issue #12 UI item, in a browser against real processes.

* two-step sign-in: enrol TOTP on the Account page (code computed here from the secret the
  page shows), sign out, sign in with password + code;
* client certificates: issue one on alice's page, download the PKCS#12 with the password
  shown once, convert it here, and a real ``openconnect -c/-k`` logs in with it; revoke it
  in the UI and the same certificate is refused at the next login (CRL re-read);
* RADIUS: with ``auth = radius[...]`` the Users page names the RADIUS server and offers
  no local account edits;
* backup -> factory reset -> wizard -> restore in the UI -> a user who existed before the
  backup connects with openconnect and pings through the tunnel.

Topology and device state as in test_webui_e2e.py (namespaces and documentation addresses
made here; chromium runs in the client namespace and trusts only the device key).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from appliance import pki
from appliance.firstboot.apply import apply_plan, factory_reset
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
from appliance.webui.totp import secret_from_text, totp_code
from tests.support import harness
from tests.support.device import (
    ADMIN_PASSWORD,
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    UI_PORT,
    Shots,
    WebUIProcess,
    device_server_files,
    make_device_state,
)
from tests.support.netns import Netns, TestNet

CAROL, CAROL_PASSWORD = "carol", "granite Otter meadow 41 swift"


# --------------------------------------------------------------------------- helpers


def _browser(browser_in: Callable[[Netns], Any], monkeypatch: pytest.MonkeyPatch,
             net: TestNet, layout: StateLayout, base_args: list[str]) -> Any:
    """A chromium page in the client namespace trusting exactly the device key."""
    pin = pki.pin_sha256(pki.load_cert(layout.server_cert)).removeprefix("pin-sha256:")
    launch_globals = browser_in.__globals__  # type: ignore[attr-defined]
    monkeypatch.setitem(launch_globals, "CHROMIUM_ARGS",
                        [*base_args, "--ignore-certificate-errors-spki-list=" + pin])
    return browser_in(net.client_ns).new_page()


def _submit(page: Any, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def _sign_in(page: Any, base: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    _submit(page, "#login-form button[type=submit]")


def _cert_args(p12: bytes, password: str, folder: Path) -> list[str]:
    """openconnect 9.01 takes PEM files: convert the downloaded PKCS#12 here."""
    key, cert, _ = pkcs12.load_key_and_certificates(p12, password.encode())
    assert key is not None and cert is not None
    folder.mkdir(exist_ok=True)
    cert_path, key_path = folder / "client-cert.pem", folder / "client-key.pem"
    pki.write_cert(cert_path, cert)
    pki.write_key(key_path, key)  # type: ignore[arg-type]
    return ["-c", str(cert_path), "-k", str(key_path)]


def _no_tracebacks(*logs: str) -> None:
    for text in logs:
        assert "Traceback" not in text, text


# --------------------------------------------------------------------------- TOTP, certs, RADIUS


def test_totp_client_certificates_and_radius_notice(
    net: TestNet, workdir: Path, browser_in: Callable[[Netns], Any],
    artifacts: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = time.monotonic()
    shots = Shots(artifacts("webui-accounts"))
    layout = make_device_state(net, workdir / "state")
    files = device_server_files(net, workdir, layout, layout, {ALICE: ALICE_PASSWORD})
    server = harness.Server(net, files)
    webui = WebUIProcess(net.server_ns, layout, net.server_ip, workdir / "webui.log",
                         server.log_path)
    client = harness.Client(net, files, name="certuser")
    base_args = list(browser_in.__globals__["CHROMIUM_ARGS"])  # type: ignore[attr-defined]
    try:
        webui.wait_listening()
        page = _browser(browser_in, monkeypatch, net, layout, base_args)
        base = f"https://{net.server_ip}:{UI_PORT}"
        _sign_in(page, base)

        # ---- enrol TOTP: the page shows the otpauth URI and a QR code
        page.goto(base + "/account/")
        _submit(page, "#totp-begin-form button[type=submit]")
        uri = page.inner_text("#totp-uri").strip()
        assert uri.startswith("otpauth://totp/OCGate:admin?")
        page.wait_for_selector("#totp-qr svg")
        shots(page, "account-totp-enrol")
        secret_text = re.search(r"secret=([A-Z2-7]+)", uri)
        assert secret_text is not None
        secret = secret_from_text(secret_text.group(1))
        page.fill("#code", totp_code(secret, time.time()))
        _submit(page, "#totp-confirm-form button[type=submit]")
        codes = page.inner_text("#recovery-codes").split()
        assert len(codes) == 10
        shots(page, "account-recovery-codes")

        # ---- sign out; signing in now needs the code (the next one: the first is spent)
        _submit(page, "#logout-form button[type=submit]")
        _sign_in(page, base)
        assert page.url.endswith("/login/code")
        page.fill("#code", "000000" if totp_code(secret, time.time() + 30) != "000000"
                  else "111111")
        _submit(page, "#code-form button[type=submit]")
        assert "Wrong code" in page.inner_text("#login-error")
        shots(page, "login-code")
        page.fill("#code", totp_code(secret, time.time() + 30))
        _submit(page, "#code-form button[type=submit]")
        assert page.url == base + "/", page.url
        page.goto(base + "/account/")
        assert "on" in page.inner_text("#totp-status")

        # ---- issue a certificate for alice, download the PKCS#12 once
        page.goto(base + f"/users/{ALICE}")
        _submit(page, "#issue-cert-form button[type=submit]")
        password = page.inner_text("#p12-password").strip()
        serial = page.inner_text("#cert-issued h2").split()[-1]
        shots(page, "user-certificate-issued")
        with page.expect_download() as info:
            page.click("#p12-download-form button[type=submit]")
        p12 = Path(info.value.path()).read_bytes()
        args = _cert_args(p12, password, workdir / "p12")

        # ---- the server (started now: certificate login is in ocserv.conf) accepts it
        server.start()
        assert client.connect(ALICE, "not the password: the certificate suffices",
                              extra_args=args), client.log
        assert harness.ping(client.ns, net.inside_ip).ok
        assert client.disconnect() == 0

        # ---- revoke in the UI: the same certificate is refused at the next login
        page.goto(base + f"/users/{ALICE}")
        _submit(page, f"#revoke-{serial}")
        assert "was revoked" in page.inner_text(".notice-success")
        assert "revoked" in page.inner_text(f"#certs-table tr[data-serial='{serial}']")
        shots(page, "user-certificate-revoked")
        assert not client.connect(ALICE, "not the password: the certificate suffices",
                                  extra_args=args)
        assert "certificate revoked" in server.log, server.log[-3000:]
        server.assert_running()

        # ---- RADIUS holds the users: notice, no local edit controls
        radcli = workdir / "radiusclient.conf"
        radcli.write_text("authserver 198.51.100.9:1812:e2e-secret\n"
                          "acctserver 198.51.100.9:1813:e2e-secret\n")
        doc = ConfigDocument.load(str(layout.conf))
        doc.set("auth", f"radius[config={radcli},groupconfig=true]")
        write_config_atomic(str(layout.conf), doc.text())
        page.goto(base + "/users/")
        notice = page.inner_text("#radius-notice")
        assert "RADIUS server 198.51.100.9:1812" in notice and "e2e-secret" not in notice
        assert page.query_selector("#add-user-form") is None
        shots(page, "users-radius")
        page.goto(base + f"/users/{ALICE}")
        for form in ("#password-form", "#delete-form", "#lock-form", "#groups-form"):
            assert page.query_selector(form) is None, form
        page.goto(base + "/sessions/")
        assert "Account" in page.inner_text("#sessions-table thead")
        _no_tracebacks(webui.output())
    finally:
        client.close()
        webui.stop()
        server.stop()
    elapsed = time.monotonic() - started
    print(f"\n[webui accounts] {elapsed:.1f} s")
    assert elapsed < 90


# --------------------------------------------------------------------------- backup / restore


def _wizard_again(net: TestNet, layout: StateLayout) -> None:
    """What the first-boot wizard writes after a factory reset: new keys, new first user."""
    plan = SetupPlan(
        admin=AdminAccount("admin", hash_password(ADMIN_PASSWORD)),
        network=NetworkChoice(net.server_ip, [], [net.server_ip]),
        subnet=SubnetChoice(ipaddress.ip_network(net.pool), None, False,
                            [ipaddress.ip_network(net.route)], [net.dns]),
        certs=make_certificates("ocgate", [], [net.server_ip]),
        user=FirstUser(CAROL, "password", password_hash=hash_password(CAROL_PASSWORD)),
    )
    apply_plan(plan, layout)


def test_backup_factory_reset_restore_then_connect(
    net: TestNet, workdir: Path, browser_in: Callable[[Netns], Any],
    artifacts: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = time.monotonic()
    shots = Shots(artifacts("webui-restore"))
    layout = make_device_state(net, workdir / "state")
    old_pin = pki.pin_sha256(pki.load_cert(layout.server_cert))
    files = device_server_files(net, workdir, layout, layout, {ALICE: ALICE_PASSWORD})
    server = harness.Server(net, files)
    base_args = list(browser_in.__globals__["CHROMIUM_ARGS"])  # type: ignore[attr-defined]
    base = f"https://{net.server_ip}:{UI_PORT}"
    ui_log = workdir / "webui.log"
    webui = WebUIProcess(net.server_ns, layout, net.server_ip, ui_log, server.log_path)
    client = harness.Client(net, files, name="restored")
    outputs: list[str] = []
    try:
        # ---- before: add bob in the UI, download a backup
        webui.wait_listening()
        page = _browser(browser_in, monkeypatch, net, layout, base_args)
        _sign_in(page, base)
        page.goto(base + "/users/")
        page.fill("#username", BOB)
        page.fill("#password", BOB_PASSWORD)
        page.fill("#confirm", BOB_PASSWORD)
        _submit(page, "#add-user-form button[type=submit]")
        page.goto(base + "/backup/")
        with page.expect_download() as info:
            page.click("#backup-form button[type=submit]")
        backup = workdir / "backup.tar.gz"
        backup.write_bytes(Path(info.value.path()).read_bytes())
        page.context.close()
        webui.stop()
        outputs.append(webui.output())

        # ---- factory reset (what the device's reset does), then the wizard again
        removed = factory_reset(layout)
        assert str(layout.admin_passwd) in removed and not layout.passwd.exists()
        _wizard_again(net, layout)
        assert pki.pin_sha256(pki.load_cert(layout.server_cert)) != old_pin
        assert BOB not in layout.passwd.read_text()

        # ---- restore the backup through the admin UI's upload
        webui = WebUIProcess(net.server_ns, layout, net.server_ip, workdir / "webui2.log",
                             server.log_path)
        webui.wait_listening()
        page = _browser(browser_in, monkeypatch, net, layout, base_args)
        _sign_in(page, base)
        page.goto(base + "/backup/")
        page.set_input_files("#archive", str(backup))
        _submit(page, "#restore-form button[type=submit]")
        assert "restored" in page.inner_text(".notice-success"), page.inner_text("main")
        shots(page, "backup-restored")
        assert pki.pin_sha256(pki.load_cert(layout.server_cert)) == old_pin
        assert BOB in layout.passwd.read_text()

        # ---- the VPN starts with the restored files; bob connects and pings
        server.start()
        assert client.connect(BOB, BOB_PASSWORD), client.log
        assert harness.ping(client.ns, net.inside_ip).ok
        assert client.disconnect() == 0
        outputs.append(webui.output())
        _no_tracebacks(*outputs)
    finally:
        client.close()
        webui.stop()
        server.stop()
    elapsed = time.monotonic() - started
    print(f"\n[webui restore] {elapsed:.1f} s")
    assert elapsed < 90
