"""Crash-safe file replacement, shared by everything that writes the device's state.

A power cut on a router is routine. Readers (the VPN server, the web UI, the wizard after
a reboot) must find either the old file or the new one, never half of one, and a key must
never exist on disk, even briefly, with wider permissions than it will finally have.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable; filesystems that refuse it are skipped."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of directory %s not supported", directory)
    finally:
        os.close(fd)


def existing_mode_and_owner(path: str | os.PathLike[str]) -> tuple[int | None,
                                                                   tuple[int, int] | None]:
    """(permission bits, (uid, gid)) of the file being replaced, or (None, None)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, None
    return stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int, *,
                 owner: tuple[int, int] | None = None,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Temp file in the same directory with ``mode`` from its creation (and ``owner``
    when we may set it), written, fsynced, renamed over ``path``, directory fsynced.

    ``before_replace`` runs once the new content is safely on disk and before the rename
    (config/document.py keeps its ``.bak`` there), so a failed write leaves nothing behind."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)
