"""RAUC's custom boot backend (``ocgate-bootchooser``): RAUC asks, ``bootenv.txt`` answers.

system.conf names this program as ``[handlers] bootloader-custom-backend``; RAUC runs it as
``get-primary``, ``set-primary SLOT``, ``get-state SLOT`` or ``set-state SLOT good|bad``
and reads the answer from stdout.  The file lives on the FAT boot partition (the U-Boot
script reads and writes it there); OCGATE_BOOTENV overrides the path so tests run RAUC
against a file of their own.  Writes go through a temporary file and a rename, so a power
cut leaves the old or the new file, which the boot script can always read.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ..atomicfile import fsync_dir
from .bootenv import FILENAME, BootEnv, BootEnvError

DEFAULT_PATH = Path("/boot/firmware") / FILENAME
log = logging.getLogger("ocgate.bootchooser")


def env_path() -> Path:
    return Path(os.environ.get("OCGATE_BOOTENV", str(DEFAULT_PATH)))


def load(path: Path) -> BootEnv:
    try:
        return BootEnv.parse(path.read_text(errors="replace"))
    except FileNotFoundError:
        return BootEnv()  # a fresh card: slot A first, as the boot script assumes too


def save(path: Path, env: BootEnv) -> None:
    """Temporary file, fsync, rename: FAT has no modes to set (atomicfile would chmod)."""
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "w") as fh:
        fh.write(env.render())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def handle(env: BootEnv, argv: list[str]) -> tuple[str, bool]:
    """(text for stdout, whether env changed) for one RAUC request."""
    match argv:
        case ["get-primary"]:
            primary = env.primary()
            if primary is None:
                raise BootEnvError("no slot has tries left")
            return primary + "\n", False
        case ["set-primary", slot]:
            env.set_primary(slot)
            return "", True
        case ["get-state", slot]:
            return env.state(slot) + "\n", False
        case ["set-state", slot, state]:
            env.set_state(slot, state)
            return "", True
    raise BootEnvError(f"unknown request: {' '.join(argv) or '(none)'}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    args = sys.argv[1:] if argv is None else argv
    path = env_path()
    try:
        env = load(path)
        out, changed = handle(env, args)
        if changed:
            save(path, env)
            log.info("bootenv request=%s order=%s", " ".join(args), " ".join(env.order))
    except (BootEnvError, OSError) as exc:
        print(f"ocgate-bootchooser: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
