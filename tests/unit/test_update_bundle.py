"""Signed RAUC bundles as ``make bundle`` makes them, checked by the real ``rauc`` (Debian).

No image and no QEMU: the bundle is made by image/mkimage.py's own functions from a small
ext4, the slots are files, RAUC's service runs on a private session bus with the booted slot
forced to A, and the boot backend is appliance.update.bootchooser on a bootenv.txt of the
test's.  What is proven: a bundle from our signer installs into the inactive slot and makes
it the next boot; one signed by another CA, a tampered one, and one for another
architecture are refused before a byte of the slot or of the boot environment changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.update.bootenv import BootEnv
from tests.support.mkimage import REPO
from tests.support.rauc import COMPAT, RaucDevice, mk, require_rauc, sha256, small_rootfs
from tests.support.rauc import make_bundle as bundle


@pytest.fixture(scope="module")
def tools() -> None:
    require_rauc()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory, tools: None) -> dict[str, object]:
    base = tmp_path_factory.mktemp("keys")
    ours = mk.ensure_signing_keys(base / "ours")
    again = mk.ensure_signing_keys(base / "ours")  # a second build reuses, never remakes
    assert again.ca_cert.read_bytes() == ours.ca_cert.read_bytes()
    assert (ours.key.stat().st_mode & 0o777) == 0o600
    theirs = mk.ensure_signing_keys(base / "theirs", name="Somebody else")
    return {"ours": ours, "theirs": theirs}


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory, tools: None) -> Path:
    return small_rootfs(tmp_path_factory.mktemp("rootfs"))


@pytest.fixture
def device(tmp_path: Path, keys: dict[str, object]) -> Iterator[RaucDevice]:
    with RaucDevice(tmp_path, keys["ours"].ca_cert) as dev:  # type: ignore[attr-defined]
        yield dev


def test_manifest_and_system_conf_render() -> None:
    manifest = mk.render_manifest(COMPAT, "2.0", "rootfs.ext4")
    assert "compatible=ocgate-arm64" in manifest and "format=verity" in manifest
    conf = mk.render_system_conf(COMPAT, slots=mk.slot_devices(), keyring="/etc/rauc/k.pem",
                                 data_dir="/var/lib/ocgate/rauc", backend="/x")
    assert "device=/dev/disk/by-partuuid/4f434741-02" in conf
    assert "device=/dev/disk/by-partuuid/4f434741-03" in conf
    assert "check-purpose=codesign" in conf and "bootloader=custom" in conf


def test_keys_inside_the_tree_are_refused() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "image/mkimage.py"), "--keys",
                           str(REPO / "build" / "keys"), "--stage", "rootfs"],
                          capture_output=True, text=True, check=False)
    if os.geteuid() == 0:
        assert proc.returncode == 2 and "inside the source tree" in proc.stderr, proc.stderr


def test_rauc_info_trusts_only_our_ca(tmp_path: Path, keys: dict[str, object],
                                      rootfs: Path) -> None:
    ours = bundle(tmp_path, rootfs, keys["ours"], fmt="verity", name="ours.raucb")
    theirs = bundle(tmp_path, rootfs, keys["theirs"], fmt="verity", name="theirs.raucb")
    # the device's own system.conf: our CA, code-signing purpose
    conf = tmp_path / "system.conf"
    conf.write_text(mk.render_system_conf(
        COMPAT, slots={"A": "/dev/null", "B": "/dev/null"},
        keyring=str(keys["ours"].ca_cert),  # type: ignore[attr-defined]
        data_dir=str(tmp_path / "data"), backend="/bin/false"))
    good = subprocess.run(["rauc", "-c", str(conf), "info", str(ours)],
                          capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stderr
    assert "Compatible" in good.stdout and COMPAT in good.stdout and "2.0" in good.stdout
    bad = subprocess.run(["rauc", "-c", str(conf), "info", str(theirs)],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0
    assert "signature verification failed" in bad.stderr, bad.stderr


def test_our_bundle_writes_the_inactive_slot_and_boots_it_next(
        tmp_path: Path, device: RaucDevice, keys: dict[str, object], rootfs: Path) -> None:
    # plain: the host kernel here has no device mapper for verity; the signature and
    # slot handling are the same, and the verity bundles are checked by rauc info above
    ours = bundle(tmp_path, rootfs, keys["ours"], fmt="plain")
    before_a = sha256(device.slot_a)
    done = device.install(ours)
    assert done.returncode == 0, done.stdout + done.stderr
    assert device.slot_b.read_bytes()[:rootfs.stat().st_size] == rootfs.read_bytes()
    assert sha256(device.slot_a) == before_a, "the booted slot was written"
    env = BootEnv.parse(device.bootenv.read_text())
    assert env.primary() == "B" and env.left["B"] == 3 and env.order == ["B", "A"]


@pytest.mark.parametrize("case", ["foreign-signer", "tampered", "other-arch"])
def test_bad_bundles_are_refused_before_anything_is_written(
        tmp_path: Path, device: RaucDevice, keys: dict[str, object], rootfs: Path,
        case: str) -> None:
    if case == "foreign-signer":
        bad = bundle(tmp_path, rootfs, keys["theirs"], fmt="verity")
        reason = "signature"
    elif case == "tampered":
        bad = bundle(tmp_path, rootfs, keys["ours"], fmt="plain")
        data = bytearray(bad.read_bytes())
        data[len(data) // 3] ^= 0x01  # inside the squashfs payload the signature covers
        bad.write_bytes(bytes(data))
        reason = "signature"
    else:
        bad = bundle(tmp_path, rootfs, keys["ours"], fmt="plain", compat="ocgate-amd64")
        reason = "compatible"
    before = (sha256(device.slot_a), sha256(device.slot_b), device.bootenv.read_bytes(),
              device.bootenv.stat().st_mtime_ns)
    done = device.install(bad)
    assert done.returncode != 0, done.stdout
    assert reason in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    after = (sha256(device.slot_a), sha256(device.slot_b), device.bootenv.read_bytes(),
             device.bootenv.stat().st_mtime_ns)
    assert after == before


def test_installer_records_the_update_and_rauc_writes_the_slot(
        tmp_path: Path, device: RaucDevice, keys: dict[str, object], rootfs: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The path ocgate-update and the web UI share: check, record, install, progress."""
    from appliance.update import installer
    from appliance.update.history import History

    for name in ("DBUS_SESSION_BUS_ADDRESS", "DBUS_STARTER_BUS_TYPE"):
        monkeypatch.setenv(name, device.env[name])
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("root=PARTUUID=4f434741-02 rauc.slot=A quiet\n")
    history = History(tmp_path / "state/update")
    steps: list[tuple[int, str]] = []
    info = installer.install(bundle(tmp_path, rootfs, keys["ours"], fmt="plain"), history,
                             progress=lambda p, m: steps.append((p, m)),
                             cmdline=cmdline, conf=device.conf)
    assert info.version == "2.0" and "signer" in info.signer
    pending = history.pending()
    assert pending is not None and pending.slot == "B" and pending.version == "2.0"
    assert steps and steps[-1][0] == 100 and any("Copying image" in m for _, m in steps)
    assert BootEnv.parse(device.bootenv.read_text()).primary() == "B"

    foreign = bundle(tmp_path, rootfs, keys["theirs"], fmt="verity", name="f.raucb")
    history.abandon()
    before = sha256(device.slot_b)
    with pytest.raises(installer.rauc.RaucError, match="signature"):
        installer.install(foreign, history, cmdline=cmdline, conf=device.conf)
    assert history.pending() is None and sha256(device.slot_b) == before

    cmdline.write_text("root=PARTUUID=4f434741-02 quiet\n")  # booted without boot.scr
    with pytest.raises(installer.UpdateRefused):
        installer.install(foreign, history, cmdline=cmdline, conf=device.conf)


def test_bundle_hook_carries_identity_and_unit_links(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    wants = "etc/systemd/system/multi-user.target.wants"
    for root in (old, new):
        (root / wants).mkdir(parents=True)
        (root / "etc/ssh").mkdir(parents=True)
    (old / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (new / "etc/machine-id").write_text("uninitialized\n")
    (old / "etc/ssh/ssh_host_ed25519_key").write_text("key")
    unit = "/usr/lib/systemd/system/{}"
    # the wizard's hand-over on the old slot: webui enabled, wizard disabled
    for name in ("ocgate-vpn.service", "ocgate-webui.service", "systemd-networkd.service"):
        os.symlink(unit.format(name), old / wants / name)
    for name in ("ocgate-vpn.service", "ocgate-firstboot.service"):  # as the image has it
        os.symlink(unit.format(name), new / wants / name)
    env = dict(os.environ, RAUC_SLOT_MOUNT_POINT=str(new), RAUC_SLOT_CLASS="rootfs",
               RAUC_SLOT_BOOTNAME="B", OCGATE_HOOK_OLD_ROOT=str(old))
    done = subprocess.run(["sh", str(mk.BUNDLE_HOOK), "slot-post-install"], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (new / "etc/machine-id").read_text() == (old / "etc/machine-id").read_text()
    assert (new / "etc/ssh/ssh_host_ed25519_key").read_text() == "key"
    links = sorted(p.name for p in (new / wants).iterdir())
    assert links == ["ocgate-vpn.service", "ocgate-webui.service"]
    assert os.readlink(new / wants / "ocgate-webui.service") == unit.format(
        "ocgate-webui.service")
    other = subprocess.run(["sh", str(mk.BUNDLE_HOOK), "slot-pre-install"], env=env,
                           check=False)
    assert other.returncode == 0


def test_bundle_with_hook_lists_it(tmp_path: Path, keys: dict[str, object],
                                   rootfs: Path) -> None:
    made = mk.make_bundle(rootfs, tmp_path / "h.raucb", keys=keys["ours"], compat=COMPAT,
                          version="2.0", work=tmp_path / "w", hook=mk.BUNDLE_HOOK)
    conf = tmp_path / "system.conf"
    conf.write_text(mk.render_system_conf(
        COMPAT, slots={"A": "/dev/null", "B": "/dev/null"},
        keyring=str(keys["ours"].ca_cert),  # type: ignore[attr-defined]
        data_dir=str(tmp_path / "data"), backend="/bin/false"))
    shown = subprocess.run(["rauc", "-c", str(conf), "info", "--output-format=json",
                            str(made)], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert '"post-install"' in shown.stdout
