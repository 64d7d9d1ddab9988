"""The plain password file back end (ocpasswd format)."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Callable

from ...atomicfile import existing_mode_and_owner, write_atomic
from ..passwd import PasswdEntry, PasswdError, load_passwd, verify_password
from . import otp
from .base import (
    MAX_OTP_FILE_BYTES,
    OTP_LOCK_WAIT,
    OTP_PROMPT,
    PASSWORD_PROMPT,
    AuthConfigError,
    Conversation,
    Event,
    Notify,
    Prompt,
    Verdict,
    _unique,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- plain


class PlainAuth:
    """auth = plain[passwd=FILE,otp=FILE]; both files are re-read on every attempt, as
    ocserv does, so ocpasswd and users-file changes apply without a reload.

    As in ocserv's plain module, ``otp=`` adds a second question after the password
    (``OTP_PROMPT``), and a user whose passwd line has an empty hash, or any user when
    there is no ``passwd=``, is asked for the one-time password only.
    """

    name = "plain"

    def __init__(self, passwd_file: str | None, otp_file: str | None = None) -> None:
        if passwd_file is None and otp_file is None:
            raise AuthConfigError("plain authentication needs passwd= and/or otp=")
        self.passwd_file = passwd_file
        self.otp = OtpFile(otp_file) if otp_file else None

    def lookup(self, username: str) -> PasswdEntry | None:
        """The user's passwd line; None for an unknown user or an unreadable file."""
        if self.passwd_file is None:
            return None
        try:
            entries = load_passwd(self.passwd_file)
        except (OSError, PasswdError) as exc:
            log.error("cannot read password file %s: %s", self.passwd_file, exc)
            return None
        return entries.get(username)

    def check(self, username: str, password: str) -> tuple[bool, list[str]]:
        entry = self.lookup(username)
        ok = verify_password(entry, password)  # same cost for unknown users
        return ok, (entry.groups if entry else [])

    def start(self, username: str, remote_ip: str, notify: Notify) -> Conversation:
        return PlainConversation(self, username)

    def all_groups(self) -> list[str]:
        if self.passwd_file is None:
            return []
        try:
            entries = load_passwd(self.passwd_file)
        except (OSError, PasswdError):
            return []
        return _unique(g for entry in entries.values() for g in entry.groups)


class PlainConversation:
    """The password, then the one-time password when ``otp=`` is set; both answered
    synchronously (a hash and at most 41 HMACs are milliseconds).

    A wrong password ends the attempt with a retry (the sec-mod asks again, up to three
    times); a wrong one-time password ends the login, as in ocserv.
    """

    def __init__(self, backend: PlainAuth, username: str) -> None:
        self._backend = backend
        self._username = username
        self._entry: PasswdEntry | None = None
        self._password_ok = False
        otp_only = False
        if backend.otp is not None:
            if backend.passwd_file is None:
                otp_only = True
            else:
                self._entry = backend.lookup(username)
                otp_only = self._entry is not None and self._entry.hash == ""
        self._stage = "otp" if otp_only else "password"
        self._events: deque[Event] = deque(
            [Prompt(OTP_PROMPT, numbered=False) if otp_only else Prompt(PASSWORD_PROMPT)])

    def poll(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def answer(self, text: str) -> None:
        stage, self._stage = self._stage, "done"
        if stage == "password":
            self._check_password(text)
        elif stage == "otp":
            self._check_otp(text)
        else:
            self._events.append(Verdict(False, reason="answer after the verdict",
                                        retry=False))

    def _check_password(self, text: str) -> None:
        ok, groups = self._backend.check(self._username, text)
        if not ok:
            self._events.append(Verdict(False, tuple(groups), "wrong password"))
        elif self._backend.otp is None:
            self._events.append(Verdict(True, tuple(groups)))
        else:
            self._password_ok = True
            self._entry = PasswdEntry(self._username, list(groups), "")
            self._stage = "otp"
            self._events.append(Prompt(OTP_PROMPT, numbered=False))

    def _check_otp(self, text: str) -> None:
        assert self._backend.otp is not None
        result = self._backend.otp.verify(self._username, text, self._password_ok)
        groups = tuple(self._entry.groups) if self._entry is not None else ()
        if result.ok:
            self._events.append(Verdict(True, groups))
        else:
            where = f" (line {result.line})" if result.line else ""
            self._events.append(Verdict(False, groups, f"one-time password: {result.reason}"
                                        f"{where}", retry=False))

    def close(self) -> None:
        self._events.clear()


class OtpFile:
    """liboath's users file (auth/otp.py), checked and rewritten under an exclusive lock.

    The new counter is on disk (atomic rename, fsynced) before the login is allowed: a
    code whose use could not be recorded could be used again, so it is refused.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock

    def verify(self, username: str, answer: str, password_verified: bool) -> otp.OtpVerdict:
        try:
            fd = self._open_locked()
        except OSError as exc:
            log.error("cannot use the OTP users file %s: %s", self.path, exc)
            return otp.OtpVerdict(False, "users file unreadable")
        try:
            try:
                data = _read_all(fd, MAX_OTP_FILE_BYTES + 1)
            except OSError as exc:
                log.error("cannot read the OTP users file %s: %s", self.path, exc)
                return otp.OtpVerdict(False, "users file unreadable")
            if len(data) > MAX_OTP_FILE_BYTES:
                log.error("OTP users file %s is larger than %d bytes", self.path,
                          MAX_OTP_FILE_BYTES)
                return otp.OtpVerdict(False, "users file too large")
            users = otp.parse_usersfile(data.decode("utf-8", "surrogateescape"))
            for error in users.errors:
                log.error("%s:%d: %s%s", self.path, error.line + 1, error.message,
                          f" (user '{error.user}' cannot log in)" if error.user
                          else " (nobody can log in with one-time passwords)")
            result = otp.check(users, username, answer, self._clock(),
                               password_verified=password_verified)
            if result.ok and result.text is not None:
                try:
                    mode, owner = existing_mode_and_owner(self.path)
                    write_atomic(self.path, result.text.encode("utf-8", "surrogateescape"),
                                 0o600 if mode is None else mode, owner=owner)
                except OSError as exc:
                    log.error("cannot record the used one-time password in %s: %s",
                              self.path, exc)
                    return otp.OtpVerdict(False, "users file not writable")
            return result
        finally:
            os.close(fd)  # releases the lock

    def _open_locked(self) -> int:
        """The file, opened and flock()ed; reopened if it was replaced while we waited,
        so that two checks of one user never both see the same counter."""
        deadline = time.monotonic() + OTP_LOCK_WAIT
        while True:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise OSError("the file stays locked by another process") \
                                from None
                        time.sleep(0.01)
                held, now = os.fstat(fd), os.stat(self.path)
            except BaseException:
                os.close(fd)
                raise
            if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                return fd
            os.close(fd)


def _read_all(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
