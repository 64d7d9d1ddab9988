"""The control socket's thin shell in main's selector loop (docs/control-protocol.md)."""

from __future__ import annotations

import logging
import os
import secrets
import selectors
import socket
import stat
import struct
import time
from collections.abc import Callable
from typing import Any

from .. import unixpath
from .protocol import ClientConn, Dispatcher, Limits, encode, error_reply, event_message
from .schema import ControlProvider

log = logging.getLogger(__name__)


# --- the socket shell ----------------------------------------------------------------------

_PEERCRED = struct.Struct("3i")


def _same_inode(path: str, ident: tuple[int, int]) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident


def bind_socket(path: str, backlog: int = 16) -> tuple[socket.socket, tuple[int, int]]:
    """A listening unix socket at ``path``, mode 0600, put in place by one rename.

    Binding a hidden name under umask 0177 and renaming it over ``path`` means the
    socket never exists with looser permissions and occtl never finds the path missing
    while we restart. Something at ``path`` that is not a socket is left alone.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(f"{path} exists and is not a socket; not replacing it")
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        old = os.umask(0o177)
        try:
            unixpath.bind(sock, tmp)
        finally:
            os.umask(old)
        try:
            os.chmod(tmp, 0o600)
            sock.listen(backlog)
            sock.setblocking(False)
            tmp_st = os.lstat(tmp)
            os.rename(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except BaseException:
        sock.close()
        raise
    return sock, (tmp_st.st_dev, tmp_st.st_ino)


class ControlServer:
    """The control socket inside main's selector loop.

    Callbacks follow main's convention: each registered object's ``data`` is a callable
    taking the ready file object. ``sweep`` must be called about once a second to enforce
    the idle timeout; it is also run on every accept.
    """

    def __init__(self, path: str, provider: ControlProvider, *, limits: Limits | None = None,
                 clock: Callable[[], float] | None = None,
                 allowed_uids: frozenset[int] | None = None) -> None:
        self.path = path
        self.limits = limits or Limits()
        self.clock = clock or time.time
        self.allowed_uids = allowed_uids if allowed_uids is not None else frozenset(
            {0, os.geteuid()})
        self.dispatcher = Dispatcher(provider)
        self.listener, self._ident = bind_socket(path)
        self.sel: selectors.BaseSelector | None = None
        self._clients: dict[int, tuple[socket.socket, ClientConn]] = {}
        self._masks: dict[int, int] = {}
        log.info("control socket listening on %s", path)

    def fileno(self) -> int:
        return self.listener.fileno()

    def register(self, sel: selectors.BaseSelector) -> None:
        self.sel = sel
        sel.register(self.listener, selectors.EVENT_READ, self._on_accept)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    # accept
    def _on_accept(self, listener: socket.socket) -> None:
        self.sweep()
        for _ in range(16):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("control accept failed: %s", exc)
                return
            try:
                self._admit(sock)
            except Exception:  # noqa: BLE001 - never into main's loop
                log.exception("control client setup failed")
                self._drop(sock)

    def _admit(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            _pid, uid, _gid = _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        except OSError:
            uid = -1
        if uid not in self.allowed_uids:
            log.warning("control connection from uid %d refused", uid)
            sock.close()
            return
        if len(self._clients) >= self.limits.max_clients:
            log.warning("control connection refused: %d clients already", len(self._clients))
            try:
                sock.send(encode(error_reply("too many control clients")), socket.MSG_NOSIGNAL)
            except OSError:
                pass
            sock.close()
            return
        conn = ClientConn(self.dispatcher, self.limits, self.clock())
        self._clients[sock.fileno()] = (sock, conn)
        self._masks[sock.fileno()] = 0
        self._update(sock, conn)

    # clients
    def _on_client(self, sock: socket.socket) -> None:
        entry = self._clients.get(sock.fileno())
        if entry is None:
            return
        conn = entry[1]
        try:
            self._flush(sock, conn)
            if conn.wants_read:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                if data is not None:
                    conn.receive(data, self.clock())
                    self._flush(sock, conn)
        except OSError as exc:
            log.debug("control client gone: %s", exc)
            self._drop(sock)
            return
        except Exception:  # noqa: BLE001 - never into main's loop
            log.exception("control client handling failed")
            self._drop(sock)
            return
        self._update(sock, conn)

    def _flush(self, sock: socket.socket, conn: ClientConn) -> None:
        while conn.outbuf:
            try:
                count = sock.send(conn.pending(), socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return
            conn.sent(count, self.clock())

    def _update(self, sock: socket.socket, conn: ClientConn) -> None:
        """Close a finished client, or watch it for what it needs next."""
        if conn.done:
            self._drop(sock)
            return
        mask = (selectors.EVENT_READ if conn.wants_read else 0) | (
            selectors.EVENT_WRITE if conn.outbuf else 0)
        fd = sock.fileno()
        current = self._masks.get(fd, 0)
        if mask == current or self.sel is None:
            return
        if current and mask:
            self.sel.modify(sock, mask, self._on_client)
        elif mask:
            self.sel.register(sock, mask, self._on_client)
        else:
            self.sel.unregister(sock)
        self._masks[fd] = mask

    def _drop(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        self._clients.pop(fd, None)
        if self._masks.pop(fd, 0) and self.sel is not None:
            try:
                self.sel.unregister(sock)
            except (KeyError, ValueError):
                pass
        sock.close()

    def sweep(self, now: float | None = None) -> None:
        """Close clients that made no progress within the idle timeout."""
        now = self.clock() if now is None else now
        for sock, conn in list(self._clients.values()):
            if conn.expired(now):
                log.info("closing an idle control client")
                self._drop(sock)

    # events
    def publish_event(self, event: dict[str, Any]) -> None:
        """Send an event (see make_event) to every ``show events`` subscriber."""
        subscribers = [(s, c) for s, c in self._clients.values() if c.subscribed]
        if not subscribers:
            return
        try:
            line = encode(event_message(event))
        except (TypeError, ValueError) as exc:
            log.error("control event is not JSON-serialisable: %s", exc)
            return
        for sock, conn in subscribers:
            try:
                conn.push_event(line)
                self._flush(sock, conn)
                self._update(sock, conn)
            except Exception as exc:  # noqa: BLE001 - never into main's loop
                log.debug("control subscriber gone: %s", exc)
                self._drop(sock)

    # shutdown
    def close(self) -> None:
        """Stop serving: close every client and the listener, and remove our socket file."""
        for sock, _conn in list(self._clients.values()):
            self._drop(sock)
        if self.sel is not None:
            try:
                self.sel.unregister(self.listener)
            except (KeyError, ValueError):
                pass
        if self.listener.fileno() >= 0:
            self.listener.close()
            if _same_inode(self.path, self._ident):
                try:
                    os.unlink(self.path)
                except OSError:
                    pass

    def close_in_child(self) -> None:
        """In a forked worker or sec-mod: drop our descriptors, leave the socket file be.

        Without this a worker would inherit the listening socket and could accept admin
        connections itself.
        """
        for sock, _conn in self._clients.values():
            sock.close()
        self._clients.clear()
        self._masks.clear()
        self.listener.close()
        self.sel = None
