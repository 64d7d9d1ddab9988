"""``ocgate-update``: install a signed bundle from the command line, or say where we are.

    ocgate-update info BUNDLE          version and signer (RAUC checks the signature)
    ocgate-update install BUNDLE       write the other slot, then reboot into it
    ocgate-update status               booted slot, release, the last update's outcome

``install`` is what the web UI's update page does too (:mod:`.installer`), so both paths
refuse the same bundles with the same words.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..state import DEVICE_STATE_DIR, StateLayout
from . import installer, rauc
from .history import History
from .release import installed_release


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ocgate-update", description=__doc__.splitlines()[0])
    p.add_argument("--state", type=Path, default=DEVICE_STATE_DIR)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("info", "install"):
        cmd = sub.add_parser(name)
        cmd.add_argument("bundle", type=Path)
        if name == "install":
            cmd.add_argument("--no-reboot", action="store_true",
                             help="leave the reboot into the new slot to the caller")
    sub.add_parser("status")
    args = p.parse_args(argv)
    history = History(StateLayout.at(args.state).root / "update")
    try:
        if args.command == "info":
            info = rauc.bundle_info(args.bundle)
            print(f"version {info.version}\ncompatible {info.compatible}\n"
                  f"signed by {info.signer}\nroot file system {info.size} bytes")
        elif args.command == "install":
            def show(percent: int, message: str) -> None:
                print(f"{percent:3d}% {message}", flush=True)

            info = installer.install(args.bundle, history, progress=show)
            print(f"installed {info.version} into the other slot", flush=True)
            if not args.no_reboot:
                installer.reboot()
        else:
            booted = rauc.booted_slot(Path("/proc/cmdline").read_text())
            print(f"release {installed_release() or 'unknown'}\nbooted slot {booted or '-'}")
            pending, last = history.pending(), history.last()
            if pending is not None:
                print(f"waiting for the first good boot of {pending.version} "
                      f"(slot {pending.slot})")
            if last is not None:
                print(f"last update {last.version}: {last.result}")
    except (installer.UpdateRefused, rauc.RaucError, OSError) as exc:
        print(f"ocgate-update: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
