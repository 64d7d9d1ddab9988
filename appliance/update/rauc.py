"""The ``rauc`` command line, as the appliance uses it: read a bundle, install it, mark.

Everything goes through RAUC's own tool and the device's /etc/rauc/system.conf, so the
signature check is RAUC's (the keyring there), never ours.  ``parse_info`` is pure so that
what the web UI shows from RAUC's answer is tested without a bundle.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SYSTEM_CONF = Path("/etc/rauc/system.conf")
_SIGNER = re.compile(r"Verified (?:inline|detached) signature by '([^']*)'")
_PERCENT = re.compile(r"^\s*(\d{1,3})%\s+(.*)$")


class RaucError(RuntimeError):
    """RAUC refused or failed; the message is RAUC's last words."""


@dataclass(frozen=True)
class BundleInfo:
    compatible: str
    version: str
    signer: str  # subject of the certificate RAUC verified the signature with
    size: int    # bytes of the root file system image


def parse_info(stdout: str, stderr: str) -> BundleInfo:
    """``rauc info --output-format=json`` output (stdout) and its log (stderr)."""
    try:
        data = json.loads(stdout)
        images = data.get("images") or []
        size = sum(int(v.get("size") or 0) for image in images for v in image.values())
        compatible, version = str(data["compatible"]), str(data["version"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RaucError(f"unreadable answer from rauc info: {exc}") from None
    signer = _SIGNER.search(stderr)
    if signer is None:
        raise RaucError("rauc info did not report a verified signature")
    return BundleInfo(compatible, version, signer.group(1), size)


def _last_words(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def bundle_info(bundle: Path, conf: Path = SYSTEM_CONF) -> BundleInfo:
    """Version and signer, after RAUC checked the signature against the device keyring."""
    proc = subprocess.run(["rauc", "-c", str(conf), "info", "--output-format=json",
                           str(bundle)], capture_output=True, text=True, timeout=300,
                          check=False)
    if proc.returncode != 0:
        raise RaucError(_last_words(proc.stderr or proc.stdout))
    return parse_info(proc.stdout, proc.stderr)


def install(bundle: Path, progress: Callable[[int, str], None] | None = None,
            conf: Path = SYSTEM_CONF) -> None:
    """``rauc install``; ``progress(percent, message)`` for each step RAUC says."""
    proc = subprocess.Popen(["rauc", "-c", str(conf), "install", str(bundle)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        match = _PERCENT.match(line)
        if match and progress is not None:
            progress(min(100, int(match.group(1))), match.group(2).strip())
    if proc.wait() != 0:
        raise RaucError(_last_words("".join(line for line in lines
                                            if "failed" in line.lower()) or "".join(lines)))


def mark(state: str, which: str = "booted") -> None:
    """``rauc status mark-good|mark-bad booted|other``."""
    proc = subprocess.run(["rauc", "status", f"mark-{state}", which], capture_output=True,
                          text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RaucError(_last_words(proc.stderr or proc.stdout))


def booted_slot(cmdline: str) -> str | None:
    """``rauc.slot=`` from the kernel command line: set only by our U-Boot boot script."""
    for word in cmdline.split():
        if word.startswith("rauc.slot="):
            return word.split("=", 1)[1] or None
    return None
