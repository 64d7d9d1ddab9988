"""The admin UI's side of an update: receive the bundle, let RAUC check it, install it.

Three steps, each its own request, so the admin sees what RAUC found before anything is
written: the upload is streamed to ``STATE/update/upload.raucb`` (the data partition;
the bundle is far larger than any form) and RAUC reads its version and checks its
signature at once (a refused bundle is deleted); the page shows version, signer and the
current release; "Install" runs :func:`appliance.update.installer.install` in a thread
whose progress the page polls; when it is done the device reboots into the new slot.

The web UI stays sandboxed: RAUC's service (root, D-Bus) writes the slot, not this
process.  ``Updates`` holds the one update the device can run at a time.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flask_babel import gettext as _

from ..state import StateLayout
from ..update import installer, rauc
from ..update.history import History, Outcome, Pending
from ..update.release import RELEASE_FILE, installed_release

log = logging.getLogger(__name__)

MAX_BUNDLE_BYTES = 1 << 30  # a root slot's worth; a bundle is far smaller
#: the upload arrives in pieces of at most this size: waitress buffers every request body
#: before the app sees it and refuses more than 1 MiB (appliance/web/server.py), so a
#: bundle is never buffered whole and nobody unauthenticated can make the server store one
CHUNK_BYTES = 768 << 10


class UploadError(ValueError):
    """The upload is not a bundle this device takes; nothing was kept."""


def _reboot() -> None:
    command = os.environ.get("OCGATE_REBOOT_COMMAND")
    argv = command.split() if command else ["systemctl", "reboot"]
    subprocess.run(argv, check=False, timeout=60)


@dataclass
class Progress:
    percent: int = 0
    message: str = ""
    state: str = "idle"  # idle, installing, done, failed
    error: str = ""
    version: str = ""


@dataclass
class Updates:
    """Paths and commands of the device; tests point them at RAUC on file-backed slots."""

    layout: StateLayout
    conf: Path = field(default_factory=lambda: Path(os.environ.get(
        "OCGATE_RAUC_CONF", str(rauc.SYSTEM_CONF))))
    cmdline: Path = field(default_factory=lambda: Path(os.environ.get(
        "OCGATE_KERNEL_CMDLINE", str(installer.CMDLINE))))
    release_file: Path = RELEASE_FILE
    reboot: Callable[[], None] = _reboot
    reboot_delay: float = 3.0  # the "rebooting" page reaches the browser first
    lock: threading.Lock = field(default_factory=threading.Lock)
    progress: Progress = field(default_factory=Progress)

    @property
    def folder(self) -> Path:
        return self.layout.root / "update"

    @property
    def upload_file(self) -> Path:
        return self.folder / "upload.raucb"

    @property
    def history(self) -> History:
        return History(self.folder)

    def release(self) -> str | None:
        return installed_release(self.release_file)

    def booted_slot(self) -> str | None:
        try:
            return rauc.booted_slot(self.cmdline.read_text())
        except OSError:
            return None

    def last(self) -> Outcome | None:
        return self.history.last()

    def pending(self) -> Pending | None:
        return self.history.pending()

    @property
    def part_file(self) -> Path:
        return self.upload_file.with_suffix(".part")

    def append(self, offset: int, data: bytes) -> int:
        """One piece of an upload at ``offset`` (0 starts a new one); returns the size so far.

        A piece that does not continue the file exactly (lost, repeated, out of order) is
        refused, so the stored bytes are always a prefix of what the browser sends.
        """
        if self.progress.state == "installing":
            raise UploadError(_("an update is being installed"))
        if len(data) > CHUNK_BYTES:
            raise UploadError(_("the file is larger than any bundle"))
        self.folder.mkdir(parents=True, exist_ok=True)
        if offset == 0:
            self.discard()
            self.part_file.unlink(missing_ok=True)
        size = self.part_file.stat().st_size if self.part_file.exists() else 0
        if offset != size:
            raise UploadError(_("the upload was interrupted; start it again"))
        if size + len(data) > MAX_BUNDLE_BYTES:
            self.part_file.unlink(missing_ok=True)
            raise UploadError(_("the file is larger than any bundle"))
        with open(self.part_file, "ab") as out:
            out.write(data)
        return size + len(data)

    def finish_upload(self) -> rauc.BundleInfo:
        """The upload is complete: RAUC checks it (a refused file is deleted)."""
        if not self.part_file.exists() or self.part_file.stat().st_size == 0:
            self.part_file.unlink(missing_ok=True)
            raise UploadError(_("the file is empty"))
        os.replace(self.part_file, self.upload_file)
        return self.checked()

    def checked(self) -> rauc.BundleInfo:
        """RAUC's verdict on the stored upload (signature, then our compatible string)."""
        try:
            info = rauc.bundle_info(self.upload_file, self.conf)
        except rauc.RaucError as exc:
            self.discard()
            raise UploadError(str(exc)) from None
        expected = _compatible(self.conf)
        if expected is not None and info.compatible != expected:
            self.discard()
            raise UploadError(_("the bundle is for %(bundle)s, this device is %(device)s",
                                bundle=info.compatible, device=expected))
        return info

    def discard(self) -> None:
        self.upload_file.unlink(missing_ok=True)

    def start_install(self) -> bool:
        """Install the stored upload in a thread; False when one is already running."""
        with self.lock:
            if self.progress.state == "installing" or not self.upload_file.exists():
                return False
            self.progress = Progress(state="installing", message="starting")
        threading.Thread(target=self._install, name="update-install", daemon=True).start()
        return True

    def _install(self) -> None:
        def step(percent: int, message: str) -> None:
            self.progress.percent, self.progress.message = percent, message

        try:
            info = installer.install(self.upload_file, self.history, progress=step,
                                     cmdline=self.cmdline, conf=self.conf)
        except (installer.UpdateRefused, rauc.RaucError, OSError) as exc:
            log.warning("update result=failed reason=%s", exc)
            self.progress.state, self.progress.error = "failed", str(exc)
            return
        finally:
            self.discard()
        log.info("update result=written version=%s rebooting_in=%.0fs", info.version,
                 self.reboot_delay)
        self.progress.state, self.progress.percent = "done", 100
        self.progress.version = info.version
        time.sleep(self.reboot_delay)
        self.reboot()


def _compatible(conf: Path) -> str | None:
    """``compatible=`` of the device's system.conf (RAUC checks it too, at install)."""
    try:
        for line in conf.read_text().splitlines():
            if line.strip().startswith("compatible="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None
