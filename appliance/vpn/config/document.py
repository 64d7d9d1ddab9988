"""Rendering values and editing documents: line-preserving ocserv.conf edits."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
from typing import Any

from ...atomicfile import existing_mode_and_owner, write_atomic
from .lexer import _Entry, _sanitize, _Scan, _scan_lines, _split
from .model import _SPECIAL, Config, _Builder, _read_text, parse_config
from .options import _WS, OPTIONS, ConfigError, OptionSpec, _BadValue
from .values import _convert_item, _show

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# Rendering values and editing documents
# --------------------------------------------------------------------------------------


def render_value(spec: OptionSpec, value: Any) -> str:
    """Text for one value of ``spec`` (one element for list options), checked by re-parsing."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        text = value.with_prefixlen
    else:
        text = str(value)
    text = text.strip(_WS)
    if text:
        special = _SPECIAL.get(spec.name)
        try:
            if special is not None:
                special(_Builder("render"), spec, text, _Entry(spec.name, text, text, 0, "",
                                                              False))
            else:
                _convert_item(spec, text)
        except _BadValue as exc:
            raise ConfigError(f"invalid value for '{spec.name}': '{_show(text)}' "
                              f"(expected {exc.expected})") from None
    return text


def render_values(spec: OptionSpec, value: Any) -> list[str]:
    """All lines' values for ``spec``: None -> [], lists -> one entry per element."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [render_value(spec, v) for v in value]
    return [render_value(spec, value)]


def _quote_for_file(value: str, quoted: bool) -> str:
    """Make ``value`` survive the parser unchanged, quoting only when needed or asked."""
    if any(c in value for c in "\n\r\x00"):
        raise ConfigError(f"value '{_show(value)}' spans several lines")
    if value != value.strip(_WS + '"') and value != "":
        raise ConfigError(f"value '{_show(value)}' cannot start or end with spaces or "
                          "double quotes in ocserv.conf")
    if value.count('"') % 2:
        raise ConfigError(f"value '{_show(value)}' has an unbalanced double quote")
    needs = value == "" or value.startswith("#") or bool(re.search(r"[ \t\v\f]#", value))
    if needs and '"' in value:
        raise ConfigError(f"value '{_show(value)}' cannot be written: it contains both "
                          "'#' and double quotes")
    return f'"{value}"' if needs or quoted else value


_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class ConfigDocument:
    """ocserv.conf text that can be edited while comments, order and unknown lines stay.

    ``section`` arguments name a ``[section]`` header's content (e.g. "vhost:example.com");
    the default "" is the global part before the first header.
    """

    def __init__(self, text: str, path: str = "ocserv.conf") -> None:
        self.path = path
        self._lines = _split(text)
        self._crlf = bool(self._lines) and self._lines[0].endswith("\r")

    @classmethod
    def load(cls, path: str) -> ConfigDocument:
        return cls(_read_text(path), path)

    def text(self) -> str:
        return "\n".join(self._lines)

    def _value_lines(self, key: str, section: str) -> list[tuple[int, _Scan]]:
        return [(i, s) for i, s in enumerate(_scan_lines(self._lines))
                if s.kind in ("entry", "cont") and s.key == key and s.section == section]

    def get(self, key: str, section: str = "") -> list[str]:
        """Values of every line of ``key`` in file order (quotes and spaces trimmed)."""
        values = []
        for i, scan in self._value_lines(key, section):
            raw = self._lines[i][scan.start:scan.end]
            values.append(raw if key == "included-http-headers" else _sanitize(raw))
        return values

    def set(self, key: str, value: str | list[str], section: str = "") -> None:
        """Replace the key's lines in place; extra values go after the last one."""
        self._check_key(key)
        values = [value] if isinstance(value, str) else list(value)
        spec = OPTIONS.get(key)
        if spec is not None and not spec.multi and len(values) > 1:
            raise ConfigError(f"'{key}' takes a single value", self.path)
        existing = self._value_lines(key, section)
        texts = [v.strip(_WS) for v in values]
        for t in texts:  # refuse before touching anything, so a failed set() changes nothing
            _quote_for_file(t, True)
            _quote_for_file(t, False)
        for i, scan in existing[: len(texts)]:
            line = self._lines[i]
            old = line[scan.start:scan.end]
            quoted = len(old) >= 2 and old.startswith('"') and old.endswith('"')
            new = _quote_for_file(texts.pop(0), quoted)
            self._lines[i] = line[: scan.start] + new + line[scan.end:]
        for i, _scan in reversed(existing[len(values):]):
            del self._lines[i]
        if texts:
            where = (existing[-1][0] + 1 if existing else self._insert_point(section))
            where = self._clear_continuation(where)
            ending = "\r" if self._crlf else ""
            new_lines = [f"{key} = {_quote_for_file(t, False)}{ending}" for t in texts]
            self._lines[where:where] = new_lines

    def _clear_continuation(self, where: int) -> int:
        """Where new lines can go at ``where`` without changing what follows: inih reads an
        indented line as a continuation of the setting before it. A continuation already
        there is skipped; an indented line that continues nothing (no setting before it)
        loses its indent, which means the same to inih and keeps it off our new line."""
        scans = _scan_lines(self._lines)
        while where < len(scans) and scans[where].kind == "cont":
            where += 1
        if where < len(self._lines):
            line = self._lines[where]
            body = line.lstrip(_WS)
            if body and body != line and body[0] not in ";#":
                self._lines[where] = body
        return where

    def remove(self, key: str, section: str = "") -> None:
        """Delete every line of ``key`` (continuation lines included)."""
        for i, _scan in reversed(self._value_lines(key, section)):
            del self._lines[i]

    def _check_key(self, key: str) -> None:
        if not _KEY_RE.fullmatch(key):
            raise ConfigError(f"invalid option name '{_show(key)}'", self.path)

    def _insert_point(self, section: str) -> int:
        """Where a new line for ``section`` goes: after its last setting, or at its end."""
        scans = _scan_lines(self._lines)
        end = len(self._lines) - 1 if self._lines and self._lines[-1] == "" else len(
            self._lines)
        headers = [i for i, s in enumerate(scans) if s.kind == "section"]
        owned = [i for i, s in enumerate(scans)
                 if s.kind in ("entry", "cont") and s.section == section]
        if section == "" and not headers:
            return end
        if owned:
            return owned[-1] + 1
        if section == "":
            first = headers[0]
            while first > 0 and scans[first - 1].kind == "comment":
                first -= 1
            return first
        mine = [i for i in headers if scans[i].section == section]
        if mine:
            return mine[-1] + 1
        ending = "\r" if self._crlf else ""
        self._lines[end:end] = ["" + ending, f"[{section}]{ending}"]
        return end + 2


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


def _keep_backup(path: str) -> None:
    """Make path + '.bak' the current file, atomically (hard link, copy if links fail)."""
    backup = path + ".bak"
    staging = f"{backup}.{os.getpid()}.tmp"
    if os.path.lexists(staging):
        os.unlink(staging)
    try:
        os.link(path, staging)
    except OSError:
        shutil.copy2(path, staging)
    os.replace(staging, backup)


def write_config_atomic(path: str, text: str) -> Config:
    """Validate ``text``, then replace ``path`` so readers see the old or the new file.

    Nothing is touched when validation fails.  The previous file is kept as
    ``path + '.bak'``; new files are created 0600 (keys and secrets may be inside),
    existing files keep their mode and owner.
    """
    cfg = parse_config(text, path)
    mode, owner = existing_mode_and_owner(path)
    write_atomic(path, text.encode("utf-8"), 0o600 if mode is None else mode, owner=owner,
                 before_replace=None if mode is None else lambda: _keep_backup(path))
    log.info("wrote %s%s", path, " (previous version kept as .bak)" if mode is not None else "")
    return cfg
