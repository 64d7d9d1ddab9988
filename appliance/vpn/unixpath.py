"""AF_UNIX paths of any length: the kernel takes at most 107 bytes in ``sun_path``.

A ``socket-file`` or ``occtl-socket-file`` under a deep directory (a relative name in a
long working directory, a test's work folder, a container's bind mount) is longer than
that once made absolute; ocserv still works there.  Binding or connecting through an
``O_PATH`` descriptor of the directory (``/proc/self/fd/N/name``) keeps the address short
while naming the same file.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

#: ``sizeof(sun_path)`` on Linux, less the terminating NUL.
MAX_PATH = 107


@contextlib.contextmanager
def short_path(path: str) -> Iterator[str]:
    """``path`` itself when it fits, else the same file through its directory's descriptor."""
    if len(os.fsencode(path)) <= MAX_PATH:
        yield path
        return
    directory, name = os.path.split(os.path.abspath(path))
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def bind(sock: socket.socket, path: str) -> None:
    with short_path(path) as address:
        sock.bind(address)


def connect(sock: socket.socket, path: str) -> None:
    with short_path(path) as address:
        sock.connect(address)
