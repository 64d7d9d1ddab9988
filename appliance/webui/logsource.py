"""The log page's data: the tail of a log file, or the systemd journal of our units.

On the device the VPN and the UI log to the journal (``ocgate-vpn.service``,
``ocgate-webui.service``); in development and tests the server writes a plain file.  Only
the tail is ever read (a bounded number of bytes or lines), and filtering happens here,
so a huge log never reaches the browser.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAX_TAIL_BYTES = 512 * 1024
MAX_LINES = 2000
DEFAULT_UNITS = ("ocgate-vpn.service", "ocgate-webui.service")
LEVELS = ("error", "warning", "info", "debug")
_LEVEL_WORDS = {
    "error": re.compile(r"\b(ERROR|CRITICAL|error|failed|Traceback)\b"),
    "warning": re.compile(r"\b(WARNING|WARN|warning|ERROR|CRITICAL|error)\b"),
    "info": re.compile(r"\b(INFO|WARNING|ERROR|CRITICAL|info|warning|error)\b"),
}


@dataclass(frozen=True)
class LogQuery:
    lines: int = 200
    text: str = ""
    level: str = ""  # "", or one of LEVELS: that level and more severe

    def clean(self) -> LogQuery:
        lines = min(max(self.lines, 10), MAX_LINES)
        level = self.level if self.level in LEVELS else ""
        return LogQuery(lines, self.text[:200], level)


def filter_lines(lines: Sequence[str], query: LogQuery) -> list[str]:
    """Lines matching the text (case-insensitive) and level filters, newest last."""
    q = query.clean()
    needle = q.text.lower()
    pattern = _LEVEL_WORDS.get(q.level)
    out = [line for line in lines
           if (not needle or needle in line.lower())
           and (pattern is None or pattern.search(line))]
    return out[-q.lines:]


def tail_file(path: Path, max_bytes: int = MAX_TAIL_BYTES) -> list[str]:
    """The last ``max_bytes`` of a file as lines (a cut first line is dropped)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            fh.seek(start)
            data = fh.read(max_bytes)
    except OSError as exc:
        return [f"(cannot read {path}: {exc.strerror or exc})"]
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if start > 0 and lines else lines


class LogSource:
    """A file (``--log-file``) if given, else journalctl for the appliance's units."""

    def __init__(self, path: Path | None = None,
                 units: Sequence[str] = DEFAULT_UNITS) -> None:
        self.path = path
        self.units = tuple(units)

    @property
    def description(self) -> str:
        if self.path is not None:
            return str(self.path)
        return "journal: " + ", ".join(self.units)

    def read(self, query: LogQuery) -> list[str]:
        q = query.clean()
        if self.path is not None:
            return filter_lines(tail_file(self.path), q)
        return filter_lines(self._journal(MAX_LINES), q)

    def _journal(self, lines: int) -> list[str]:
        if shutil.which("journalctl") is None:
            return ["(no journalctl on this system; start the UI with --log-file)"]
        argv = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines)]
        for unit in self.units:
            argv += ["-u", unit]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                                  check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return [f"(journalctl failed: {exc})"]
        if proc.returncode != 0 and not proc.stdout:
            return [f"(journalctl failed: {proc.stderr.strip()[:300]})"]
        return proc.stdout.splitlines()
