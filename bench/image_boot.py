"""First boot of the built image to the wizard, timed, with systemd-analyze's view.

``python3 -m bench.image_boot --image-dir build/image --boots 3`` boots the image N
times in QEMU (TCG, the same machine and forwards as ``make image-test``), each time
from a fresh copy, and records the seconds from QEMU's start until the wizard answers
over HTTP.  The kernel command line asks for ocgate-boot-report.service, which prints
``systemd-analyze time``, ``blame`` and the wizard's critical chain on the console once
the boot is over; those lines are kept too.  TCG speed differs between machines and
with load, so compare trees only by runs made one after the other on one machine.
Needs root (a private network namespace, as the boot test).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

from tests.image.guest import Browser, Guest, GuestError, ImageFiles, PrivateNetns, wait_http

REPORT_ARG = "systemd.wants=ocgate-boot-report.service"
REPORT_RE = re.compile(r"ocgate-boot-report: begin\n(.*?)ocgate-boot-report: end", re.S)
#: journal lines forwarded to the console carry a prefix; the report wants bare lines
PREFIX_RE = re.compile(r"^\[\s*[\d.]+\]\s+\S+\[\d+\]:\s?|^\S+\[\d+\]:\s?")


def report_lines(console: str) -> list[str]:
    found = REPORT_RE.search(console.replace("\r", ""))
    if not found:
        return []
    return [PREFIX_RE.sub("", line) for line in found.group(1).splitlines()
            if "ocgate-boot-report" not in line or "begin" not in line]


def boot_once(files: ImageFiles, workdir: Path, *, uboot: bool, timeout: float,
              report_timeout: float) -> dict[str, object]:
    guest = Guest(files, workdir, uboot=uboot)
    if guest.disk_copy.exists():
        guest.disk_copy.unlink()  # every run is a first boot
    with PrivateNetns():
        guest.start()
        try:
            wait_http(Browser(guest.ports.http), "/setup/", timeout, guest)
            wizard = guest.elapsed()
            lines: list[str] = []
            deadline = time.monotonic() + report_timeout
            while time.monotonic() < deadline and not lines:
                lines = report_lines(guest.console())
                time.sleep(1.0)
        finally:
            guest.stop()
    return {"wizard_http_s": round(wizard, 1), "report": lines}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-dir", type=Path, required=True)
    p.add_argument("--arch", default="arm64")
    p.add_argument("--boots", type=int, default=3)
    p.add_argument("--uboot", action="store_true", help="boot through U-Boot (arm64)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--report-timeout", type=float, default=180.0)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    os.environ["OCGATE_QEMU_APPEND"] = (os.environ.get("OCGATE_QEMU_APPEND", "") + " "
                                        + REPORT_ARG).strip()
    files = ImageFiles.find(args.image_dir.resolve(), args.arch)
    if files.missing():
        print(f"image_boot: missing {files.missing()}", file=sys.stderr)
        return 2
    runs = []
    for index in range(args.boots):
        workdir = args.image_dir.resolve() / f"bench-boot-{args.arch}"
        try:
            run = boot_once(files, workdir, uboot=args.uboot, timeout=args.timeout,
                            report_timeout=args.report_timeout)
        except GuestError as exc:
            print(f"image_boot: boot {index + 1} failed: {exc}", file=sys.stderr)
            return 1
        runs.append(run)
        print(f"boot {index + 1}: wizard answered after {run['wizard_http_s']} s", flush=True)
    times = [float(str(r["wizard_http_s"])) for r in runs]
    result = {"image_dir": str(args.image_dir), "uboot": args.uboot,
              "median_wizard_http_s": statistics.median(times), "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"median: {result['median_wizard_http_s']} s of {times}")
    last = runs[-1]["report"]
    for line in last if isinstance(last, list) else []:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
