"""``make image-test``, A/B part: version N boots, takes N+1 from the web UI, and survives
a broken N+2 by itself.  QEMU TCG, arm64 ``virt`` booted by Debian's U-Boot, whose
boot.scr picks the slot from bootenv.txt, on a writable copy of the image (reboots stay in
one QEMU process, so the switch between slots really happens in the boot loader).

1. boot N (slot A), walk the wizard, openconnect logs in and pings;
2. upload bundle N+1 on the admin UI's update page, see version and signer, install; the
   guest reboots into slot B, the page shows N+1 and "installed", the same user connects
   with the same settings and the wizard does not run again;
3. upload a bundle whose VPN service cannot start (made here from N+1's root file system:
   a drop-in with ExecStart=/bin/false): slot A gets it, fails its health check on every
   try, the boot loader goes back to slot B by itself, and the page reports the rollback.

Needs build/image/ocgate-arm64.img (RELEASE N) and ocgate-arm64-*.raucb (N+1), which
``make image-test`` builds, and the signing keys (OCGATE_IMAGE_KEYS) for the broken one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mkimage import load_mkimage

from .flows import admin_browser, openconnect_ping, update_page_facts, upload_and_install
from .flows import walk_wizard as wizard
from .guest import UBOOT, Guest, GuestError, ImageFiles, PrivateNetns

REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("OCGATE_IMAGE_DIR", REPO / "build" / "image"))
BOOT_TIMEOUT = float(os.environ.get("OCGATE_BOOT_TIMEOUT", "600"))
BOOTING = re.compile(r"ocgate: booting slot ([AB])")

if os.environ.get("OCGATE_IMAGE_TEST") != "1":
    pytest.skip("boots the disk image in QEMU (minutes): run `make image-test`",
                allow_module_level=True)
if os.environ.get("OCGATE_IMAGE_ARCH", "arm64") != "arm64":
    pytest.skip("A/B boot is U-Boot on arm64 virt", allow_module_level=True)

mk = load_mkimage()
FILES = ImageFiles.find(OUT, "arm64")
STATE: dict[str, str] = {}


def slots_booted(guest: Guest) -> list[str]:
    return BOOTING.findall(guest.console())


def wait_boots(guest: Guest, count: int, timeout: float) -> list[str]:
    """Until the boot script has chosen a slot ``count`` times since QEMU started."""
    deadline = time.monotonic() + timeout
    while len(slots_booted(guest)) < count:
        guest.check_alive()
        if time.monotonic() > deadline:
            raise GuestError(f"only {slots_booted(guest)} booted within {timeout:.0f}s\n"
                             f"{guest.tail()}")
        time.sleep(2)
    return slots_booted(guest)


def bundle_version(bundle: Path) -> str:
    return bundle.name.removeprefix("ocgate-arm64-").removesuffix(".raucb")


@pytest.fixture(scope="module")
def bundle_next() -> Path:
    found = sorted(OUT.glob("ocgate-arm64-*.raucb"))
    found = [p for p in found if "broken" not in p.name]
    if not found:
        pytest.fail("no update bundle: make image-test builds one (make bundle RELEASE=...)")
    return found[-1]


@pytest.fixture(scope="module")
def bundle_broken(bundle_next: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N+1 with a VPN unit that cannot start, signed with the build's own keys."""
    keys_dir = Path(os.environ.get("OCGATE_IMAGE_KEYS", mk.default_keys_dir()))
    keys = mk.SigningKeys(keys_dir)
    if not keys.complete():
        pytest.fail(f"no signing keys in {keys_dir} (OCGATE_IMAGE_KEYS)")
    work = tmp_path_factory.mktemp("broken")
    conf = work / "check.conf"
    conf.write_text(f"[system]\ncompatible=ocgate-arm64\nbootloader=noop\n[keyring]\n"
                    f"path={keys.ca_cert}\ncheck-purpose=codesign\n")
    subprocess.run(["rauc", "-c", str(conf), "extract", str(bundle_next),
                    str(work / "x")], check=True, capture_output=True)
    rootfs = work / "x" / "rootfs.ext4"
    dropin = work / "broken.conf"
    dropin.write_text("[Service]\nExecStart=\nExecStart=/bin/false\n")
    release = work / "release"
    release.write_text("3.0-broken\n")
    for request in ("mkdir /etc/systemd/system/ocgate-vpn.service.d",
                    f"write {dropin} /etc/systemd/system/ocgate-vpn.service.d/broken.conf",
                    "rm /usr/lib/ocgate/release",
                    f"write {release} /usr/lib/ocgate/release"):
        subprocess.run(["debugfs", "-w", "-R", request, str(rootfs)], check=True,
                       capture_output=True)
    return mk.make_bundle(rootfs, work / "ocgate-arm64-3.0-broken.raucb", keys=keys,
                          compat="ocgate-arm64", version="3.0-broken", work=work,
                          hook=mk.BUNDLE_HOOK)


@pytest.fixture(scope="module")
def guest() -> Iterator[Guest]:
    if FILES.missing():
        pytest.fail(f"image not built ({', '.join(map(str, FILES.missing()))}): make image")
    if not UBOOT.exists():
        pytest.fail(f"{UBOOT} missing (apt-get install u-boot-qemu)")
    if shutil.which("qemu-system-aarch64") is None:
        pytest.fail("qemu-system-aarch64 missing (apt-get install qemu-system-arm)")
    workdir = OUT / "qemu-ab"
    shutil.rmtree(workdir, ignore_errors=True)
    with PrivateNetns():
        g = Guest(FILES, workdir, uboot=True)
        g.start()
        try:
            yield g
        finally:
            g.stop()
            print(f"\nconsole log: {g.console_log}")


def test_version_n_boots_from_slot_a_and_takes_the_wizard(guest: Guest) -> None:
    STATE["pin"] = wizard(guest, BOOT_TIMEOUT)
    assert slots_booted(guest) == ["A"]
    openconnect_ping(guest, STATE["pin"], guest.workdir)
    browser = admin_browser(guest, 300)
    facts, _ = update_page_facts(browser)
    assert facts["slot"] == "A"
    STATE["release_n"] = facts["release"]
    print(f"\nN: release {facts['release']} at {guest.elapsed():.0f}s")


def test_update_from_the_web_ui_reboots_into_n_plus_1(guest: Guest,
                                                      bundle_next: Path) -> None:
    if "pin" not in STATE:
        pytest.fail("version N did not come up")
    browser = admin_browser(guest, 300)
    t0 = guest.elapsed()
    facts = upload_and_install(browser, bundle_next, 900)
    print(f"\ninstall (upload + RAUC) took {guest.elapsed() - t0:.0f}s")
    assert facts["bundle-version"] != STATE["release_n"]
    assert "OCGate updates signer" in facts["bundle-signer"]
    booted = wait_boots(guest, 2, BOOT_TIMEOUT)
    assert booted == ["A", "B"]
    t1 = guest.elapsed()
    browser = admin_browser(guest, BOOT_TIMEOUT)  # the admin UI, not the wizard
    guest.wait_console(re.compile(r"health result=good slot=B"), 300)
    print(f"reboot to healthy: {guest.elapsed() - t1:.0f}s after slot B was chosen")
    facts, page = update_page_facts(browser)
    assert facts["slot"] == "B" and facts["release"] == bundle_version(bundle_next)
    assert 'id="last-update"' in page
    after = guest.console().split("booting slot B", 1)[1]
    assert "Started ocgate-firstboot.service" not in after, "the wizard ran again"
    openconnect_ping(guest, STATE["pin"], guest.workdir)  # same user, same settings
    STATE["release_n1"] = facts["release"]


def test_broken_update_rolls_back_by_itself(guest: Guest, bundle_broken: Path) -> None:
    if "release_n1" not in STATE:
        pytest.fail("N+1 did not come up")
    browser = admin_browser(guest, 300)
    upload_and_install(browser, bundle_broken, 900)
    # slot A gets three tries, each fails its health check and reboots; then slot B again
    booted = wait_boots(guest, 6, 4 * BOOT_TIMEOUT)
    assert booted == ["A", "B", "A", "A", "A", "B"], booted
    guest.wait_console(re.compile(r"update result=rolled-back"), 600)
    browser = admin_browser(guest, BOOT_TIMEOUT)
    facts, page = update_page_facts(browser)
    assert facts == {"release": STATE["release_n1"], "slot": "B"}
    assert 'id="rolled-back"' in page and "3.0-broken" in page
    openconnect_ping(guest, STATE["pin"], guest.workdir)


def test_foreign_bundle_is_refused_on_the_device(guest: Guest, bundle_next: Path,
                                                 tmp_path: Path) -> None:
    """Signed by another CA: the upload is refused before anything is written."""
    if "release_n1" not in STATE:
        pytest.fail("N+1 did not come up")
    other = mk.ensure_signing_keys(tmp_path / "other", name="Somebody else")
    conf = tmp_path / "check.conf"
    keys = mk.SigningKeys(Path(os.environ.get("OCGATE_IMAGE_KEYS", mk.default_keys_dir())))
    conf.write_text(f"[system]\ncompatible=ocgate-arm64\nbootloader=noop\n[keyring]\n"
                    f"path={keys.ca_cert}\ncheck-purpose=codesign\n")
    subprocess.run(["rauc", "-c", str(conf), "extract", str(bundle_next),
                    str(tmp_path / "x")], check=True, capture_output=True)
    foreign = mk.make_bundle(tmp_path / "x" / "rootfs.ext4", tmp_path / "foreign.raucb",
                             keys=other, compat="ocgate-arm64", version="9.9",
                             work=tmp_path)
    browser = admin_browser(guest, 300)
    with pytest.raises(GuestError, match="upload refused: 400"):
        upload_and_install(browser, foreign, 600)
    facts, page = update_page_facts(browser)
    assert facts["slot"] == "B" and 'id="ready"' not in page
