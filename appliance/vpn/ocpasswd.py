"""``ocpasswd``-compatible tool for the plain password file (docs/protocol.md §10.8).

Same options, messages, exit codes and file handling as ocserv 1.1.6's ocpasswd, so
existing provisioning scripts keep working: options are parsed GNU-getopt style
(permuted, bundled, ``--long[=value]`` with unique prefixes), an unknown option is
reported and then ignored, usage/version text goes to stderr.  Deliberate
differences: an empty password from a terminal is refused, user and group names that
would corrupt the file (``:``, line breaks) are refused, the file is fsynced, and a
new line is never glued onto an unterminated last line.

Run as ``python3 -m appliance.vpn.ocpasswd [-c FILE] [-g GROUP] [-d|-l|-u] USER``.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from appliance.vpn.passwd import (
    PasswdError,
    delete_user_text,
    hash_password,
    lock_user_text,
    set_user_text,
    unlock_user_text,
    write_text_atomic,
)

__all__ = ["DEFAULT_PASSWD_FILE", "main"]

PROG = "ocpasswd"
DEFAULT_PASSWD_FILE = "/etc/ocserv/ocpasswd"
DEFAULT_GROUP = "*"
COMPAT_VERSION = "1.1.6"

_SHORT_WITH_ARG = "cg"
_SHORT_FLAGS = "dluvh"
_LONG_OPTIONS = {  # long name -> (short letter, takes an argument)
    "passwd": ("c", True),
    "groupname": ("g", True),
    "delete": ("d", False),
    "lock": ("l", False),
    "unlock": ("u", False),
    "help": ("h", False),
    "version": ("v", False),
}

_USAGE = f"""{PROG} - OpenConnect server password utility
Usage:  {PROG} [ -<flag> [<val>] | --<name>[{{=| }}<val>] ]... [username]

   -c, --passwd=file          Password file (default {DEFAULT_PASSWD_FILE})
   -g, --groupname=str        User's group name (default "{DEFAULT_GROUP}": no group)
   -d, --delete               Delete user
   -l, --lock                 Lock user
   -u, --unlock               Unlock user
   -v, --version              output version information and exit
   -h, --help                 display extended usage information and exit

Long options may be abbreviated; a short flag may be bundled with others.
Without -d, -l or -u the user's password is set: asked twice on a terminal,
otherwise read as one line from standard input.

Manages the 'plain' password file read by the VPN server (ocserv format).
"""

_VERSION = f"""{PROG} (OCGate) - {COMPAT_VERSION}
Compatible with the ocpasswd of ocserv {COMPAT_VERSION}; part of OCGate.
"""


class _Exit(Exception):
    """Ends the run with a status, like ocpasswd's exit() calls."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Options:
    passwd_file: str | None = None
    group: str | None = None
    action: str | None = None  # 'delete' | 'lock' | 'unlock'; None = set password
    operands: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- options


class _OptionParser:
    """GNU getopt_long semantics, including its habit of continuing after bad options."""

    def __init__(self, stderr: TextIO) -> None:
        self.stderr = stderr
        self.opts = _Options()

    def parse(self, argv: list[str]) -> _Options:
        index = 0
        while index < len(argv):
            arg = argv[index]
            index += 1
            if arg == "--":
                self.opts.operands.extend(argv[index:])
                break
            if arg.startswith("--"):
                index = self._long(arg[2:], argv, index)
            elif arg.startswith("-") and arg != "-":
                index = self._short_cluster(arg[1:], argv, index)
            else:
                self.opts.operands.append(arg)
        return self.opts

    def _complain(self, text: str) -> None:
        self.stderr.write(f"{PROG}: {text}\n")

    def _long(self, body: str, argv: list[str], index: int) -> int:
        name, has_value, value = body.partition("=")
        matches = [long for long in _LONG_OPTIONS if long.startswith(name)]
        if name in _LONG_OPTIONS:
            matches = [name]
        if len(matches) != 1:
            if matches:
                self._complain(f"option '--{name}' is ambiguous")
            else:
                self._complain(f"unrecognized option '--{name}'")
            return index
        long = matches[0]
        letter, takes_arg = _LONG_OPTIONS[long]
        if not takes_arg:
            if has_value:
                self._complain(f"option '--{long}' doesn't allow an argument")
                return index
            self._apply(letter, None)
            return index
        if not has_value:
            if index >= len(argv):
                self._complain(f"option '--{long}' requires an argument")
                return index
            value = argv[index]
            index += 1
        self._apply(letter, value)
        return index

    def _short_cluster(self, cluster: str, argv: list[str], index: int) -> int:
        for pos, letter in enumerate(cluster):
            if letter in _SHORT_WITH_ARG:
                value = cluster[pos + 1 :]
                if not value:
                    if index >= len(argv):
                        self._complain(f"option requires an argument -- '{letter}'")
                        return index
                    value = argv[index]
                    index += 1
                self._apply(letter, value)
                return index
            if letter in _SHORT_FLAGS:
                self._apply(letter, None)
            else:
                self._complain(f"invalid option -- '{letter}'")
        return index

    def _apply(self, letter: str, value: str | None) -> None:
        opts = self.opts
        if letter == "c":
            if opts.passwd_file is not None:
                raise _Exit(1, "-c option cannot be specified multiple time")
            opts.passwd_file = value
        elif letter == "g":
            if opts.group is not None:
                raise _Exit(1, "-g option cannot be specified multiple time")
            opts.group = value
        elif letter in "dlu":
            if opts.action is not None:
                raise _Exit(1, _USAGE)
            opts.action = {"d": "delete", "l": "lock", "u": "unlock"}[letter]
        elif letter == "h":
            raise _Exit(0, _USAGE)
        elif letter == "v":
            raise _Exit(0, _VERSION)


# --------------------------------------------------------------------------- actions


def _read_file_for_edit(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise _Exit(1, f"Cannot open '{path}' for reading.") from exc


def _check_not_locked(path: str) -> None:
    """ocpasswd looks for FILE.tmp before anything else and refuses to touch the file."""
    if os.path.lexists(path + ".tmp"):
        raise _Exit(1, f"file '{path}' is locked.")


def _write(path: str, text: str) -> None:
    try:
        write_text_atomic(path, text)
    except PasswdError as exc:  # includes PasswdLockedError: "file '...' is locked."
        raise _Exit(1, str(exc)) from exc


def _edit_existing(path: str, username: str, edit: Callable[[str, str], str]) -> None:
    _check_not_locked(path)
    text = _read_file_for_edit(path)
    _write(path, edit(text, username))


def _read_password(stdin: TextIO | None) -> bytes:
    """Twice from the terminal, or one line from a pipe (ocpasswd's rules)."""
    if stdin is None:  # started without any standard input (e.g. from a service)
        raise _Exit(1, "Please specify a password")
    if stdin.isatty():
        try:
            first = getpass.getpass("Enter password: ")
            second = getpass.getpass("Re-enter password: ")
        except (EOFError, KeyboardInterrupt) as exc:
            raise _Exit(1, "Please specify a password") from exc
        if first != second:
            raise _Exit(1, "Passwords do not match")
        if not first:
            raise _Exit(1, "Please specify a password")
        return first.encode("utf-8")
    line = stdin.buffer.readline() if hasattr(stdin, "buffer") else stdin.readline().encode()
    # ocpasswd refuses a line of one byte or less (so "x" without newline too).
    if len(line) <= 1:
        raise _Exit(1, "Please specify a password")
    return line.removesuffix(b"\n")


def _set_password(path: str, username: str, group: str, stdin: TextIO | None) -> None:
    password = _read_password(stdin)
    new_hash = hash_password(password)
    _check_not_locked(path)
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise _Exit(1, f"Cannot open '{path}' for reading.") from exc
    try:
        new_text = set_user_text(text, username, group, new_hash)
    except PasswdError as exc:
        raise _Exit(1, str(exc)) from exc
    _write(path, new_text)


def _validate_names(username: str, group: str) -> None:
    for value, what in ((username, "username"), (group, "group name")):
        if not value or any(ch in value for ch in ":\r\n\0"):
            raise _Exit(1, f"Invalid {what} '{value}'")


def _run(argv: list[str], stdin: TextIO | None, stderr: TextIO) -> None:
    opts = _OptionParser(stderr).parse(argv)
    if len(opts.operands) != 1:
        raise _Exit(1, _USAGE)
    username = opts.operands[0]
    group = opts.group if opts.group is not None else DEFAULT_GROUP
    path = opts.passwd_file if opts.passwd_file is not None else DEFAULT_PASSWD_FILE
    edits = {"lock": lock_user_text, "unlock": unlock_user_text, "delete": delete_user_text}
    if opts.action is not None:
        _edit_existing(path, username, edits[opts.action])
        return
    _validate_names(username, group)
    _set_password(path, username, group, stdin)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status instead of exiting (testable in-process)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        _run(args, sys.stdin, sys.stderr)
    except _Exit as done:
        if done.message:
            sys.stderr.write(done.message if done.message.endswith("\n") else done.message + "\n")
        return done.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
