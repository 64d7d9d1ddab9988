"""The control protocol's records (what main reports) and the provider interface."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

from .. import wire

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

T = TypeVar("T")


class ControlError(ValueError):
    """A request or reply that breaks the control protocol (docs/control-protocol.md)."""


# --- records -------------------------------------------------------------------------------


@dataclass
class UserInfo:
    """One connection, with everything ocserv's occtl shows for it (docs/protocol.md section 9).

    ``ipv4``/``ipv6`` are the client's VPN addresses and ``ptp_*`` the server's tun end;
    ``local_ip`` is the server address the client contacted. ``rx`` is what came from the
    client, ``tx`` what was sent to it. Times are epoch seconds. Routes are strings in
    ocserv's form (``198.51.100.0/255.255.255.0``; scripts.format_route makes them).
    ``limit_rx``/``limit_tx`` are bytes per second, 0 meaning no limit.
    """

    id: int
    username: str
    groupname: str = ""
    state: str = "connected"
    vhost: str = "default"
    device: str = ""
    mtu: int = 0
    remote_ip: str = ""
    local_ip: str = ""
    ipv4: str = ""
    ptp_ipv4: str = ""
    ipv6: str = ""
    ptp_ipv6: str = ""
    user_agent: str = ""
    rx: int = 0
    tx: int = 0
    connected_at: float = 0.0
    session_started_at: float = 0.0
    dpd: int = 0
    keepalive: int = 0
    hostname: str = ""
    full_session_id: str = ""
    tls_ciphersuite: str = ""
    dtls_cipher: str = ""
    cstp_compression: str = ""
    dtls_compression: str = ""
    dns: list[str] = field(default_factory=list)
    nbns: list[str] = field(default_factory=list)
    split_dns: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    no_routes: list[str] = field(default_factory=list)
    iroutes: list[str] = field(default_factory=list)
    restrict_to_routes: bool = False
    restrict_to_ports: list[str] = field(default_factory=list)
    limit_rx: int = 0
    limit_tx: int = 0


@dataclass
class SessionInfo:
    """A session (cookie) the security module knows, connected or not.

    ``state`` is ocserv's: authenticated, authenticating, pre-auth or auth failed.
    ``expires`` is None while a connection uses the session.
    """

    full_session_id: str
    username: str = ""
    groupname: str = ""
    vhost: str = "default"
    user_agent: str = ""
    remote_ip: str = ""
    created: float = 0.0
    expires: float | None = None
    state: str = "authenticated"
    in_use: int = 0
    session_is_open: bool = False
    tls_auth_ok: bool = False


@dataclass
class BanInfo:
    """An address with ban points; ``expires`` is set (epoch) while it is banned."""

    ip: str
    score: int = 0
    expires: float | None = None


@dataclass
class StatusInfo:
    """Server status and statistics, as ocserv's ``show status`` reports them.

    Times in seconds (epoch for ``up_since``/``last_reset``), latencies in microseconds,
    ``rx``/``tx`` in bytes.
    """

    status: str = "online"
    server_pid: int = 0
    secmod_pid: int = 0
    secmod_instances: int = 1
    up_since: float = 0.0
    active_sessions: int = 0
    total_sessions: int = 0
    total_auth_failures: int = 0
    banned_ips: int = 0
    secmod_client_entries: int = 0
    tls_db_entries: int = 0
    median_latency_us: int = 0
    stdev_latency_us: int = 0
    last_reset: float = 0.0
    sessions_handled: int = 0
    timed_out_sessions: int = 0
    timed_out_idle_sessions: int = 0
    closed_error_sessions: int = 0
    auth_failures: int = 0
    avg_auth_time: int = 0
    max_auth_time: int = 0
    avg_session_time: int = 0
    max_session_time: int = 0
    min_mtu: int = 0
    max_mtu: int = 0
    rx: int = 0
    tx: int = 0


class ControlProvider(Protocol):
    """What main implements; every method runs inside main's loop and must not block long."""

    def status(self) -> StatusInfo | dict[str, Any]: ...
    def users(self) -> list[UserInfo]: ...
    def sessions(self) -> list[SessionInfo]: ...
    def bans(self) -> list[BanInfo]: ...
    def disconnect_user(self, name: str) -> int: ...
    def disconnect_id(self, id: int) -> bool: ...
    def unban(self, ip: str) -> bool: ...
    def reload(self) -> str: ...
    def stop(self) -> None: ...


#: ocserv's disconnect reason texts (common.c discon_reason_to_str), keyed by main's reasons.
DISCONNECT_REASONS = {
    "user": "user disconnected",
    "temporary": "anyconnect client disconnected",
    "server": "server disconnected",
    "idle": "idle timeout",
    "dpd": "DPD timeout",
    "error": "unspecified error",
    "session-timeout": "session timeout",
}


def make_event(kind: str, user: UserInfo, reason: str = "") -> dict[str, Any]:
    """The event object ``show events`` subscribers get; ``kind`` is connect or disconnect."""
    if kind not in ("connect", "disconnect"):
        raise ValueError(f"unknown event kind {kind!r}")
    event: dict[str, Any] = {"type": kind, "user": asdict(user)}
    if kind == "disconnect":
        event["reason"] = DISCONNECT_REASONS.get(reason, reason or "unspecified")
    return event


# --- decoding records from the wire (for clients) -------------------------------------------


def from_wire(cls: type[T], obj: object) -> T:
    """A record from a reply, every field type-checked by the shared codec (wire.py);
    unknown keys are ignored (newer servers may add fields)."""
    try:
        return wire.from_obj(cls, obj, ignore_unknown=True)
    except wire.WireError as exc:
        raise ControlError(str(exc)) from None
