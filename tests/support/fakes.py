"""Fakes of the interfaces the tests stand in for.

:class:`FakeProvider` is main as the control server sees it (the ``ControlProvider``
protocol of appliance/vpn/control/schema.py): it answers from the state a test gives it
and records every order, so that tests of the control server, occtl and the web UI's
control client check what reached "main".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from appliance.vpn.control import BanInfo, SessionInfo, StatusInfo, UserInfo


@dataclass
class FakeProvider:
    user_list: list[UserInfo]
    session_list: list[SessionInfo] = field(default_factory=list)
    ban_list: list[BanInfo] = field(default_factory=list)
    #: ``status()`` reports this, with ``active_sessions`` = the users now connected.
    status_info: StatusInfo = field(default_factory=StatusInfo)
    bannable: str = ""  # the one address ``unban`` finds
    reload_text: str = "configuration reloaded"
    drop_disconnected: bool = False  # disconnect orders remove the users, as main would
    stoppable: bool = True  # False: a ``stop`` order fails the test
    fail: bool = False  # True: status/users raise, as a buggy main would
    calls: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def reloads(self) -> int:
        return sum(1 for name, _ in self.calls if name == "reload")

    def _check(self) -> None:
        if self.fail:
            raise RuntimeError("provider bug")

    def status(self) -> StatusInfo | dict[str, Any]:
        self._check()
        return dataclasses.replace(self.status_info, active_sessions=len(self.user_list))

    def users(self) -> list[UserInfo]:
        self._check()
        return list(self.user_list)

    def sessions(self) -> list[SessionInfo]:
        return list(self.session_list)

    def bans(self) -> list[BanInfo]:
        return list(self.ban_list)

    def _disconnect(self, order: str, arg: Any, hit: list[UserInfo]) -> int:
        self.calls.append((order, arg))
        if self.drop_disconnected:
            self.user_list = [u for u in self.user_list if u not in hit]
        return len(hit)

    def disconnect_user(self, name: str) -> int:
        return self._disconnect("disconnect_user", name,
                                [u for u in self.user_list if u.username == name])

    def disconnect_id(self, id: int) -> bool:
        return self._disconnect("disconnect_id", id, [u for u in self.user_list if u.id == id]) > 0

    def unban(self, ip: str) -> bool:
        self.calls.append(("unban", ip))
        return ip == self.bannable

    def reload(self) -> str:
        self.calls.append(("reload", None))
        return self.reload_text

    def stop(self) -> None:
        if not self.stoppable:
            raise AssertionError("the UI never stops the server")
        self.calls.append(("stop", None))
