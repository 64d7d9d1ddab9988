"""The work folders of e2e, browser and soak runs: made and removed one way everywhere.

0755 under /tmp, because the server's workers run as ``nobody`` (pytest's ``tmp_path`` is
0700), and named ``ocg-e2e-<pid>-…`` so that a later run sweeps the folders of a run that
died.  ``OCGATE_E2E_KEEP=1`` keeps them for inspection.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

WORKDIR_PARENT = "/tmp"
WORKDIR_PREFIX = "ocg-e2e-"
#: Folders made and not yet removed, for the session's final clean-up.
_LIVE: set[Path] = set()


def make_workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=WORKDIR_PARENT))
    path.chmod(0o755)
    _LIVE.add(path)
    return path


def remove_workdir(path: Path, *, keep: bool | None = None, tag: str = "e2e") -> None:
    """Remove ``path`` unless it is to be kept (``keep`` unset: ``OCGATE_E2E_KEEP=1``)."""
    _LIVE.discard(path)
    if keep is None:
        keep = os.environ.get("OCGATE_E2E_KEEP") == "1"
    if keep:
        print(f"\n[{tag}] work dir kept: {path}", file=sys.stderr if tag == "soak" else sys.stdout)
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def workdir(tag: str = "e2e") -> Iterator[Path]:
    path = make_workdir()
    try:
        yield path
    finally:
        remove_workdir(path, tag=tag)


def remove_live_workdirs() -> None:
    """The folders of tests that were interrupted before their own teardown."""
    for path in list(_LIVE):
        remove_workdir(path)


def sweep_stale_workdirs() -> None:
    """Work dirs of runs that died (named with their pid, like the namespaces)."""
    for path in Path(WORKDIR_PARENT).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = path.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
