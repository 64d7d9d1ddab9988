"""The ocpasswd "plain" password file (docs/protocol.md §10.8).

Format: ``username:group[,group2…]:HASH`` per line, exactly as ocserv's plain auth
module reads it, so an existing ``/etc/ocserv/ocpasswd`` keeps working unchanged.
HASH is a crypt(3) string: ``$1$``/``$5$``/``$6$`` are verified with passlib (always
available, pure Python); every other scheme (``$y$`` yescrypt, ``$2b$`` bcrypt, …) is
handed to the system libxcrypt through ctypes when that library is present, because
no installed Python package implements yescrypt.  Without libxcrypt such hashes
never verify (logged as unsupported).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt

from ..atomicfile import fsync_dir

__all__ = [
    "PasswdEntry",
    "PasswdError",
    "PasswdLockedError",
    "delete_user_text",
    "format_passwd",
    "hash_password",
    "load_passwd",
    "lock_user_text",
    "parse_passwd",
    "set_user_text",
    "unlock_user_text",
    "verify_password",
    "write_passwd_atomic",
    "write_text_atomic",
]

log = logging.getLogger(__name__)

SALT_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ./"
SALT_LENGTH = 16
_MIN_LINE_CHARS = 5  # ocserv skips lines of 4 characters or fewer (counting the newline)
_MAX_GROUPS = 512
_CRYPT_DATA_SIZE = 32768  # sizeof(struct crypt_data) in libxcrypt
# A well-formed $5$ hash with ocpasswd's parameters: spent on unknown or locked users so
# that the answer time does not reveal whether the account exists.
_DUMMY_HASH = "$5$OCGateTimingEqlz$J9LiwZtrD2om4dm3YgbOc6xJdLceEHbfd2Y719WuUnA"


class PasswdError(ValueError):
    """Unusable password file, bad entry, or a failed update."""


class PasswdLockedError(PasswdError):
    """``FILE.tmp`` exists: another ocpasswd run is (or was left) in progress."""


@dataclass
class PasswdEntry:
    """One user line; ``groups`` excludes the one-character placeholders such as ``*``."""

    username: str
    groups: list[str] = field(default_factory=list)
    hash: str = ""

    @property
    def locked(self) -> bool:
        return self.hash.startswith("!")


# --------------------------------------------------------------------------- reading


def parse_passwd(text: str) -> dict[str, PasswdEntry]:
    """Parse the file like ocserv's plain module: the first line for a user wins.

    Lines without a hash field are skipped (ocserv treats them as "no such user").
    """
    entries: dict[str, PasswdEntry] = {}
    for line in _lines(text):
        entry = _parse_line(line)
        if entry is not None and entry.username not in entries:
            entries[entry.username] = entry
    return entries


def _lines(text: str) -> list[str]:
    """Split on LF only, keeping it: ocserv uses fgets/getline, so U+2028, VT, FF … are data."""
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def _parse_line(line: str) -> PasswdEntry | None:
    if len(line) < _MIN_LINE_CHARS:
        return None
    line = line.removesuffix("\n").removesuffix("\r")
    parts = line.split(":", 3)
    if len(parts) < 3 or not parts[0]:
        return None
    username, groups, hash_ = parts[0], parts[1], parts[2]
    return PasswdEntry(username, _parse_groups(groups), hash_)


def _parse_groups(text: str) -> list[str]:
    groups = [name.strip() for name in text.split(",")]
    return [name for name in groups if len(name) > 1][:_MAX_GROUPS]


def load_passwd(path: str | os.PathLike[str]) -> dict[str, PasswdEntry]:
    """Read and parse a password file; undecodable bytes survive via surrogateescape."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PasswdError(f"cannot read password file {os.fspath(path)!r}: {exc.strerror}") from exc
    return parse_passwd(data.decode("utf-8", "surrogateescape"))


# --------------------------------------------------------------------------- writing


def _check_field(value: str, what: str, extra: str = "") -> None:
    bad = ":\r\n\0" + extra
    if any(ch in value for ch in bad):
        raise PasswdError(f"{what} must not contain any of {bad!r}")


def format_entry(entry: PasswdEntry, groups_field: str | None = None) -> str:
    """One line with its newline; no groups is written as ``*`` like ocpasswd."""
    _check_field(entry.username, "username")
    if not entry.username:
        raise PasswdError("empty username")
    if groups_field is None:
        for group in entry.groups:
            _check_field(group, "group name", ",")
        groups_field = ",".join(entry.groups) or "*"
    _check_field(groups_field, "group field")
    _check_field(entry.hash, "password hash")
    return f"{entry.username}:{groups_field}:{entry.hash}\n"


def format_passwd(entries: Mapping[str, PasswdEntry] | Iterable[PasswdEntry]) -> str:
    values = entries.values() if isinstance(entries, Mapping) else entries
    return "".join(format_entry(entry) for entry in values)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` the way ocpasswd does, but crash-safe.

    ``path + '.tmp'`` is created exclusively (its presence is ocpasswd's lock), written,
    fsynced and renamed over the target.  New files get mode 0600; an existing file
    keeps its permission bits and, when we may, its owner.
    """
    target = os.fspath(path)
    tmp = target + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError as exc:
        raise PasswdLockedError(f"file '{target}' is locked.") from exc
    except OSError as exc:
        raise PasswdError(f"Cannot open '{tmp}' for writing.") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8", "surrogateescape"))
            handle.flush()
            _copy_metadata(target, handle.fileno())
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise PasswdError(f"Cannot write to '{target}'.") from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(os.path.dirname(target) or ".")


def _copy_metadata(target: str, fd: int) -> None:
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return
    os.fchmod(fd, st.st_mode & 0o7777)
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except PermissionError:
        log.debug("cannot keep the owner of %s (not privileged)", target)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        log.debug("could not remove %s", path)


def write_passwd_atomic(
    path: str | os.PathLike[str], entries: Mapping[str, PasswdEntry] | Iterable[PasswdEntry]
) -> None:
    write_text_atomic(path, format_passwd(entries))


# ------------------------------------------------------ line-preserving edits (ocpasswd)
#
# ocpasswd rewrites the file line by line: lines of other users are copied verbatim and
# lines without any ':' are dropped.  These helpers reproduce that on text so that an
# admin's file (comments aside) survives our tool exactly as it survives ocpasswd.


def _rewrite(text: str, username: str, edit: Callable[[str], str | None]) -> tuple[str, bool]:
    out: list[str] = []
    found = False
    for line in _lines(text):
        name, sep, _ = line.partition(":")
        if not sep:
            continue
        if name == username:
            found = True
            new = edit(line)
            if new is not None:
                out.append(new)
        else:
            out.append(line)
    return "".join(out), found


def set_user_text(text: str, username: str, groups_field: str, password_hash: str) -> str:
    """Replace the user's line(s), or append one; returns the new file text."""
    line = format_entry(PasswdEntry(username, [], password_hash), groups_field)
    new_text, found = _rewrite(text, username, lambda _old: line)
    if found:
        return new_text
    if new_text and not new_text.endswith("\n"):
        new_text += "\n"  # ocpasswd would glue the new user onto an unterminated last line
    return new_text + line


def delete_user_text(text: str, username: str) -> str:
    return _rewrite(text, username, lambda _old: None)[0]


def _hash_start(line: str) -> int | None:
    """Offset of the hash field in a line, or None when the line has no second ':'."""
    first = line.find(":")
    second = line.find(":", first + 1)
    return None if second < 0 else second + 1


def lock_user_text(text: str, username: str) -> str:
    def lock(line: str) -> str | None:
        start = _hash_start(line)
        if start is None:
            return None
        if line.startswith("!", start):
            return line
        return line[:start] + "!" + line[start:]

    return _rewrite(text, username, lock)[0]


def unlock_user_text(text: str, username: str) -> str:
    def unlock(line: str) -> str | None:
        start = _hash_start(line)
        if start is None:
            return None
        if line.startswith("!", start):
            return line[:start] + line[start + 1 :]
        return line

    return _rewrite(text, username, unlock)[0]


# --------------------------------------------------------------------------- hashing

_PASSLIB_SCHEMES = {"$1$": md5_crypt, "$5$": sha256_crypt, "$6$": sha512_crypt}


def hash_password(password: str | bytes) -> str:
    """``$5$`` + 16 salt characters + ``$`` + digest, 5000 implicit rounds: what ocpasswd writes."""
    salt = "".join(secrets.choice(SALT_ALPHABET) for _ in range(SALT_LENGTH))
    return sha256_crypt.using(rounds=5000, salt=salt).hash(password)


def verify_password(entry: PasswdEntry | None, password: str | bytes) -> bool:
    """crypt(3)-compatible check that costs one hash computation whatever the outcome.

    Unknown users, locked and empty hashes and malformed hashes all burn a ``$5$``
    computation against a dummy hash, so response time does not tell them apart from a
    wrong password for a real user (ocserv master does the same).
    """
    hash_ = entry.hash if entry is not None else ""
    if entry is None or not hash_ or entry.locked:
        _burn(password)
        return False
    scheme = _PASSLIB_SCHEMES.get(hash_[:3])
    if scheme is not None:
        try:
            return bool(scheme.verify(password, hash_))
        except (ValueError, TypeError):
            # passlib is stricter than glibc (e.g. rounds below 1000 are clamped by crypt,
            # refused by passlib); let the system decide, as it does for ocserv.
            log.debug("passlib refused the hash of user %r; trying libcrypt", entry.username)
    return _verify_with_libcrypt(entry.username, password, hash_)


def _burn(password: str | bytes) -> None:
    try:
        sha256_crypt.verify(password, _DUMMY_HASH)
    except (ValueError, TypeError):
        sha256_crypt.verify("", _DUMMY_HASH)


def _verify_with_libcrypt(username: str, password: str | bytes, hash_: str) -> bool:
    crypt_rn = _libcrypt()
    secret = password.encode("utf-8") if isinstance(password, str) else password
    setting = hash_.encode("utf-8", "surrogateescape")
    if crypt_rn is None:
        log.warning("hash scheme of user %r is not supported (no libcrypt)", username)
        _burn(password)
        return False
    if b"\0" in secret or b"\0" in setting:
        _burn(password)
        return False
    buffer = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
    result = crypt_rn(secret, setting, buffer, _CRYPT_DATA_SIZE)
    if not result or result.startswith(b"*"):
        log.warning("hash of user %r is not understood by libcrypt", username)
        return False
    return hmac.compare_digest(result, setting)


@functools.cache
def _libcrypt() -> Callable[[bytes, bytes, ctypes.Array[ctypes.c_char], int], bytes | None] | None:
    """libxcrypt's reentrant ``crypt_rn``, loaded once; None where it does not exist."""
    name = ctypes.util.find_library("crypt")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).crypt_rn
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_char_p
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    return function
