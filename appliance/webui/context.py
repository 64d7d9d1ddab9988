"""Everything the admin UI's pages share, in one object the app factory receives.

Tests build a context with a fake VPN control and a temporary state folder; the command
line builds one for the device.  Nothing here talks to the VPN except through ``vpn``
(the control socket client) and nothing edits files except through the config module,
the passwd module and the helpers built on them (docs/architecture.md, "Web and wizard").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..state import StateLayout
from ..vpn.config import Config, ConfigError, load_config
from ..vpn.control import BanInfo, SessionInfo, StatusInfo, UserInfo
from ..web.langprefs import LanguagePrefs
from ..web.ratelimit import RateLimiter
from ..web.vpnclient import Snapshot, VpnControl
from .auth import AdminSessions, LoginGuard
from .clientcerts import ClientCerts
from .logsource import LogSource
from .metrics import TOKEN_FILE
from .onetime import OneTimeDownloads
from .settingsform import DraftStore
from .system import SystemHealth, read_health
from .totp import TotpStore
from .traffic import ThroughputHistory
from .updates import Updates
from .userstore import UserStore


class Vpn(Protocol):
    """What the pages need from the VPN server (VpnControl, or a fake in tests)."""

    def status(self) -> StatusInfo: ...
    def users(self) -> list[UserInfo]: ...
    def sessions(self) -> list[SessionInfo]: ...
    def bans(self) -> list[BanInfo]: ...
    def snapshot(self) -> Snapshot: ...
    def disconnect_id(self, id: int) -> bool: ...
    def disconnect_user(self, name: str) -> int: ...
    def unban(self, ip: str) -> bool: ...
    def reload(self) -> str: ...


def control_socket_path(layout: StateLayout) -> str:
    """``occtl-socket-file`` from ocserv.conf, else the layout's default."""
    try:
        cfg = load_config(str(layout.conf))
    except ConfigError:
        return str(layout.occtl_socket)
    return cfg.occtl_socket_file


def global_limiter() -> RateLimiter:
    """Across all addresses: 30 free failures, then exponential waits up to 5 minutes."""
    return RateLimiter(free_failures=30, base_delay=1.0, max_delay=300.0)


@dataclass
class WebUIContext:
    layout: StateLayout
    vpn: Vpn
    https: bool = False
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    health: Callable[[], SystemHealth] = read_health
    logs: LogSource = field(default_factory=LogSource)
    guard: LoginGuard = field(default_factory=LoginGuard)
    overall: RateLimiter = field(default_factory=global_limiter)
    sessions: AdminSessions = field(default_factory=AdminSessions)
    history: ThroughputHistory = field(default_factory=ThroughputHistory)
    drafts: DraftStore = field(default_factory=DraftStore)
    files_lock: threading.RLock = field(default_factory=threading.RLock)
    downloads: OneTimeDownloads = field(default_factory=OneTimeDownloads)
    poll_seconds: float = 2.0
    updates: Updates | None = None

    def __post_init__(self) -> None:
        if self.updates is None:
            self.updates = Updates(self.layout)

    @classmethod
    def for_state(cls, state: str | Path, **kwargs: object) -> WebUIContext:
        layout = StateLayout.at(state)
        return cls(layout=layout, vpn=VpnControl(control_socket_path(layout)),
                   **kwargs)  # type: ignore[arg-type]

    @property
    def users(self) -> UserStore:
        return UserStore(self.layout, self.files_lock)

    @property
    def totp(self) -> TotpStore:
        return TotpStore(self.layout.admin_totp, self.files_lock)

    @property
    def certs(self) -> ClientCerts:
        return ClientCerts(self.layout, self.files_lock)

    @property
    def languages(self) -> LanguagePrefs:
        return LanguagePrefs(self.layout.ui_language)

    @property
    def metrics_token_file(self) -> Path:
        return self.layout.root / TOKEN_FILE

    def config(self) -> Config | None:
        try:
            return load_config(str(self.layout.conf))
        except ConfigError:
            return None
