"""The web UI's typed view of the VPN server's control socket (docs/control-protocol.md).

The admin UI may only talk to the VPN through this socket (docs/architecture.md, "Web and wizard").
The wire code is shared with occtl (:class:`appliance.vpn.control.client.ControlClient`);
this module adds what a web page needs on top of it: one short-lived connection per call (a
page never holds the server's control slot), decoded dataclass records instead of dicts, and
a single exception type, :class:`VpnUnavailable`, so that a stopped server renders as
"offline" instead of an error page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypeVar

from ..vpn.control import BanInfo, ControlError, SessionInfo, StatusInfo, UserInfo, from_wire
from ..vpn.control.client import ConnectFailed, ControlClient, ServerError, Unreachable

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Web requests must never hang on a wedged server: a page gives up after this long.
DEFAULT_TIMEOUT = 3.0


class VpnUnavailable(RuntimeError):
    """The VPN server is not running, not reachable, or answered something unusable."""


class VpnCommandError(RuntimeError):
    """The server understood the request and refused it (``ok: false``)."""


@dataclass(frozen=True)
class Snapshot:
    """One consistent-enough look at the server for a page: status plus connected users."""

    status: StatusInfo
    users: list[UserInfo]


class VpnControl:
    """Calls on the control socket at ``path``; every method opens its own connection."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    def _call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            with ControlClient(self.path, self.timeout) as client:
                return client.call(cmd, args)
        except ConnectFailed as exc:
            raise VpnUnavailable(str(exc)) from None
        except Unreachable:
            raise VpnUnavailable(f"no usable answer on {self.path}") from None
        except ServerError as exc:
            raise VpnCommandError(str(exc)) from None
        except OSError as exc:  # timeouts while reading
            raise VpnUnavailable(f"control socket {self.path}: {exc}") from None

    def _records(self, cls: type[T], cmd: str, args: dict[str, Any] | None = None) -> list[T]:
        data = self._call(cmd, args)
        if not isinstance(data, list):
            raise VpnUnavailable(f"'{cmd}' did not answer with a list")
        try:
            return [from_wire(cls, item) for item in data]
        except ControlError as exc:
            raise VpnUnavailable(f"'{cmd}': {exc}") from None

    # ---- reading
    def status(self) -> StatusInfo:
        try:
            return from_wire(StatusInfo, self._call("show status"))
        except ControlError as exc:
            raise VpnUnavailable(f"'show status': {exc}") from None

    def users(self) -> list[UserInfo]:
        return self._records(UserInfo, "show users")

    def sessions(self) -> list[SessionInfo]:
        return self._records(SessionInfo, "show sessions all")

    def bans(self) -> list[BanInfo]:
        return self._records(BanInfo, "show ip bans")

    def snapshot(self) -> Snapshot:
        return Snapshot(self.status(), self.users())

    # ---- orders
    def disconnect_id(self, id: int) -> bool:
        data = self._call("disconnect id", {"id": id})
        return bool(isinstance(data, dict) and data.get("disconnected"))

    def disconnect_user(self, name: str) -> int:
        data = self._call("disconnect user", {"name": name})
        count = data.get("count") if isinstance(data, dict) else None
        return count if isinstance(count, int) else 0

    def unban(self, ip: str) -> bool:
        data = self._call("unban ip", {"ip": ip})
        return bool(isinstance(data, dict) and data.get("unbanned"))

    def reload(self) -> str:
        data = self._call("reload")
        message = data.get("message") if isinstance(data, dict) else None
        return str(message or "reload requested")
