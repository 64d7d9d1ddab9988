"""One-time passwords for ``auth = plain[otp=FILE]``: HOTP/TOTP and liboath's users file.

ocserv checks the code with liboath's ``oath_authenticate_usersfile`` (window 20), so an
existing ``/etc/ocserv/users.oath`` must keep working, and a file we rewrote must still be
read by liboath.  This module is sans-IO: text and the time come in, a verdict and the
new file text go out; auth/plain.py reads, locks and atomically rewrites the file.

One line per token, fields separated by blanks (``#`` comments and blank lines are kept)::

    TYPE USER PIN HEXSECRET [COUNTER LASTOTP LASTTIME]

* TYPE: ``HOTP``, ``HOTP/E`` (counter based) or ``HOTP/T30``, ``HOTP/T60`` (time based,
  30 s or 60 s steps), each optionally with ``/6``, ``/7`` or ``/8`` digits (default 6).
* PIN: ``-`` none; ``+`` "verified elsewhere", here: by the ``passwd=`` password of the
  same login, so a ``+`` token is refused when no password was checked (OTP-only);
  anything else is a static PIN typed in front of the code (pam_oath's convention).
  ocserv passes no PIN to liboath and so ignores a PIN; we refuse rather than ignore it.
* COUNTER LASTOTP LASTTIME: written back after each successful login, as liboath does:
  for HOTP the counter of the code used, for TOTP its step relative to LASTTIME's step;
  LASTTIME is local time as ``%Y-%m-%dT%H:%M:%SL``.

A code is never accepted twice: HOTP searches only counters above the last one used,
TOTP only steps after the last one used (a DST-ambiguous LASTTIME is read as the later
of its two meanings), and the last code itself is refused outright, as liboath does.
A malformed line disables its user (or, without a user name, the whole file): a token
we cannot read must not turn into "no token needed".
"""

from __future__ import annotations

import datetime
import hmac
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 20  # ocserv's HOTP_WINDOW: HOTP looks 20 counters ahead, TOTP 20 steps each way
MAX_KEY_BYTES = 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SL"
_HEX = re.compile(r"[0-9A-Fa-f]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_INT = re.compile(r"[+-]?[0-9]{1,19}")
_BLANKS = " \t\r\n"
_FIELD_SEP = re.compile(r"[ \t\r\n]+")
_TYPE = re.compile(r"HOTP(?:/(E|T30|T60))?(?:/([678]))?")


# --------------------------------------------------------------------------- RFC 4226/6238


def hotp(key: bytes, counter: int, digits: int = 6, digest: str = "sha1") -> str:
    """RFC 4226 §5.3: HMAC of the 8-byte counter, dynamic truncation, ``digits`` digits."""
    if not 0 <= counter < 1 << 64:
        raise ValueError("HOTP counter out of range")
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10 ** digits).zfill(digits)


def totp(key: bytes, now: float, step: int = 30, digits: int = 6,
         digest: str = "sha1") -> str:
    """RFC 6238 §4 with T0 = 0: HOTP of the number of whole steps since the epoch."""
    return hotp(key, int(now // step), digits, digest)


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Token:
    """One well-formed line of the users file."""

    line: int  # 0-based index into UsersFile.lines
    user: str
    step: int  # 0 for HOTP, else the TOTP time step in seconds
    digits: int
    pin: str
    key: bytes
    head: str  # the line up to the end of the secret, kept verbatim when rewritten
    counter: int | None = None  # HOTP: counter of the last code; TOTP: its step offset
    last_otp: str | None = None
    last_time: str | None = None


@dataclass(frozen=True)
class LineError:
    line: int  # 0-based
    user: str | None  # None: the line names nobody, so nobody can be trusted
    message: str


@dataclass
class UsersFile:
    lines: list[str]  # with their line endings, so that a rewrite keeps the others intact
    tokens: list[Token]
    errors: list[LineError]


def parse_usersfile(text: str) -> UsersFile:
    """Lines end at LF only and fields are split at " \\t\\r\\n", as liboath's getline and
    strtok do (str.split would also cut at Unicode spaces liboath keeps)."""
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    tokens: list[Token] = []
    errors: list[LineError] = []
    for index, line in enumerate(lines):
        fields = [f for f in _FIELD_SEP.split(line) if f]
        if not fields or fields[0].startswith("#"):
            continue
        user = fields[1] if len(fields) > 1 else None
        try:
            tokens.append(_parse_line(index, line, fields))
        except ValueError as exc:
            errors.append(LineError(index, user, str(exc)))
    return UsersFile(lines, tokens, errors)


def _parse_line(index: int, line: str, fields: list[str]) -> Token:
    match = _TYPE.fullmatch(fields[0])
    if match is None:
        raise ValueError(f"unknown token type '{fields[0][:20]}'")
    mode, digits = match.group(1) or "E", int(match.group(2) or 6)
    step = {"E": 0, "T30": 30, "T60": 60}[mode]
    if len(fields) < 4:
        raise ValueError("expected TYPE USER PIN SECRET")
    user, pin, secret = fields[1], fields[2], fields[3]
    if not _HEX.fullmatch(secret) or len(secret) % 2 or len(secret) > 2 * MAX_KEY_BYTES:
        raise ValueError("the secret is not an even number of hex digits (at most "
                         f"{2 * MAX_KEY_BYTES})")
    head = line[:_end_of_field(line, 4)]
    counter = last_otp = last_time = None
    if len(fields) > 4:
        if not _INT.fullmatch(fields[4]) or (step == 0 and fields[4][0] in "+-"):
            raise ValueError("the counter field is not a number")
        counter = int(fields[4])
        if step == 0 and counter >= 1 << 64:
            raise ValueError("the counter is too large")
        if step and len(fields) < 7:
            raise ValueError("a TOTP line with a counter needs the last code and time")
    if len(fields) > 5:
        last_otp = fields[5]
        if len(fields) < 7:
            raise ValueError("the last code has no time stamp")
        last_time = fields[6]
        _parse_stamp(last_time)  # raises ValueError
    if len(fields) > 7:
        raise ValueError("unexpected text after the time stamp")
    return Token(index, user, step, digits, pin, bytes.fromhex(secret), head, counter,
                 last_otp, last_time)


def _end_of_field(line: str, count: int) -> int:
    """Offset just past the ``count``-th blank-separated field of ``line``."""
    pos = 0
    for _ in range(count):
        while pos < len(line) and line[pos] in _BLANKS:
            pos += 1
        while pos < len(line) and line[pos] not in _BLANKS:
            pos += 1
    return pos


def _parse_stamp(text: str) -> datetime.datetime:
    try:
        return datetime.datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        raise ValueError(f"bad time stamp '{text[:30]}'") from None


def local_epoch(stamp: datetime.datetime) -> float:
    """A naive local time as epoch seconds; of two meanings (DST fold) the later one, so
    that the step a code was used in is never underestimated (which would allow a replay)."""
    return max(stamp.replace(fold=0).timestamp(), stamp.replace(fold=1).timestamp())


def format_stamp(now: float) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(now))


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class OtpVerdict:
    ok: bool
    reason: str = ""  # for the log: never contains the code or the PIN
    text: str | None = None  # the users file to write back after a success
    line: int | None = None  # 1-based line of the token that matched or failed


def check(users: UsersFile, username: str, answer: str, now: float, *,
          password_verified: bool, window: int = WINDOW,
          epoch: Callable[[datetime.datetime], float] = local_epoch,
          stamp: Callable[[float], str] = format_stamp) -> OtpVerdict:
    """Is ``answer`` (PIN + code) a fresh code of one of ``username``'s tokens at ``now``?"""
    broken = [e for e in users.errors if e.user is None or e.user == username]
    if broken:
        first = broken[0]
        return OtpVerdict(False, f"users file line {first.line + 1}: {first.message}",
                          line=first.line + 1)
    mine = [t for t in users.tokens if t.user == username]
    if not mine:
        for counter in range(2 * window + 1):  # about the cost of a TOTP search
            hotp(b"timing", counter)
        return OtpVerdict(False, "no token for this user in the users file")
    reasons: list[tuple[int, str]] = []
    for token in mine:
        found, why = _check_token(token, answer, now, password_verified, window, epoch)
        if found is None:
            reasons.append((token.line + 1, why))
            continue
        counter, code = found
        lines = list(users.lines)
        ending = "\r\n" if lines[token.line].endswith("\r\n") else "\n"
        lines[token.line] = f"{token.head}\t{counter}\t{code}\t{stamp(now)}{ending}"
        return OtpVerdict(True, text="".join(lines), line=token.line + 1)
    line, why = reasons[0]
    return OtpVerdict(False, why if len(reasons) == 1 else f"{why} (and {len(reasons) - 1} "
                      "more token(s) did not match)", line=line)


def _check_token(token: Token, answer: str, now: float, password_verified: bool,
                 window: int, epoch: Callable[[datetime.datetime], float]
                 ) -> tuple[tuple[int, str] | None, str]:
    """((counter to record, code), "") when ``answer`` is fresh for ``token``."""
    if len(answer) < token.digits:
        return None, "the answer is shorter than the code"
    pin, code = answer[:-token.digits], answer[-token.digits:]
    if not _DIGITS_RE.fullmatch(code):
        return None, "the code is not all digits"
    if token.pin == "+":
        if not password_verified:
            return None, "the token's PIN is '+' (checked elsewhere) but no password was"
        pin_ok = pin == ""
    else:
        pin_ok = _same(pin, "" if token.pin == "-" else token.pin)
    if token.last_otp is not None and _same(code, token.last_otp):
        return None, "replayed code (the last one used)"
    found = _find_totp(token, code, now, window, epoch) if token.step \
        else _find_hotp(token, code, window)
    if isinstance(found, str):
        return None, found
    if not pin_ok:  # checked after the search, so a wrong PIN costs the same time
        return None, "wrong PIN"
    return (found, code), ""


def _same(a: str, b: str) -> bool:
    """Constant-time equality for text that may hold undecodable bytes (surrogates)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))


def _find_hotp(token: Token, code: str, window: int) -> int | str:
    # liboath records the counter of the code used; a line that has a last code has used
    # that counter, so the search starts after it
    start = token.counter or 0
    if token.last_otp is not None:
        start += 1
    for counter in range(start, min(start + window + 1, 1 << 64)):
        if hmac.compare_digest(hotp(token.key, counter, token.digits), code):
            return counter
    return "wrong code"


def _find_totp(token: Token, code: str, now: float, window: int,
               epoch: Callable[[datetime.datetime], float]) -> int | str:
    current = int(now // token.step)
    last_used: int | None = None
    if token.last_time is not None and token.counter is not None:
        last_used = int(epoch(_parse_stamp(token.last_time)) // token.step) + token.counter
    # liboath's order: now, now+1, now-1, now+2, ...; every match counts, so a code that
    # also belongs to an already used step is refused even if a later step shares it
    offsets = [0] + [o for i in range(1, window + 1) for o in (i, -i)]
    matches = [o for o in offsets
               if current + o >= 0
               and hmac.compare_digest(totp(token.key, (current + o) * token.step,
                                            token.step, token.digits), code)]
    if not matches:
        return "wrong code"
    if last_used is not None and any(current + o <= last_used for o in matches):
        return "replayed code (its time step was already used)"
    return matches[0]
