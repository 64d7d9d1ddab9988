"""``make image-test``: boot the built image in QEMU and use it as its owner would.

1. boot (TCG) and wait for the first-boot wizard to answer through the loopback forward;
2. read the one-time setup code off the serial console and walk the whole wizard over
   HTTP, form by form, like a browser (cookies, CSRF tokens, redirects);
3. wait for the VPN server the wizard's hand-over started (a TLS handshake on 443);
4. connect the real openconnect to it through the forward and ping the guest across the
   tunnel. The session runs over TLS (CSTP) only: with ``restrict=on`` QEMU's user-mode
   network drops every UDP datagram the guest sends (slirp's udp_input discards them before
   it even looks for a forward), so DTLS replies can never leave the guest. DTLS is covered
   by the end-to-end suite in network namespaces instead.

Timings go to build/image/boot-timings.json and are printed.  Skipped unless
OCGATE_IMAGE_TEST=1 (``make test`` must stay fast) or when the image is not built.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .guest import (
    CODE_RE,
    Browser,
    Guest,
    GuestError,
    ImageFiles,
    PrivateNetns,
    wait_http,
    wait_tls,
)

REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("OCGATE_IMAGE_DIR", REPO / "build" / "image"))
ARCH = os.environ.get("OCGATE_IMAGE_ARCH", "arm64")
BOOT_TIMEOUT = float(os.environ.get("OCGATE_BOOT_TIMEOUT", "420"))

ADMIN_PASSWORD = "correct horse battery staple"
USER_PASSWORD = "violet Ocean lantern 42 quietly"
GUEST_LAN_IP = "10.0.2.15"  # QEMU user networking's fixed guest address

if os.environ.get("OCGATE_IMAGE_TEST") != "1":
    pytest.skip("boots the disk image in QEMU (minutes), as test_update.py does: run "
                "`make image-test`", allow_module_level=True)

FILES = ImageFiles.find(OUT, ARCH)


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, float]]:
    record: dict[str, float] = {}
    yield record
    (OUT / f"boot-timings-{ARCH}.json").write_text(json.dumps(record, indent=1) + "\n")
    print("\nimage-test timings (s since QEMU start):")
    for name, value in record.items():
        print(f"  {name:28s} {value:8.1f}")


@pytest.fixture(scope="module")
def guest() -> Iterator[Guest]:
    if FILES.missing():
        pytest.skip(f"image not built ({', '.join(map(str, FILES.missing()))}): make image")
    qemu = "qemu-system-aarch64" if ARCH == "arm64" else "qemu-system-x86_64"
    if shutil.which(qemu) is None:
        pytest.skip(f"{qemu} missing (apt-get install qemu-system-arm / qemu-system-x86)")
    if os.geteuid() != 0:
        pytest.skip("needs root: a private network namespace for QEMU and openconnect")
    with PrivateNetns():
        g = Guest(FILES, OUT / f"qemu-{ARCH}")
        g.start()
        try:
            yield g
        finally:
            g.stop()
            print(f"\nconsole log: {g.console_log}")


@pytest.fixture(scope="module")
def browser(guest: Guest) -> Browser:
    return Browser(guest.ports.http)


def test_wizard_answers_through_the_forward(guest: Guest, browser: Browser,
                                            timings: dict[str, float]) -> None:
    first = wait_http(browser, "/setup/", BOOT_TIMEOUT, guest)
    timings["wizard_http"] = guest.elapsed()
    assert first.status in (200, 302, 303), first
    page = browser.follow(first)
    assert page.status == 200 and "setup code" in page.body.lower()


def test_setup_code_is_on_the_console(guest: Guest, timings: dict[str, float]) -> None:
    found = guest.wait_console(CODE_RE, 60)
    timings["setup_code_on_console"] = guest.elapsed()
    assert found.group(1)


def test_wrong_code_is_refused(guest: Guest, browser: Browser) -> None:
    answer = browser.submit("/setup/code", {"code": "0000-0000-0000-0000"})
    assert answer.status == 403


def test_whole_wizard_over_http(guest: Guest, browser: Browser,
                                timings: dict[str, float]) -> None:
    code = CODE_RE.findall(guest.console())[-1]
    answer = browser.submit("/setup/code", {"code": code.lower()})
    assert answer.status == 303 and answer.location.endswith("/setup/admin"), answer
    timings["code_accepted"] = guest.elapsed()
    steps = [
        ("/setup/admin", {"username": "admin", "password": ADMIN_PASSWORD,
                          "confirm": ADMIN_PASSWORD}, {}),
        # the detected defaults (server address, hostname) are what a user would keep
        ("/setup/network", {}, {"form_id": "network-form"}),
        ("/setup/reach", {}, {"form_id": "reach-skip-form"}),
        ("/setup/subnet", {}, {}),
        ("/setup/certificates", {"key_type": "ec"}, {}),
        ("/setup/user", {"username": "alice", "method": "password",
                         "password": USER_PASSWORD, "confirm": USER_PASSWORD}, {}),
    ]
    for path, overrides, how in steps:
        answer = browser.submit(path, overrides, **how)
        assert answer.status == 303, (path, answer.status, _errors(answer.body))
    review = browser.get("/setup/review")
    assert review.status == 200
    applied = browser.submit("/setup/review", {}, action="/setup/apply")
    timings["wizard_applied"] = guest.elapsed()
    assert applied.status == 303 and applied.location.endswith("/setup/done"), \
        (applied.status, _errors(applied.body))
    done = browser.get("/setup/done")
    pin = re.search(r'id="pin">(pin-sha256:[^<]+)<', done.body)
    assert pin, done.body[:2000]
    (OUT / f"qemu-{ARCH}" / "pin").write_text(pin.group(1))


def test_vpn_server_comes_up(guest: Guest, timings: dict[str, float]) -> None:
    pin_file = OUT / f"qemu-{ARCH}" / "pin"
    if not pin_file.exists():
        pytest.skip("the wizard did not finish")
    wait_tls(guest.ports.vpn, 240, guest)
    timings["vpn_tls_ready"] = guest.elapsed()
    # Type=notify: systemd calls the unit started only after main's READY=1
    # (appliance.sdnotify); without it the start times out and the server is killed.
    guest.wait_console(re.compile(r"Started ocgate-vpn\.service|"
                                  r"ocgate-vpn\.service: start operation timed out"), 240)
    assert "Started ocgate-vpn.service" in guest.console(), \
        "ocgate-vpn.service never reported READY=1 (sd_notify missing in main?)"
    timings["vpn_unit_started"] = guest.elapsed()


def test_openconnect_pings_the_guest_through_the_tunnel(
        guest: Guest, timings: dict[str, float], tmp_path: Path) -> None:
    pin_file = OUT / f"qemu-{ARCH}" / "pin"
    if not pin_file.exists() or "vpn_tls_ready" not in timings:
        pytest.skip("the VPN server is not up")
    if shutil.which("openconnect") is None:
        pytest.skip("openconnect is not installed")
    events = tmp_path / "events"
    script = tmp_path / "script.sh"
    # Only the tunnel address and one host route to the guest: nothing else of the
    # namespace (and no resolv.conf anywhere) changes.
    script.write_text(f"""#!/bin/sh
case "$reason" in
connect)
    ip link set dev "$TUNDEV" up mtu "${{INTERNAL_IP4_MTU:-1300}}"
    ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"
    ip route add {GUEST_LAN_IP}/32 dev "$TUNDEV"
    echo "connect $INTERNAL_IP4_ADDRESS" >> {events}
    ;;
esac
exit 0
""")
    script.chmod(0o700)
    log = (OUT / f"qemu-{ARCH}" / "openconnect.log").open("wb")
    t0 = guest.elapsed()
    proc = subprocess.Popen(
        ["openconnect", "-v", "--non-inter", "--servercert", pin_file.read_text().strip(),
         "--user", "alice", "--passwd-on-stdin", "--script", str(script),
         "--interface", "ocgimg0", f"https://127.0.0.1:{guest.ports.vpn}/"],
        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    proc.stdin.write((USER_PASSWORD + "\n").encode())
    proc.stdin.close()
    try:
        deadline = time.monotonic() + 180
        while not (events.exists() and "connect" in events.read_text()):
            if proc.poll() is not None:
                raise GuestError(f"openconnect exited {proc.returncode}: "
                                 f"{(OUT / f'qemu-{ARCH}' / 'openconnect.log').read_text()}")
            if time.monotonic() > deadline:
                raise GuestError("openconnect did not connect within 180 s")
            time.sleep(0.5)
        timings["vpn_connected"] = guest.elapsed()
        timings["openconnect_login_s"] = guest.elapsed() - t0
        ping = subprocess.run(["ping", "-c", "3", "-W", "10", GUEST_LAN_IP],
                              capture_output=True, text=True, timeout=60, check=False)
        timings["ping_ok"] = guest.elapsed()
        assert ping.returncode == 0, ping.stdout + ping.stderr
        rtt = re.search(r"= [\d.]+/([\d.]+)/", ping.stdout)
        if rtt:
            timings["ping_avg_ms"] = float(rtt.group(1))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _errors(body: str) -> list[str]:
    """The error lines a page shows, for assertion messages."""
    return re.findall(r'class="error[^"]*"[^>]*>([^<]+)<', body)[:5] or [body[:300]]


def test_finish_hands_over_to_the_admin_ui(guest: Guest, browser: Browser,
                                           timings: dict[str, float]) -> None:
    """"Finish": the admin UI unit starts and its Conflicts= stops the wizard."""
    if not (OUT / f"qemu-{ARCH}" / "pin").exists():
        pytest.skip("the wizard did not finish")
    try:
        finished = browser.submit("/setup/done", {}, action="/setup/finish")
        assert finished.status in (200, 303), finished.status
    except (http.client.HTTPException, ConnectionError):
        # Today the wizard runs `systemctl start --no-block ocgate-webui` inside the
        # request, and the admin UI's Conflicts= stops the wizard before it answers.
        timings["finish_reply_lost"] = guest.elapsed()
    wait_tls(guest.ports.admin, 240, guest)
    timings["admin_ui_tls_ready"] = guest.elapsed()
    deadline = time.monotonic() + 60
    while True:  # port 80 now belongs to the admin UI's redirect to HTTPS
        try:
            answer = browser.get("/")
            if answer.status == 301 and answer.location.startswith("https://"):
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "port 80 still serves the wizard"
        time.sleep(1)
    guest.wait_console(re.compile(r"Stopped ocgate-firstboot\.service|"
                                  r"ocgate-firstboot\.service: Deactivated"), 60)

