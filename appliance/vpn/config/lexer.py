"""Lexing ocserv.conf: the inih rules ocserv relies on, with column spans for edits."""

from __future__ import annotations

from dataclasses import dataclass

from .options import _WS, MAX_LINE_BYTES, ConfigError

# --------------------------------------------------------------------------------------
# Lexing: the inih rules ocserv relies on, kept with column spans so edits are exact
# --------------------------------------------------------------------------------------


@dataclass
class _Scan:
    """What one physical line is.  ``start:end`` is the raw value span (entries only)."""

    kind: str  # blank, comment, section, entry, cont, bad
    section: str
    key: str = ""
    start: int = 0
    end: int = 0
    error: str = ""


def _stop(line: str, pos: int, chars: str, quotes: bool) -> int:
    """Index of the first char in ``chars`` or of an inline comment (whitespace then '#')."""
    was_space = False
    in_quotes = False
    while pos < len(line):
        c = line[pos]
        if quotes and c == '"':
            in_quotes = not in_quotes
        elif not in_quotes and (c in chars or (was_space and c == "#")):
            return pos
        was_space = c in _WS
        pos += 1
    return len(line)


def _value_span(line: str, pos: int) -> tuple[int, int]:
    end = _stop(line, pos, "", quotes=True)
    while pos < end and line[pos] in _WS:
        pos += 1
    while end > pos and line[end - 1] in _WS:
        end -= 1
    return pos, end


def _scan_lines(lines: list[str]) -> list[_Scan]:
    """Classify every physical line as inih would, tracking section and continuations."""
    out: list[_Scan] = []
    section = ""
    prev_key = ""
    for number, line in enumerate(lines):
        off = 1 if number == 0 and line.startswith("\ufeff") else 0
        scan = _scan_one(line, off, section, prev_key)
        if scan.kind == "section":
            section, prev_key = scan.section, ""
        elif scan.kind == "entry":
            prev_key = scan.key
        elif scan.kind == "cont":
            scan.key = prev_key
        out.append(scan)
    return out


def _scan_one(line: str, off: int, section: str, prev_key: str) -> _Scan:
    if len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        return _Scan("bad", section, error=f"line too long (ocserv reads at most "
                     f"{MAX_LINE_BYTES} bytes per line)")
    if "\x00" in line:
        return _Scan("bad", section, error="NUL character in line")
    begin = off
    while begin < len(line) and line[begin] in _WS:
        begin += 1
    if begin == len(line):
        return _Scan("blank", section)
    first = line[begin]
    if first in "#;":
        return _Scan("comment", section)
    if prev_key and begin > off:
        start, end = _value_span(line, begin)
        return _Scan("cont", section, start=start, end=end)
    if first == "[":
        close = _stop(line, begin + 1, "]", quotes=False)
        if close == len(line) or line[close] != "]":
            return _Scan("bad", section, error="section header without closing ']'")
        return _Scan("section", line[begin + 1:close])
    sep = _stop(line, begin, "=:", quotes=False)
    if sep == len(line) or line[sep] not in "=:":
        return _Scan("bad", section, error="expected 'option = value'")
    key = line[begin:sep].rstrip(_WS)
    if not key:
        return _Scan("bad", section, error="missing option name before '='")
    start, end = _value_span(line, sep + 1)
    return _Scan("entry", section, key=key, start=start, end=end)


def _sanitize(raw: str) -> str:
    """ocserv's sanitize_config_value: trim whitespace and double quotes at both ends."""
    return raw.strip(_WS + '"')


def _split(text: str) -> list[str]:
    """Physical lines as fgets() sees them: only '\\n' ends a line."""
    return text.split("\n")


@dataclass
class _Entry:
    key: str
    value: str  # sanitized
    unsanitized: str
    line: int
    section: str
    continuation: bool


def _entries(text: str, path: str) -> list[_Entry]:
    lines = _split(text)
    result: list[_Entry] = []
    for number, (line, scan) in enumerate(zip(lines, _scan_lines(lines), strict=True), start=1):
        if scan.kind == "bad":
            raise ConfigError(scan.error, path, number)
        if scan.kind in ("entry", "cont"):
            raw = line[scan.start:scan.end]
            result.append(_Entry(scan.key, _sanitize(raw), raw, number, scan.section,
                                 scan.kind == "cont"))
        elif scan.kind == "section" and scan.section.startswith("vhost:"):
            if not scan.section[6:].strip(_WS):
                raise ConfigError("virtual host name is empty", path, number)
    return result
