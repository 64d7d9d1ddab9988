"""listen-netns: main opens its network sockets in another network namespace.

ocserv 1.1.6 keeps the whole server (TUN devices, routes, scripts, the sec-mod's RADIUS
traffic) in the namespace it was started in, and only the client-facing sockets (the TCP
and UDP listeners and each client's connected UDP socket) in the named one, so the
outside network and the VPN's inside can be two separate namespaces.  A socket stays in
the namespace it was created in, so main switches its (single) thread into the listen
namespace around ``socket()`` and straight back.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import socket
from collections.abc import Iterator

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000  # linux/sched.h
NETNS_DIR = "/var/run/netns"  # where `ip netns add` names them; ocserv looks there too

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class ListenNamespace:
    """File descriptors of our own namespace and the listen namespace, opened at start
    (before any privilege is dropped), and a way to make sockets in the latter."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._own = -1
        self._listen = -1
        if name is None:
            return
        if "/" in name or name in (".", ".."):
            raise OSError(f"listen-netns '{name}' is not a namespace name")
        path = os.path.join(NETNS_DIR, name)
        self._own = os.open(f"/proc/{os.getpid()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._listen = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            os.close(self._own)
            raise OSError(exc.errno, f"cannot open listen namespace {path}: "
                          f"{exc.strerror}") from None
        log.info("listen-netns=%s sockets open in that namespace", name)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block in the listen namespace (nothing happens without listen-netns)."""
        if self._listen < 0:
            yield
            return
        _setns(self._listen)
        try:
            yield
        finally:
            _setns(self._own)  # failing here would leave main in the wrong namespace

    def socket(self, family: int, kind: int) -> socket.socket:
        """A socket of the listen namespace."""
        with self.entered():
            return socket.socket(family, kind)

    def close(self) -> None:
        for fd in (self._own, self._listen):
            if fd >= 0:
                os.close(fd)
        self._own = self._listen = -1
