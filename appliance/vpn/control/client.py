"""The control-socket client used by occtl and the web UI.

It lives beside the server side of the protocol (control/) so that both users share one
wire implementation and the web UI need not import occtl.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

from .. import unixpath
from .schema import PROTOCOL_VERSION

TIMEOUT = 10.0  # occtl's DEFAULT_TIMEOUT
MAX_REPLY = 64 * 1024 * 1024

# --- talking to the server -----------------------------------------------------------------


class ConnectFailed(Exception):
    """The socket could not be reached at all (occtl's 'error connecting' case)."""


class Unreachable(Exception):
    """Connected, but no usable answer came back."""


class ServerError(Exception):
    """The server answered with ok=false."""


class ControlClient:
    """One connection to the control socket."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def __enter__(self) -> ControlClient:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        try:
            unixpath.connect(self.sock, self.path)
        except OSError as exc:
            self.sock.close()
            raise ConnectFailed(
                f"error connecting to ocserv socket '{self.path}': {exc.strerror or exc}"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sock is not None:
            self.sock.close()

    def send(self, cmd: str, args: dict[str, Any] | None = None) -> None:
        assert self.sock is not None
        request = {"v": PROTOCOL_VERSION, "cmd": cmd, "args": args or {}}
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            raise Unreachable() from None

    def read_message(self) -> dict[str, Any] | None:
        """The next line as an object; None at the end of the stream."""
        assert self.sock is not None
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_REPLY:
                raise Unreachable()
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                raise Unreachable() from None
            if not chunk:
                if self.buf.strip():
                    raise Unreachable()
                return None
            self.buf += chunk
        end = self.buf.index(b"\n")
        line = bytes(self.buf[:end])
        del self.buf[:end + 1]
        try:
            message = json.loads(line)
        except ValueError:
            raise Unreachable() from None
        if not isinstance(message, dict):
            raise Unreachable()
        return message

    def reply(self) -> Any:
        message = self.read_message()
        if message is None or not isinstance(message.get("ok"), bool):
            raise Unreachable()
        if not message["ok"]:
            raise ServerError(str(message.get("error", "unknown error")))
        return message.get("data")

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.send(cmd, args)
        return self.reply()

    def events(self) -> Iterator[dict[str, Any]]:
        while (message := self.read_message()) is not None:
            event = message.get("event")
            if isinstance(event, dict):
                yield event
