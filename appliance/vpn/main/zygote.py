"""The zygote: a copy of main, made before any session, that does nothing but fork workers.

Why: a forked worker shares main's pages until one of the two writes to them, and main
never stops writing (every session's accept, CONNECT, TUN set-up over netlink,
accounting, logging). Each page main rewrites after forking a worker stays behind as that
worker's private copy: measured, ~2.7 MB of an idle worker's ~9 MB was main's activity, not
the worker's (docs/performance.md, "Memory"). The zygote is forked once, right after main's
start-up (imports, prewarm, gc.freeze) and then runs nothing, so the pages its workers
share with it stay shared.

Workers must stay main's children: main reaps them with waitpid, kills them by pid, and a
zombie keeps a pid from being reused while main may still signal it. So the zygote forks
with ``CLONE_PARENT`` (the new process's parent is the zygote's parent, main) through the
raw clone system call, wrapped in CPython's own before/after-fork hooks exactly as
``os.fork`` is; the zygote is single-threaded, so no lock can be held across it.

Isolation is unchanged or better: the zygote holds no key (main never has the server key;
the sec-mod does) and no session's state or descriptors (it is older than all sessions),
and every worker still drops privileges and loads the sandbox itself. Where the zygote is
unavailable (an architecture without a known clone number, a failed clone, a dead zygote)
main forks the worker itself, as before.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import signal
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

CLONE_PARENT = 0x00008000
#: clone's system call number; its first argument (flags) is the same on all of these
SYS_CLONE = {"x86_64": 56, "aarch64": 220, "arm64": 220, "riscv64": 220, "armv7l": 120,
             "armv6l": 120}.get(platform.machine())

_libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held across the call
_libc.syscall.restype = ctypes.c_long
_api = ctypes.pythonapi
PR_SET_NAME, PR_GET_NAME = 15, 16
NAME = b"ocgate-zygote"  # its comm in ps and /proc: tests and tools tell it from a worker

#: What runs in a new worker: (client socket, channel to main, peer fields); never returns.
Body = Callable[[socket.socket, socket.socket, list], None]


def _name(new: bytes | None = None) -> bytes:
    """This process's comm (PR_GET_NAME), after setting it to ``new`` if given."""
    if new is not None:
        _libc.prctl(PR_SET_NAME, ctypes.c_char_p(new[:15]), 0, 0, 0)
    buf = ctypes.create_string_buffer(16)
    _libc.prctl(PR_GET_NAME, buf, 0, 0, 0)
    return buf.value


def fork_sibling() -> int:
    """``os.fork``, except that the child's parent is the caller's parent (CLONE_PARENT).
    Returns 0 in the child and the child's pid in the caller; OSError on failure."""
    if SYS_CLONE is None:
        raise OSError(0, f"no clone system call number for {platform.machine()}")
    _api.PyOS_BeforeFork()
    pid = _libc.syscall(SYS_CLONE, CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        _api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, os.strerror(err))
    return pid


class Zygote:
    """main's handle on the zygote process."""

    def __init__(self, pid: int, chan: socket.socket) -> None:
        self.pid = pid
        self.chan = chan
        chan.settimeout(5.0)  # a clone takes a millisecond; a stuck zygote must not hang main

    @classmethod
    def start(cls, close_in_child: Callable[[], None], body: Body) -> Zygote | None:
        """Fork the zygote from main; ``close_in_child`` drops main's descriptors and
        signal handlers in it, ``body`` is what each of its workers runs."""
        if SYS_CLONE is None:
            log.info("zygote=off reason=%r", f"no clone number for {platform.machine()}")
            return None
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                parent.close()
                close_in_child()
                original = _name()
                _name(NAME)
                code = _serve(child, body, original)
            except BaseException:  # noqa: BLE001 - the child must never return into main
                log.exception("zygote failed")
            os._exit(code)
        child.close()
        log.info("zygote=on pid=%d", pid)
        return cls(pid, parent)

    def spawn(self, sock: socket.socket, chan: socket.socket, peer: list) -> int | None:
        """A new worker serving ``sock``, as main's child: its pid, or None when the zygote
        could not make it (main then forks the worker itself)."""
        try:
            socket.send_fds(self.chan, [json.dumps(peer).encode()],
                            [sock.fileno(), chan.fileno()])
            reply = self.chan.recv(64)
        except OSError as exc:
            log.warning("zygote %d unusable (%s); forking workers from main", self.pid, exc)
            return None
        pid = int(reply or b"0")
        return pid if pid > 0 else None

    def stop(self) -> None:
        """Close its channel (it exits on EOF) and reap it."""
        self.chan.close()
        try:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _serve(chan: socket.socket, body: Body, name: bytes) -> int:
    """The zygote's loop: one request (peer fields, client socket, channel) per worker;
    each worker gets back ``name``, main's comm."""
    while True:
        msg, fds, _flags, _addr = socket.recv_fds(chan, 4096, 2)
        if not msg:
            return 0
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            chan.send(b"0")
            continue
        sock, worker_chan = socket.socket(fileno=fds[0]), socket.socket(fileno=fds[1])
        try:
            pid = fork_sibling()
        except OSError as exc:
            log.error("zygote: clone failed: %s", exc)
            pid = -1
        if pid == 0:
            chan.close()
            _name(name)  # a worker is named as before, as main is
            body(sock, worker_chan, json.loads(msg))
            os._exit(1)  # body never returns; this is the backstop
        sock.close()
        worker_chan.close()
        chan.send(str(max(pid, 0)).encode())
