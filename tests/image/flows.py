"""What an owner does with the booted image, as steps the image tests share.

The wizard walked form by form, the admin UI's sign-in, an update uploaded and installed
the way the update page's script does it, and openconnect logging in through the forward
with a ping across the tunnel.  Each step raises GuestError with the console's tail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from .guest import CODE_RE, Browser, Guest, GuestError, wait_http, wait_tls

ADMIN_PASSWORD = "correct horse battery staple"
USER_PASSWORD = "violet Ocean lantern 42 quietly"
GUEST_LAN_IP = "10.0.2.15"  # QEMU user networking's fixed guest address
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def walk_wizard(guest: Guest, timeout: float) -> str:
    """The whole first-boot wizard over HTTP; returns the VPN certificate's pin."""
    browser = Browser(guest.ports.http)
    wait_http(browser, "/setup/", timeout, guest)
    code = guest.wait_console(CODE_RE, 120).group(1)
    answer = browser.submit("/setup/code", {"code": code.lower()})
    if answer.status != 303:
        raise GuestError(f"setup code refused: {answer.status}")
    steps: list[tuple[str, dict[str, str], dict[str, str]]] = [
        ("/setup/admin", {"username": "admin", "password": ADMIN_PASSWORD,
                          "confirm": ADMIN_PASSWORD}, {}),
        ("/setup/network", {}, {"form_id": "network-form"}),
        ("/setup/subnet", {}, {}),
        ("/setup/certificates", {"key_type": "ec"}, {}),
        ("/setup/user", {"username": "alice", "method": "password",
                         "password": USER_PASSWORD, "confirm": USER_PASSWORD}, {}),
    ]
    for path, overrides, how in steps:
        answer = browser.submit(path, overrides, **how)
        if answer.status != 303:
            raise GuestError(f"{path}: HTTP {answer.status}")
    applied = browser.submit("/setup/review", {}, action="/setup/apply")
    if applied.status != 303:
        raise GuestError(f"apply: HTTP {applied.status}")
    done = browser.get("/setup/done")
    pin = re.search(r'id="pin">(pin-sha256:[^<]+)<', done.body)
    if pin is None:
        raise GuestError("no pin on the done page")
    try:
        browser.submit("/setup/done", {}, action="/setup/finish")
    except OSError:
        pass  # the admin UI's Conflicts= stops the wizard while it answers
    return pin.group(1)


def admin_browser(guest: Guest, timeout: float) -> Browser:
    """Signed in to the admin UI (HTTPS 8443) as the wizard's admin."""
    wait_tls(guest.ports.admin, timeout, guest)
    browser = Browser(guest.ports.admin, tls=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = browser.submit("/login", {"username": "admin",
                                               "password": ADMIN_PASSWORD})
            if answer.status == 303:
                return browser
            raise GuestError(f"admin sign-in: HTTP {answer.status}")
        except (OSError, GuestError):
            if time.monotonic() > deadline:
                raise
            time.sleep(3)


def upload_and_install(browser: Browser, bundle: Path, timeout: float) -> dict[str, str]:
    """Upload as update.js does, check what RAUC found, install; returns the page's facts."""
    page = browser.get("/update/")
    token = CSRF.search(page.body)
    if token is None:
        raise GuestError("no CSRF token on the update page")
    headers = {"X-CSRF-Token": token.group(1)}
    chunk = int(re.search(r'data-chunk="(\d+)"', page.body).group(1))  # type: ignore[union-attr]
    size = bundle.stat().st_size
    with open(bundle, "rb") as fh:
        for offset in range(0, size, chunk):
            piece = browser.request("POST", f"/update/upload?offset={offset}",
                                    raw_bytes=fh.read(chunk), extra=headers)
            if piece.status != 200:
                raise GuestError(f"upload refused: {piece.status} {piece.body[:500]}")
    answer = browser.request("POST", "/update/check", raw_bytes=b"", extra=headers)
    if answer.status != 200:
        raise GuestError(f"upload refused: {answer.status} {answer.body[:500]}")
    page = browser.get("/update/")
    facts = {key: m.group(1) for key in ("bundle-version", "bundle-signer", "release", "slot")
             if (m := re.search(rf'id="{key}">([^<]*)<', page.body))}
    installed = browser.submit("/update/", {}, form_id="install-form")
    if installed.status != 303:
        raise GuestError(f"install: HTTP {installed.status}")
    deadline = time.monotonic() + timeout
    while True:
        progress = browser.get("/update/progress").body
        if '"state":"done"' in progress.replace(" ", ""):
            return facts
        if '"state":"failed"' in progress.replace(" ", ""):
            raise GuestError(f"install failed: {progress}")
        if time.monotonic() > deadline:
            raise GuestError(f"install not done within {timeout:.0f}s: {progress}")
        time.sleep(2)


def update_page_facts(browser: Browser) -> tuple[dict[str, str], str]:
    page = browser.get("/update/")
    facts = {key: m.group(1) for key in ("release", "slot")
             if (m := re.search(rf'id="{key}">([^<]*)<', page.body))}
    return facts, page.body


def openconnect_ping(guest: Guest, pin: str, workdir: Path) -> None:
    """alice logs in with the real openconnect (TLS only: slirp drops UDP) and pings."""
    if shutil.which("openconnect") is None:
        raise GuestError("openconnect is not installed")
    events = workdir / "oc-events"
    events.unlink(missing_ok=True)
    script = workdir / "oc-script.sh"
    script.write_text(f"""#!/bin/sh
case "$reason" in
connect)
    ip link set dev "$TUNDEV" up mtu "${{INTERNAL_IP4_MTU:-1300}}"
    ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"
    ip route add {GUEST_LAN_IP}/32 dev "$TUNDEV"
    echo connect >> {events}
    ;;
esac
exit 0
""")
    script.chmod(0o700)
    log_path = workdir / "openconnect.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            ["openconnect", "-v", "--non-inter", "--servercert", pin, "--user", "alice",
             "--passwd-on-stdin", "--script", str(script), "--interface", "ocgimg0",
             f"https://127.0.0.1:{guest.ports.vpn}/"],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        assert proc.stdin is not None
        proc.stdin.write((USER_PASSWORD + "\n").encode())
        proc.stdin.close()
        try:
            deadline = time.monotonic() + 180
            while not (events.exists() and "connect" in events.read_text()):
                if proc.poll() is not None:
                    raise GuestError(f"openconnect exited {proc.returncode}: "
                                     f"{log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise GuestError("openconnect did not connect within 180 s")
                time.sleep(0.5)
            ping = subprocess.run(["ping", "-c", "3", "-W", "10", GUEST_LAN_IP],
                                  capture_output=True, text=True, timeout=60, check=False)
            if ping.returncode != 0:
                raise GuestError(ping.stdout + ping.stderr)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
