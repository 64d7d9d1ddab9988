#!/usr/bin/env python3
"""``make image``: the flashable OCGate disk image, built from Debian 12 packages.

Why this shape (measured on the 2-core build machines, see docs/image.md):

* The emulated Debian bootstrap is by far the slowest step (8-10 min for arm64 under
  qemu-user), so it is a *cached base*: a tarball keyed by a hash of everything that goes
  into it (suite, packages, hook scripts).  The project, its Python wheels and the overlay
  are layered on top of a fresh copy of that base by the host, natively, in seconds; editing
  a unit file never costs a new bootstrap.
* The project pins ``cryptography==50`` and friends; bookworm ships 38, which lacks APIs we
  use, so the image gets the pinned wheels from PyPI for the target platform (downloaded by
  the host's pip with ``--platform``; cached).  They go to /usr/local/lib/python3.11/
  dist-packages, which Debian's python3 searches first; no Debian python3-* libraries are
  installed, so nothing can shadow them.
* No loop devices (``losetup -P`` makes no partition nodes on these machines): file systems
  are made from directories (``mke2fs -d``, ``mkfs.vfat`` + ``mcopy``), the partition table
  by genimage.

* Updates are RAUC bundles (``make bundle``) of the same root file system ``make image``
  puts into slot A.  The build makes its signing key and certificate once, outside the
  source tree (``--keys``), and puts only the CA certificate into the image's keyring: a
  device installs what this build machine signed, nothing else.

Stages (each prints its duration): rootfs -> wheels -> assemble -> disk -> compress, or
rootfs -> wheels -> assemble -> bundle.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("mkimage")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OVERLAY = REPO / "buildroot-overlay" / "rootfs"
UNITS = REPO / "systemd"
CONSTRAINTS = HERE / "constraints.txt"  # the transitive dependencies, pinned
BOOT_SCRIPT = HERE / "boot" / "boot.cmd"  # U-Boot's A/B slot choice (QEMU virt)
BUNDLE_HOOK = HERE / "boot" / "bundle-hook.sh"  # carries /etc identity into the new slot
#: bootenv.txt of a fresh card (appliance/update/bootenv.py's format and defaults)
FRESH_BOOTENV = "BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n"

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
PYTHON_VERSION = "3.11"  # bookworm's python3; the wheels must match it
MiB = 1 << 20
#: MBR disk identifier: partition N of every OCGate card is PARTUUID=4f434741-0N ("OCGA"),
#: which the boot script and RAUC's slot list name (both root slots carry LABEL=rootfs).
DISK_SIGNATURE = 0x4F434741
#: where the image's update configuration lives (docs/image.md, "A/B updates")
RAUC_DIR = "etc/rauc"
RELEASE_FILE = "usr/lib/ocgate/release"


class BuildError(RuntimeError):
    """A build step failed; the message names the step and what to look at."""


@dataclass(frozen=True)
class Target:
    """Everything that differs between the arm64 (Raspberry Pi) and amd64 images."""

    arch: str
    kernel_package: str
    extra_packages: tuple[str, ...]
    pip_platforms: tuple[str, ...]
    console: str
    qemu_hint: str

    @property
    def is_pi(self) -> bool:
        return self.arch == "arm64"


TARGETS: dict[str, Target] = {
    "arm64": Target(
        arch="arm64",
        kernel_package="linux-image-arm64",
        extra_packages=("raspi-firmware",),
        # newest first: pip picks the first tag a wheel has; bookworm's glibc is 2.36
        pip_platforms=("manylinux_2_34_aarch64", "manylinux_2_28_aarch64",
                       "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64"),
        console="ttyAMA0",
        qemu_hint="qemu-system-aarch64 -M virt -cpu cortex-a53",
    ),
    "amd64": Target(
        arch="amd64",
        kernel_package="linux-image-amd64",
        extra_packages=(),  # QEMU boots the kernel directly; see docs/image.md
        pip_platforms=("manylinux_2_34_x86_64", "manylinux_2_28_x86_64",
                       "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"),
        console="ttyS0",
        qemu_hint="qemu-system-x86_64 -M q35",
    ),
}

#: Debian packages of the base system, for both architectures (plus Target.extra_packages).
BASE_PACKAGES: tuple[str, ...] = (
    "systemd", "systemd-sysv", "systemd-resolved", "systemd-timesyncd", "udev", "dbus",
    "kmod", "iproute2", "nftables", "openssh-server", "python3", "e2fsprogs", "fdisk",
    "dosfstools", "iputils-ping", "initramfs-tools", "ca-certificates", "less", "netbase",
    # A/B updates: RAUC checks and installs bundles; its D-Bus service runs on demand
    "rauc", "rauc-service",
)


@dataclass(frozen=True)
class Layout:
    """Partition layout of the disk image, shared with the Buildroot genimage.cfg.

    MBR, four primary partitions: the Pi firmware only reads MBR/FAT, and four is all MBR
    has without extended partitions.  rootfs-b is the reserved second slot for A/B updates
    (docs/image.md); data is last so first boot can grow it to the card's size.
    """

    boot_mib: int = 256
    root_mib: int = 1024
    data_mib: int = 64
    boot_offset_mib: int = 4

    def total_mib(self) -> int:
        return self.boot_offset_mib + self.boot_mib + 2 * self.root_mib + self.data_mib


def render_genimage_cfg(layout: Layout, *, image_name: str, boot: str, root: str,
                        data: str) -> str:
    """genimage configuration for the partitioned disk from three file system images."""
    return f"""\
# Generated by image/mkimage.py (partition layout: docs/image.md)
image {image_name} {{
    hdimage {{
        partition-table-type = "mbr"
        disk-signature = {DISK_SIGNATURE:#010x}
    }}
    partition boot {{
        partition-type = 0xC
        bootable = "true"
        offset = {layout.boot_offset_mib}M
        image = "{boot}"
        size = {layout.boot_mib}M
    }}
    partition rootfs-a {{
        partition-type = 0x83
        image = "{root}"
        size = {layout.root_mib}M
    }}
    partition rootfs-b {{
        partition-type = 0x83
        size = {layout.root_mib}M
    }}
    partition data {{
        partition-type = 0x83
        image = "{data}"
        size = {layout.data_mib}M
    }}
}}
"""


# --------------------------------------------------------------------------- updates


def partuuid(number: int) -> str:
    return f"{DISK_SIGNATURE:08x}-{number:02d}"


def slot_devices() -> dict[str, str]:
    """RAUC bootname -> block device of that root slot (partitions 2 and 3)."""
    return {"A": f"/dev/disk/by-partuuid/{partuuid(2)}",
            "B": f"/dev/disk/by-partuuid/{partuuid(3)}"}


def compatible(target: Target) -> str:
    """RAUC's compatible string: a bundle for another architecture is refused."""
    return f"ocgate-{target.arch}"


def render_system_conf(compat: str, *, slots: dict[str, str], keyring: str,
                       data_dir: str, backend: str) -> str:
    """/etc/rauc/system.conf: two ext4 root slots, our boot backend, our keyring only.

    ``check-purpose=codesign``: the signer certificate carries the code-signing extended
    key usage, so a TLS or mail certificate issued by the same CA could not sign a bundle.
    The status file goes to the data partition, which an update never writes.
    """
    lines = [
        "# Generated by image/mkimage.py (docs/image.md, A/B updates)",
        "[system]", f"compatible={compat}", "bootloader=custom",
        f"data-directory={data_dir}", "",
        "[handlers]", f"bootloader-custom-backend={backend}", "",
        "[keyring]", f"path={keyring}", "check-purpose=codesign", "",
    ]
    for index, (bootname, device) in enumerate(sorted(slots.items())):
        lines += [f"[slot.rootfs.{index}]", f"device={device}", "type=ext4",
                  f"bootname={bootname}", ""]
    return "\n".join(lines)


def render_manifest(compat: str, version: str, image: str, *, fmt: str = "verity",
                    hook: str | None = None) -> str:
    """manifest.raucm of a bundle with one image: the root file system.

    ``hook``: a script in the bundle RAUC runs after writing the slot (post-install).
    """
    text = (f"[update]\ncompatible={compat}\nversion={version}\n\n"
            f"[bundle]\nformat={fmt}\n\n")
    if hook:
        text += f"[hooks]\nfilename={hook}\n\n"
    text += f"[image.rootfs]\nfilename={image}\n"
    if hook:
        text += "hooks=post-install\n"
    return text


@dataclass(frozen=True)
class SigningKeys:
    """The update CA (its certificate is the devices' keyring) and the signer it issued."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca-cert.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "signer-cert.pem"

    @property
    def key(self) -> Path:
        return self.folder / "signer-key.pem"

    def complete(self) -> bool:
        return all(p.exists() for p in (self.ca_cert, self.ca_key, self.cert, self.key))


def ensure_signing_keys(folder: Path, *, name: str = "OCGate updates") -> SigningKeys:
    """Make the CA and signer once; later builds reuse them (devices trust only the CA).

    Losing this folder means devices in the field accept no further bundle, so it lives
    outside the source tree and outside ``build/`` (``make clean`` must not delete it).
    """
    keys = SigningKeys(folder)
    if keys.complete():
        return keys
    if any(p.exists() for p in (keys.ca_cert, keys.ca_key)):
        raise BuildError(f"{folder} holds part of a signing CA; complete or remove it")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-keyout", keys.ca_key, "-out", keys.ca_cert,
         "-days", "7300", "-subj", f"/O={name}/CN={name} CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], quiet=True)
    csr = folder / "signer.csr"
    run(["openssl", "req", "-new", *ec, "-keyout", keys.key, "-out", csr,
         "-subj", f"/O={name}/CN={name} signer"], quiet=True)
    ext = folder / "signer.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=codeSigning\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", keys.ca_cert, "-CAkey", keys.ca_key,
         "-CAcreateserial", "-days", "3650", "-extfile", ext, "-out", keys.cert], quiet=True)
    for path in (csr, ext):
        path.unlink()
    for path in (keys.ca_key, keys.key):
        os.chmod(path, 0o600)
    return keys


def install_update_config(root: Path, target: Target, keys: SigningKeys,
                          release: str) -> None:
    """What a slot needs to take updates: RAUC's system.conf, the keyring, its release."""
    rauc = root / RAUC_DIR
    rauc.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(keys.ca_cert, rauc / "keyring.pem")
    (rauc / "system.conf").write_text(render_system_conf(
        compatible(target), slots=slot_devices(), keyring=f"/{RAUC_DIR}/keyring.pem",
        data_dir="/var/lib/ocgate/rauc", backend="/usr/local/bin/ocgate-bootchooser"))
    for name in ("keyring.pem", "system.conf"):
        os.chmod(rauc / name, 0o644)
    (root / RELEASE_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / RELEASE_FILE).write_text(release + "\n")


def install_boot_selection(root: Path, target: Target) -> None:
    """Boot the slot bootenv.txt chooses, by PARTUUID (both slots are LABEL=rootfs).

    arm64: U-Boot's boot.scr (compiled from image/boot/boot.cmd) and a fresh bootenv.txt
    on the FAT partition; the script loads ``/boot/vmlinuz`` and ``/boot/initrd.img``
    from the chosen slot, so every slot boots its own kernel.  The Pi firmware's
    cmdline.txt names slot A by PARTUUID (the Pi boots without U-Boot: no A/B switch
    there yet, docs/image.md).
    """
    boot = root / "boot"
    for link, pattern in (("vmlinuz", "vmlinuz-*"), ("initrd.img", "initrd.img-*")):
        found = sorted(boot.glob(pattern))
        if found:
            if (boot / link).is_symlink() or (boot / link).exists():
                (boot / link).unlink()
            os.symlink(found[-1].name, boot / link)
    slot_a = f"root=PARTUUID={partuuid(2)}"
    for path in (boot / "firmware/cmdline.txt", root / "etc/default/raspi-firmware"):
        if path.exists():
            text = path.read_text().replace("root=LABEL=rootfs", slot_a)
            path.write_text(text.replace("ROOTPART=LABEL=rootfs",
                                         f"ROOTPART=PARTUUID={partuuid(2)}"))
    if target.arch != "arm64":
        return
    firmware = boot / "firmware"
    firmware.mkdir(parents=True, exist_ok=True)
    run(["mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none",
         "-n", "ocgate A/B", "-d", BOOT_SCRIPT, firmware / "boot.scr"], quiet=True)
    (firmware / "bootenv.txt").write_text(FRESH_BOOTENV)


def make_bundle(rootfs_image: Path, bundle: Path, *, keys: SigningKeys, compat: str,
                version: str, work: Path, fmt: str = "verity",
                hook: Path | None = None) -> Path:
    """``rauc bundle`` of one root file system image, signed with ``keys``."""
    content = work / "bundle-content"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir(parents=True)
    os.link(rootfs_image, content / "rootfs.ext4")
    if hook is not None:
        shutil.copyfile(hook, content / "hook.sh")
        os.chmod(content / "hook.sh", 0o755)
    (content / "manifest.raucm").write_text(render_manifest(
        compat, version, "rootfs.ext4", fmt=fmt, hook="hook.sh" if hook else None))
    if bundle.exists():
        bundle.unlink()
    bundle.parent.mkdir(parents=True, exist_ok=True)
    # the signature is checked right away, with the devices' purpose rule (codesign)
    conf = work / "bundle-check.conf"
    conf.write_text(f"[system]\ncompatible={compat}\nbootloader=noop\n\n"
                    f"[keyring]\npath={keys.ca_cert}\ncheck-purpose=codesign\n")
    run(["rauc", "-c", conf, "bundle", "--cert", keys.cert, "--key", keys.key,
         "--signing-keyring", keys.ca_cert, content, bundle], quiet=True)
    shutil.rmtree(content)
    conf.unlink()
    return bundle


def default_keys_dir() -> Path:
    """Outside the tree: $OCGATE_IMAGE_KEYS, else ~/.local/share/ocgate/image-signing."""
    env = os.environ.get("OCGATE_IMAGE_KEYS")
    return Path(env) if env else Path.home() / ".local/share/ocgate/image-signing"


def project_version() -> str:
    import tomllib

    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


# --------------------------------------------------------------------------- trimming

#: Kernel module folders (under lib/modules/VERSION/kernel) no Pi or QEMU ``virt`` box
#: uses; the cached base's customize hook already dropped the biggest ones.  Removed on
#: the host after the base is unpacked, so a change here never costs a new bootstrap.
DEAD_MODULE_DIRS: tuple[str, ...] = (
    "drivers/target", "drivers/net/can", "drivers/ata", "drivers/mtd", "drivers/ufs",
    "drivers/gpu/host1x", "drivers/net/fddi", "drivers/net/hamradio", "drivers/net/arcnet",
    "drivers/net/wan", "drivers/net/ieee802154", "net/ieee802154", "net/6lowpan",
    "net/mac802154", "drivers/hwmon/pmbus", "fs/ntfs3", "fs/hfsplus", "fs/hfs",
    "fs/udf", "fs/reiserfs", "fs/erofs", "fs/orangefs", "fs/coda", "fs/afs",
    "fs/nfsd", "fs/dlm", "fs/cifs", "fs/9p", "net/9p", "net/ceph", "net/rds",
    "net/sunrpc", "net/tipc", "net/sctp", "net/dccp", "net/rxrpc", "net/nfc",
    "drivers/nfc", "net/mac80211_hwsim",
    # users of the folders above (modules.dep): NFS helpers, MTD file systems, Xen,
    # Ceph's block device, the cluster MD, SCSI over vhost, TTM-based DRM helpers
    "fs/nfs_common", "fs/lockd", "fs/jffs2", "fs/romfs", "drivers/xen",
    "drivers/block/rbd.ko", "drivers/net/dsa/ocelot", "drivers/ptp/ptp_ocp.ko",
    "drivers/md/md-cluster.ko", "drivers/vhost/vhost_scsi.ko",
    "drivers/gpu/drm/drm_vram_helper.ko", "drivers/gpu/drm/drm_ttm_helper.ko",
)
#: In folders where only a few drivers fit the hardware: keep these, drop the rest.
#: Ethernet: the Pi 4's GENET (broadcom), PCIe NICs a CM4 carrier board may have; USB
#: adapters (drivers/net/usb) and virtio_net live elsewhere and stay.  Wi-Fi: the Pi's
#: own chip.  DRM: the Pi's vc4 and the helpers it needs.
KEEP_ONLY_MODULE_DIRS: dict[str, tuple[str, ...]] = {
    "drivers/net/ethernet": ("broadcom", "realtek", "intel", "microchip", "smsc"),
    "drivers/net/wireless": ("broadcom",),
    "drivers/gpu/drm": ("vc4", "display", "bridge", "panel"),  # headless: no v3d
    "drivers/scsi": (),  # subfolders are host adapters; sd_mod, scsi_mod sit on top
}
#: Babel's CLDR data: the root locale and the web UI's languages (appliance/web/i18n.py)
#: are all the UI can ask for; the other ~800 locales are 30 MiB.
UI_LOCALES: tuple[str, ...] = ("root", "en", "de", "es", "fr", "fa", "zh", "zh_Hans", "ru",
                               "tr")
#: Files and folders nothing on the device reads, relative to the root.
DEAD_PATHS: tuple[str, ...] = (
    # copies of /boot/firmware; only raspi-firmware's hooks read them, on an apt upgrade
    "usr/lib/raspi-firmware",
    # hwdb.bin is what udev reads; the sources only feed `systemd-hwdb update`, which
    # Debian runs from udev's postinst (there is no systemd-hwdb-update.service)
    "usr/lib/udev/hwdb.d",
    # the full perl (perl, perl-modules, libperl) came in only for usrmerge at bootstrap;
    # perl-base, which debconf and dpkg's scripts use, stays
    "usr/lib/{triplet}/perl/5.36.0", "usr/lib/{triplet}/perl/5.36",
    "usr/share/perl/5.36.0", "usr/share/perl/5.36",
    "usr/lib/{triplet}/libperl.so.5.36", "usr/lib/{triplet}/libperl.so.5.36.0",
    # MAC vendor registries of netaddr (a dependency's; OCGate never looks a MAC up)
    "usr/local/lib/python3.11/dist-packages/netaddr/eui/oui.txt",
    "usr/local/lib/python3.11/dist-packages/netaddr/eui/iab.txt",
    "var/cache/apt", "var/lib/apt/lists", "var/log/apt", "var/cache/debconf/templates.dat-old",
)
TRIPLETS = {"arm64": "aarch64-linux-gnu", "amd64": "x86_64-linux-gnu"}
#: glibc's iconv modules: Python has its own codecs; keep the Unicode ones for C callers.
KEEP_GCONV = ("gconv-modules", "gconv-modules.d", "gconv-modules.cache", "UNICODE.so",
              "UTF-16.so", "UTF-32.so", "UTF-7.so", "ISO8859-1.so", "ISO8859-15.so")


def _remove(path: Path) -> int:
    """Delete a file or tree; returns the bytes it held (0 if it was not there)."""
    if path.is_symlink() or path.is_file():
        size = path.lstat().st_size
        path.unlink()
        return size
    if path.is_dir():
        size = tree_size(path)
        shutil.rmtree(path)
        return size
    return 0


def trim_root(root: Path, target: Target) -> dict[str, int]:
    """Delete what the appliance never reads; returns bytes removed per kind.

    Everything here is also on the Debian mirror, so a developer who needs it on a
    device can still install it; the image only stops carrying it by default.
    """
    freed = {"modules": 0, "dtbs": 0, "locales": 0, "gconv": 0, "other": 0}
    for kdir in sorted((root / "usr/lib/modules").glob("*")):
        kernel = kdir / "kernel"
        if not kernel.is_dir():
            continue
        for rel in DEAD_MODULE_DIRS:
            freed["modules"] += _remove(kernel / rel)
        for rel, keep in KEEP_ONLY_MODULE_DIRS.items():
            folder = kernel / rel
            if folder.is_dir():
                for entry in folder.iterdir():
                    if entry.is_dir() and entry.name not in keep:
                        freed["modules"] += _remove(entry)
        for test_module in (kernel / "lib").glob("test_*.ko*"):
            freed["modules"] += _remove(test_module)
        broken = orphaned_modules(kdir)
        if broken:
            raise BuildError(f"trimming kernel modules broke {len(broken)} that stay, e.g. "
                             f"{broken[0]}: keep what they need (DEAD_MODULE_DIRS)")
        if target.arch != host_arch():
            ensure_binfmt(target.arch)
        run(["chroot", root, "depmod", "-a", kdir.name], quiet=True)
    # device trees: QEMU virt makes its own; a Pi reads the broadcom ones from FAT
    for dtbs in root.glob("usr/lib/linux-image-*"):
        for vendor in dtbs.iterdir():
            if vendor.name != "broadcom":
                freed["dtbs"] += _remove(vendor)
    cldr = root / f"usr/local/lib/python{PYTHON_VERSION}/dist-packages/babel/locale-data"
    if cldr.is_dir():
        for data in cldr.glob("*.dat"):
            if data.stem not in UI_LOCALES:
                freed["locales"] += _remove(data)
    triplet = TRIPLETS[target.arch]
    gconv = root / f"usr/lib/{triplet}/gconv"
    if gconv.is_dir():
        for entry in gconv.iterdir():
            if entry.name not in KEEP_GCONV:
                freed["gconv"] += _remove(entry)
    for rel in DEAD_PATHS:
        freed["other"] += _remove(root / rel.format(triplet=triplet))
    return freed


def orphaned_modules(kdir: Path) -> list[str]:
    """Modules still present whose dependencies (by the base's modules.dep) are gone."""
    dep_file = kdir / "modules.dep"
    if not dep_file.exists():
        return []
    broken = []
    for line in dep_file.read_text().splitlines():
        module, _, deps = line.partition(":")
        if (kdir / module).exists() and not all((kdir / d).exists() for d in deps.split()):
            broken.append(module)
    return broken


# --------------------------------------------------------------------------- helpers


@dataclass
class Progress:
    """Step timings, printed as they happen and written to timings.json at the end."""

    started: float = field(default_factory=time.monotonic)
    steps: list[tuple[str, float]] = field(default_factory=list)

    def step(self, name: str) -> _Step:
        return _Step(self, name)

    def as_dict(self) -> dict[str, float]:
        out = {name: round(seconds, 1) for name, seconds in self.steps}
        out["total"] = round(time.monotonic() - self.started, 1)
        return out


class _Step:
    def __init__(self, progress: Progress, name: str) -> None:
        self.progress = progress
        self.name = name
        self.t0 = 0.0

    def __enter__(self) -> _Step:
        self.t0 = time.monotonic()
        elapsed = self.t0 - self.progress.started
        print(f"==> [{elapsed:6.0f}s] {self.name}", flush=True)
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        seconds = time.monotonic() - self.t0
        self.progress.steps.append((self.name, seconds))
        verdict = "failed" if exc_type else "done"
        print(f"    {self.name}: {verdict} in {seconds:.1f}s", flush=True)


def run(argv: Sequence[str | Path], *, cwd: Path | None = None,
        env: dict[str, str] | None = None, quiet: bool = False) -> None:
    """Run a command; on failure raise with its last output lines (the log has the rest)."""
    args = [str(a) for a in argv]
    log.debug("$ %s", shlex.join(args))
    proc = subprocess.run(args, cwd=cwd, env=env, text=True, check=False,
                          stdout=subprocess.PIPE if quiet else None,
                          stderr=subprocess.STDOUT if quiet else None)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-20:])
        raise BuildError(f"{args[0]} failed (exit {proc.returncode}): {shlex.join(args)}"
                         + (f"\n{tail}" if tail else ""))


def digest(parts: Iterable[str | bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def round_up_mib(nbytes: int, step_mib: int = 64) -> int:
    """Size in MiB, rounded up to ``step_mib`` (file systems and partitions stay aligned)."""
    mib = -(-nbytes // MiB)
    return -(-mib // step_mib) * step_mib


def tree_size(root: Path) -> int:
    """Bytes used by the files under ``root`` (apparent sizes, each rounded to 4 KiB)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        total += 4096 * (1 + len(dirnames))
        for name in filenames:
            try:
                size = os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
            total += -(-size // 4096) * 4096
    return total


def pinned_requirements(pyproject: Path) -> list[str]:
    """The runtime dependencies exactly as pyproject.toml pins them."""
    import tomllib

    data = tomllib.loads(pyproject.read_text())
    deps = list(data["project"]["dependencies"])
    loose = [d for d in deps if "==" not in d]
    if loose:
        raise BuildError(f"unpinned dependencies in {pyproject}: {loose}")
    return deps


# --------------------------------------------------------------------------- stages


@dataclass
class Build:
    target: Target
    cache: Path
    out: Path
    work: Path
    layout: Layout = field(default_factory=Layout)
    progress: Progress = field(default_factory=Progress)
    compress: str = "xz"
    keys: SigningKeys | None = None
    release: str = "0"

    # ---- stage 1: the Debian base (emulated, cached)
    def packages(self) -> list[str]:
        return sorted({*BASE_PACKAGES, self.target.kernel_package,
                       *self.target.extra_packages})

    def rootfs_key(self) -> str:
        hooks = sorted((HERE / "hooks").iterdir())
        return digest([SUITE, MIRROR, self.target.arch, *self.packages(),
                       *(p.read_bytes() for p in hooks)])

    def rootfs_tar(self) -> Path:
        return self.cache / f"rootfs-{self.target.arch}-{self.rootfs_key()}.tar"

    def mmdebstrap_argv(self, output: Path, apt_cache: Path) -> list[str]:
        hooks = HERE / "hooks"
        sources = [
            f"deb {MIRROR} {SUITE} main non-free-firmware",
            f"deb {MIRROR} {SUITE}-updates main non-free-firmware",
            f"deb {SECURITY_MIRROR} {SUITE}-security main non-free-firmware",
        ]
        return [
            "mmdebstrap", "--mode=root", "--variant=apt",
            f"--architectures={self.target.arch}",
            "--components=main,non-free-firmware",
            f"--include={','.join(self.packages())}",
            "--aptopt=APT::Install-Recommends \"false\"",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            # downloads survive between runs (mmdebstrap's documented sync-in/out recipe)
            "--skip=essential/unlink",
            "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
            f"--setup-hook=sync-in {apt_cache} /var/cache/apt/archives/",
            f"--essential-hook={hooks / 'essential.sh'} \"$1\"",
            f"--customize-hook=sync-out /var/cache/apt/archives {apt_cache}",
            f"--customize-hook={hooks / 'customize.sh'} \"$1\" {self.target.arch}",
            "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
            SUITE, str(output), *sources,
        ]

    def stage_rootfs(self) -> Path:
        tar = self.rootfs_tar()
        if tar.exists():
            print(f"    cached base: {tar.name}", flush=True)
            return tar
        if self.target.arch != host_arch():
            ensure_binfmt(self.target.arch)
        apt_cache = self.cache / f"apt-{self.target.arch}"
        apt_cache.mkdir(parents=True, exist_ok=True)
        partial = tar.with_suffix(".partial.tar")
        run(self.mmdebstrap_argv(partial, apt_cache))
        partial.rename(tar)
        for old in self.cache.glob(f"rootfs-{self.target.arch}-*.tar"):
            if old != tar:
                old.unlink()
        return tar

    # ---- stage 2: pinned Python wheels for the target (cached)
    def wheel_dir(self) -> Path:
        reqs = pinned_requirements(REPO / "pyproject.toml")
        return self.cache / f"wheels-{self.target.arch}-{digest([*reqs, CONSTRAINTS.read_text()])}"

    def pip_download_argv(self, dest: Path, requirements: list[str]) -> list[str]:
        argv = [sys.executable, "-m", "pip", "download", "--quiet",
                "--disable-pip-version-check", "--only-binary=:all:",
                "--python-version", PYTHON_VERSION, "--implementation", "cp",
                "--abi", "cp" + PYTHON_VERSION.replace(".", ""), "--abi", "abi3",
                "--abi", "none", "-d", str(dest)]
        for platform in self.target.pip_platforms:
            argv += ["--platform", platform]
        return argv + ["--platform", "any", "-c", str(CONSTRAINTS), *requirements]

    def stage_wheels(self) -> Path:
        dest = self.wheel_dir()
        if (dest / ".complete").exists():
            print(f"    cached wheels: {dest.name}", flush=True)
            return dest
        dest.mkdir(parents=True, exist_ok=True)
        run(self.pip_download_argv(dest, pinned_requirements(REPO / "pyproject.toml")),
            quiet=True)
        (dest / ".complete").write_text("\n".join(sorted(p.name for p in dest.glob("*.whl"))))
        for old in self.cache.glob(f"wheels-{self.target.arch}-*"):
            if old != dest:
                shutil.rmtree(old)
        return dest

    # ---- stage 3: base + project + overlay, natively on the host
    def root(self) -> Path:
        return self.work / "root"

    def stage_assemble(self, base: Path, wheels: Path) -> None:
        root = self.root()
        if self.work.exists():
            shutil.rmtree(self.work)
        root.mkdir(parents=True)
        run(["tar", "--numeric-owner", "-xpf", base, "-C", root])
        self.install_python(root, wheels)
        freed = trim_root(root, self.target)
        print("    trimmed: " + ", ".join(f"{k} {v / MiB:.1f} MiB" for k, v in freed.items()),
              flush=True)
        apply_overlay(root, OVERLAY, UNITS)
        configure_root(root, self.target)
        if self.keys is None:
            raise BuildError("no signing keys: the image must trust an update keyring")
        install_update_config(root, self.target, self.keys, self.release)
        install_boot_selection(root, self.target)

    def install_python(self, root: Path, wheels: Path) -> None:
        site = root / "usr/local/lib" / f"python{PYTHON_VERSION}" / "dist-packages"
        site.mkdir(parents=True, exist_ok=True)
        project = self.work / "project-wheel"
        # the .mo files are not in git: compile them into the tree the wheel is made from
        run([sys.executable, "-m", "appliance.web.catalogs", "compile"], cwd=REPO,
            quiet=True)
        # a pure wheel: the native data path (setup.py) compiled here would be the host's
        # architecture; the device runs the pure-Python path (appliance/vpn/native)
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
             "--no-deps", "-w", project, REPO], quiet=True,
            env=dict(os.environ, OCGATE_NATIVE_BUILD="0"))
        argv = [sys.executable, "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", "--no-index", "--find-links", str(wheels),
                "--find-links", str(project), "--only-binary=:all:",
                "--python-version", PYTHON_VERSION, "--implementation", "cp",
                "--abi", "cp" + PYTHON_VERSION.replace(".", ""), "--abi", "abi3",
                "--abi", "none", "--no-compile", "--target", str(site), "-c", str(CONSTRAINTS)]
        for platform in self.target.pip_platforms:
            argv += ["--platform", platform]
        run(argv + ["--platform", "any", "ocgate"])
        missing = copy_package_data(REPO / "appliance", site / "appliance")
        if missing:
            # the wheel lacks templates/static files (no package-data in pyproject.toml)
            log.warning("the ocgate wheel lacks %d data files (e.g. %s); copied them from "
                        "the source tree", len(missing), missing[0])
        # bytecode made now, not on the device's first start (slow on a Pi, and / may
        # be read-only later); same magic number: host and device are both CPython 3.11
        run([sys.executable, "-m", "compileall", "-q", "-j", "0",
             "--invalidation-mode", "unchecked-hash", "-s", str(root), "-p", "/", site],
            quiet=True)
        # console scripts point at the host's interpreter: rewrite them for the device
        bindir = site / "bin"
        if bindir.is_dir():
            dest = root / "usr/local/bin"
            dest.mkdir(parents=True, exist_ok=True)
            for script in bindir.iterdir():
                lines = script.read_text().splitlines(keepends=True)
                if lines and lines[0].startswith("#!"):
                    lines[0] = "#!/usr/bin/python3\n"
                (dest / script.name).write_text("".join(lines))
                (dest / script.name).chmod(0o755)
            shutil.rmtree(bindir)

    # ---- stage 4: file systems and the partitioned disk
    def stage_disk(self) -> Path:
        root = self.root()
        parts = self.work / "parts"
        parts.mkdir(exist_ok=True)
        boot_src = root / "boot" / "firmware"
        data_src = root / "var" / "lib" / "ocgate"
        boot_img = parts / "boot.vfat"
        make_vfat(boot_img, boot_src, self.layout.boot_mib, label="BOOT")
        data_img = parts / "data.ext4"
        make_ext4(data_img, data_src, self.layout.data_mib, label="data")
        self.make_rootfs_image(parts / "rootfs.ext4")
        self.out.mkdir(parents=True, exist_ok=True)
        name = f"ocgate-{self.target.arch}.img"
        cfg = self.work / "genimage.cfg"
        cfg.write_text(render_genimage_cfg(self.layout, image_name=name, boot="boot.vfat",
                                           root="rootfs.ext4", data="data.ext4"))
        run_genimage(cfg, inputpath=parts, outputpath=self.out, work=self.work)
        self.export_kernel(root)
        return self.out / name

    def make_rootfs_image(self, image: Path) -> None:
        """The root slot's ext4, without the boot and data partitions' contents.

        A slot is ``Layout.root_mib`` on every card already flashed, so the file system
        must fit it; a bundle whose root no longer fits is refused here, not on the device.
        """
        root = self.root()
        with _emptied(root / "boot" / "firmware"), _emptied(root / "var" / "lib" / "ocgate"):
            used = tree_size(root)
            root_mib = round_up_mib(int(used * 1.25) + 96 * MiB)
            if root_mib > self.layout.root_mib:
                raise BuildError(f"the root file system needs {root_mib} MiB, a slot has "
                                 f"{self.layout.root_mib} MiB (Layout.root_mib)")
            image.parent.mkdir(parents=True, exist_ok=True)
            make_ext4(image, root, self.layout.root_mib, label="rootfs")

    def stage_bundle(self) -> Path:
        """The RAUC bundle of this build's root file system (``make bundle``)."""
        assert self.keys is not None
        image = self.work / "parts" / "rootfs.ext4"
        self.make_rootfs_image(image)
        name = f"ocgate-{self.target.arch}-{self.release}.raucb"
        return make_bundle(image, self.out / name, keys=self.keys,
                           compat=compatible(self.target), version=self.release,
                           work=self.work, hook=BUNDLE_HOOK)

    def export_kernel(self, root: Path) -> None:
        """Kernel and initrd beside the image: QEMU boots them directly (-kernel/-initrd)."""
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise BuildError(f"no kernel/initrd in {root / 'boot'}")
        shutil.copyfile(kernels[-1], self.out / f"vmlinuz-{self.target.arch}")
        shutil.copyfile(initrds[-1], self.out / f"initrd-{self.target.arch}.img")

    # ---- stage 5: compress + checksums
    def stage_compress(self, image: Path) -> Path:
        if self.compress == "zstd":
            packed = image.with_name(image.name + ".zst")
            run(["zstd", "-q", "-f", "-T0", "-3", image, "-o", packed])
        else:
            packed = image.with_name(image.name + ".xz")
            run(["xz", "-f", "-k", "-T0", "-6", image])
        files = [image, packed, self.out / f"vmlinuz-{self.target.arch}",
                 self.out / f"initrd-{self.target.arch}.img"]
        write_sha256sums(self.out / "SHA256SUMS", files)
        return packed

    def run_all(self, stages: set[str]) -> dict[str, object]:
        how = "emulated" if self.target.arch != host_arch() else "native"
        with self.progress.step(f"rootfs ({self.target.arch}, {how}, cached)"):
            base = self.stage_rootfs()
        if stages == {"rootfs"}:
            return {"rootfs": str(base)}
        with self.progress.step("wheels (pinned, from PyPI, cached)"):
            wheels = self.stage_wheels()
        with self.progress.step("assemble (project + overlay)"):
            self.stage_assemble(base, wheels)
        if "bundle" in stages:
            with self.progress.step("bundle (rauc, signed)"):
                bundle = self.stage_bundle()
            info: dict[str, object] = {"bundle": str(bundle), "release": self.release,
                                       "bundle_bytes": bundle.stat().st_size,
                                       "timings": self.progress.as_dict()}
            (self.out / f"bundle-{self.target.arch}.json").write_text(json.dumps(info,
                                                                                 indent=1))
            return info
        with self.progress.step("disk (mkfs + genimage)"):
            image = self.stage_disk()
        result: dict[str, object] = {"image": str(image), "raw_bytes": image.stat().st_size,
                                     "layout": self.layout.__dict__}
        if "compress" in stages:
            with self.progress.step(f"compress ({self.compress})"):
                packed = self.stage_compress(image)
            result["packed"] = str(packed)
            result["packed_bytes"] = packed.stat().st_size
        result["timings"] = self.progress.as_dict()
        (self.out / f"build-{self.target.arch}.json").write_text(json.dumps(result, indent=1))
        return result


# --------------------------------------------------------------------------- pieces


def host_arch() -> str:
    out = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() or "amd64"


def copy_package_data(src: Path, dest: Path) -> list[str]:
    """Copy files of the source package that the installed one lacks; returns their names.

    Only files that are missing are copied, so a complete wheel makes this a no-op.
    """
    missing = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
            continue
        target = dest / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            os.chmod(target, 0o644)
            missing.append(str(rel))
    return missing


def ensure_binfmt(arch: str) -> None:
    """qemu-user for the foreign chroot: binfmt_misc is not mounted when PID 1 is not systemd."""
    qemu = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}[arch]
    mnt = Path("/proc/sys/fs/binfmt_misc")
    if not (mnt / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", mnt])
    if not (mnt / qemu).exists():
        run(["update-binfmts", "--enable", qemu])
    if not (mnt / qemu).exists():
        raise BuildError(f"{qemu} is not registered with binfmt_misc "
                         "(apt-get install qemu-user-static binfmt-support)")


def overlay_mode(path: Path) -> int:
    """0755 for executables, 0644 for the rest: git keeps only the x bit, and the
    checkout's umask must not decide the modes on the device."""
    return 0o755 if path.stat().st_mode & 0o111 else 0o644


def apply_overlay(root: Path, overlay: Path, units: Path) -> None:
    """Copy the overlay (owner root, modes by :func:`overlay_mode`) and the unit files."""
    for src in sorted(overlay.rglob("*")):
        rel = src.relative_to(overlay)
        dst = root / rel
        if src.is_symlink():
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            os.chmod(dst, 0o755)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, overlay_mode(src))
        os.lchown(dst, 0, 0)
    system = root / "usr/lib/systemd/system"
    for unit in sorted(units.iterdir()):
        if unit.suffix in (".service", ".target", ".socket", ".timer", ".path"):
            shutil.copyfile(unit, system / unit.name)
            os.chmod(system / unit.name, 0o644)
    for name, dest in (("ocgate-sysctl.conf", "usr/lib/sysctl.d/60-ocgate.conf"),
                       ("ocgate.nft", "etc/nftables.conf")):
        if (units / name).exists():
            (root / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(units / name, root / dest)
            os.chmod(root / dest, 0o755 if name.endswith(".nft") else 0o644)


#: Debian units enabled by their packages that the appliance does without (80-ocgate.preset
#: has a disable rule for each, so the first boot's presets do not enable them again).
UNWANTED_LINKS: tuple[str, ...] = (
    "timers.target.wants/apt-daily.timer", "timers.target.wants/apt-daily-upgrade.timer",
    "timers.target.wants/dpkg-db-backup.timer", "timers.target.wants/e2scrub_all.timer",
    "multi-user.target.wants/e2scrub_reap.service",
)


def configure_root(root: Path, target: Target) -> None:
    """Per-device identity is made at first boot, never baked into the image."""
    for link in UNWANTED_LINKS:
        path = root / "etc/systemd/system" / link
        if path.is_symlink():
            path.unlink()
    # machine-id: "uninitialized" => systemd treats the next boot as the first one
    (root / "etc/machine-id").write_text("uninitialized\n")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()  # a copy made at build time would be shared by every device
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/hostname").write_text("ocgate\n")
    hosts = "127.0.0.1\tlocalhost\n127.0.1.1\tocgate\n::1\tlocalhost ip6-localhost\n"
    (root / "etc/hosts").write_text(hosts)
    resolv = root / "etc/resolv.conf"
    if resolv.exists() or resolv.is_symlink():
        resolv.unlink()
    os.symlink("../run/systemd/resolve/stub-resolv.conf", resolv)
    for folder in ("var/lib/ocgate", "var/lib/ocgate/run", "boot/firmware"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(root / folder, 0o755)


class _emptied:
    """Move a directory's contents aside for a while (they live on another partition)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.aside = path.with_name(path.name + ".aside")

    def __enter__(self) -> None:
        if self.path.is_dir():
            self.path.rename(self.aside)
            self.path.mkdir()
            shutil.copystat(self.aside, self.path)

    def __exit__(self, *_: object) -> None:
        if self.aside.exists():
            self.path.rmdir()
            self.aside.rename(self.path)


def make_ext4(image: Path, source: Path, size_mib: int, *, label: str) -> None:
    if image.exists():
        image.unlink()
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-d", source,
         "-E", "root_owner=0:0", image, f"{size_mib}M"])


def make_vfat(image: Path, source: Path, size_mib: int, *, label: str) -> None:
    if image.exists():
        image.unlink()
    with open(image, "wb") as fh:
        fh.truncate(size_mib * MiB)
    run(["mkfs.vfat", "-F", "32", "-n", label, image], quiet=True)
    entries = sorted(source.iterdir()) if source.is_dir() else []
    if entries:
        run(["mcopy", "-s", "-p", "-Q", "-i", image, *entries, "::"])


def run_genimage(cfg: Path, *, inputpath: Path, outputpath: Path, work: Path) -> None:
    tmp = work / "genimage.tmp"
    emptyroot = work / "genimage.root"
    shutil.rmtree(tmp, ignore_errors=True)
    emptyroot.mkdir(exist_ok=True)
    run(["genimage", "--config", cfg, "--inputpath", inputpath, "--outputpath", outputpath,
         "--tmppath", tmp, "--rootpath", emptyroot], quiet=True)


def write_sha256sums(path: Path, files: Iterable[Path]) -> None:
    lines = []
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        lines.append(f"{h.hexdigest()}  {f.name}\n")
    path.write_text("".join(lines))


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Build the OCGate disk image (Debian 12).")
    p.add_argument("--arch", choices=sorted(TARGETS), default="arm64")
    p.add_argument("--cache", type=Path, default=REPO / "build" / "cache",
                   help="downloads and the emulated base rootfs, kept between runs")
    p.add_argument("--out", type=Path, default=REPO / "build" / "image")
    p.add_argument("--work", type=Path, default=None, help="scratch (default OUT/work-ARCH)")
    p.add_argument("--stage", choices=["rootfs", "raw", "all", "bundle"], default="all",
                   help="stop after the base rootfs, after the raw image, do everything, "
                        "or make the signed update bundle instead of the disk image")
    p.add_argument("--keys", type=Path, default=None,
                   help="update signing CA and key, made on first use and kept outside "
                        "the tree (default: $OCGATE_IMAGE_KEYS or "
                        "~/.local/share/ocgate/image-signing)")
    p.add_argument("--release", default=None,
                   help="release version in the image and the bundle (default: "
                        "pyproject.toml's version)")
    p.add_argument("--compress", choices=["xz", "zstd"], default="xz")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(name)s: %(message)s")
    if os.geteuid() != 0:
        print("mkimage: run as root (file ownership in the image, binfmt)", file=sys.stderr)
        return 2
    target = TARGETS[args.arch]
    out = args.out.resolve()
    keys_dir = (args.keys or default_keys_dir()).resolve()
    if keys_dir.is_relative_to(REPO):
        print(f"mkimage: --keys {keys_dir} is inside the source tree; keep the update "
              "signing key elsewhere", file=sys.stderr)
        return 2
    build = Build(target=target, cache=args.cache.resolve(), out=out,
                  work=(args.work or out / f"work-{args.arch}").resolve(),
                  compress=args.compress, release=args.release or project_version())
    build.cache.mkdir(parents=True, exist_ok=True)
    stages = {"rootfs": {"rootfs"}, "raw": {"rootfs", "raw"},
              "all": {"rootfs", "raw", "compress"},
              "bundle": {"rootfs", "bundle"}}[args.stage]
    try:
        build.keys = ensure_signing_keys(keys_dir)
        result = build.run_all(stages)
    except BuildError as exc:
        print(f"mkimage: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
