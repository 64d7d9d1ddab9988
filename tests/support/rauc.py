"""RAUC on the build host, for tests: signing keys, bundles, file-backed slots, a service.

image/mkimage.py's own functions make the keys and bundles; :class:`RaucDevice` runs
Debian's ``rauc service`` on a private D-Bus session bus (never the system's) with two
slot files, the booted slot forced to A and appliance.update.bootchooser on a
``bootenv.txt`` of the test's, so ``rauc install`` does on files what it does on a card.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from appliance.update.bootenv import BootEnv
from tests.prereqs import require_command, require_root
from tests.support.mkimage import REPO, load_mkimage
from tests.support.processes import stop_process

mk = load_mkimage()
COMPAT = "ocgate-arm64"
SLOT_BYTES = 24 << 20


def require_rauc() -> None:
    for tool, package in (("rauc", "rauc"), ("mksquashfs", "squashfs-tools"),
                          ("mke2fs", "e2fsprogs"), ("openssl", "openssl"),
                          ("dbus-daemon", "dbus")):
        require_command(tool, package)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_rootfs(base: Path, release: str = "2.0", blob: int = 300_000) -> Path:
    """A small root file system with incompressible content (squashfs must not vanish)."""
    tree = base / "tree"
    (tree / "usr/lib/ocgate").mkdir(parents=True)
    (tree / "usr/lib/ocgate/release").write_text(release + "\n")
    (tree / "blob").write_bytes(os.urandom(blob))
    image = base / "rootfs.ext4"
    mk.make_ext4(image, tree, 8, label="rootfs")
    return image


def make_bundle(tmp: Path, rootfs: Path, keys: Any, *, fmt: str, compat: str = COMPAT,
                name: str = "b.raucb", version: str = "2.0") -> Path:
    return mk.make_bundle(rootfs, tmp / name, keys=keys, compat=compat, version=version,
                          work=tmp / f"work-{name}", fmt=fmt)


def system_conf(path: Path, ca_cert: Path, *, slots: dict[str, str], backend: str,
                data: Path) -> Path:
    path.write_text(mk.render_system_conf(COMPAT, slots=slots, keyring=str(ca_cert),
                                          data_dir=str(data), backend=backend))
    return path


class RaucDevice:
    """File-backed slots, a bootenv.txt and RAUC's service for them (a context manager)."""

    def __init__(self, root: Path, ca_cert: Path) -> None:
        require_root("RAUC mounts the bundle (loop device, squashfs)")
        self.root = root
        self.slot_a, self.slot_b = root / "slot-a.img", root / "slot-b.img"
        self.bootenv = root / "bootenv.txt"
        self.cmdline = root / "cmdline"
        self.ca_cert = ca_cert
        self.env: dict[str, str] = {}
        self.procs: list[subprocess.Popen[Any]] = []

    def __enter__(self) -> RaucDevice:
        self.root.mkdir(parents=True, exist_ok=True)
        for slot, fill in ((self.slot_a, b"A"), (self.slot_b, b"B")):
            slot.write_bytes(fill * SLOT_BYTES)
        self.bootenv.write_text(BootEnv().render())
        self.cmdline.write_text("root=PARTUUID=4f434741-02 rauc.slot=A quiet\n")
        backend = self.root / "bootchooser"
        backend.write_text(f"#!/bin/sh\nexec {sys.executable} -m "
                           "appliance.update.bootchooser \"$@\"\n")
        backend.chmod(0o755)
        self.conf = system_conf(self.root / "system.conf", self.ca_cert,
                                slots={"A": str(self.slot_a), "B": str(self.slot_b)},
                                backend=str(backend), data=self.root / "data")
        (self.root / "mnt").mkdir(exist_ok=True)
        # a path socket, not an abstract one: those are per network namespace, and the
        # browser tests' admin UI runs in another namespace than RAUC
        bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1",
                                f"--address=unix:path={self.root / 'bus'}"],
                               stdout=subprocess.PIPE, text=True)
        self.procs.append(bus)
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        self.env = {"DBUS_SESSION_BUS_ADDRESS": address, "DBUS_STARTER_BUS_TYPE": "session",
                    "OCGATE_BOOTENV": str(self.bootenv), "PYTHONPATH": str(REPO)}
        self.log = self.root / "rauc-service.log"
        with open(self.log, "wb") as log:
            service = subprocess.Popen(
                ["rauc", "-c", str(self.conf), f"--mount={self.root / 'mnt'}", "service",
                 "--override-boot-slot=A"], env=dict(os.environ, **self.env), stdout=log,
                stderr=subprocess.STDOUT)
        self.procs.append(service)
        deadline = time.monotonic() + 30
        while "Booted from" not in self.status():
            if service.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"rauc service did not answer: {self.log.read_text()}")
            time.sleep(0.3)
        return self

    def __exit__(self, *_: object) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["rauc", *args], env=dict(os.environ, **self.env),
                              capture_output=True, text=True, timeout=120, check=False)

    def install(self, bundle: Path) -> subprocess.CompletedProcess[str]:
        return self.run("install", str(bundle))

    def status(self) -> str:
        return self.run("status", "--detailed").stdout
