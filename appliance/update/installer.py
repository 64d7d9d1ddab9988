"""One update, start to reboot: shared by ``ocgate-update install`` and the web UI.

Order matters: RAUC checks the signature and the compatible string (``rauc info``)
before anything is recorded or written; only then is the update recorded as pending
(so the next boots can tell "installed" from "rolled back") and ``rauc install`` writes
the inactive slot and makes it the next boot.  A failed install removes the record.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from . import rauc
from .history import History, Pending
from .release import installed_release

CMDLINE = Path("/proc/cmdline")


class UpdateRefused(RuntimeError):
    """The device cannot take this update (no A/B boot, same slot ...)."""


def other_slot(booted: str) -> str:
    return {"A": "B", "B": "A"}[booted]


def install(bundle: Path, history: History,
            progress: Callable[[int, str], None] | None = None,
            cmdline: Path = CMDLINE, conf: Path = rauc.SYSTEM_CONF) -> rauc.BundleInfo:
    booted = rauc.booted_slot(cmdline.read_text())
    if booted not in ("A", "B"):
        raise UpdateRefused("this boot did not come through the A/B boot script "
                            "(no rauc.slot= on the kernel command line)")
    info = rauc.bundle_info(bundle, conf)
    history.begin(Pending(info.version, other_slot(booted),
                          installed_release() or "unknown", time.time()))
    try:
        rauc.install(bundle, progress, conf)
    except BaseException:
        history.abandon()
        raise
    return info


def reboot() -> None:
    subprocess.run(["systemctl", "reboot"], check=False, timeout=60)
