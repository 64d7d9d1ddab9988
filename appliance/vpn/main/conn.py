"""What main knows about one worker and its client (a leaf: server.py and management.py
both read it, neither needs the other for it)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from .. import ipc
from .ipv6 import Ipv6Lease
from .scripts import ScriptJob


class WorkerFault(Exception):
    """A well-formed message that no honest worker sends in its state (main's own
    checks, beyond the types ipc.py checks)."""


@dataclass
class Conn:
    """A worker process and what main knows about its client."""

    pid: int
    chan: socket.socket
    remote_ip: str
    local_ip: str
    state: str = "auth"  # auth | connecting | connected | terminating | closing
    sid: str = ""
    username: str = ""
    groupname: str = ""
    device: str = ""
    ipv4: str = ""
    hostname: str = ""
    user_agent: str = ""
    device_type: str = ""  # X-AnyConnect-Identifier-DeviceType of the login (the sec-mod's)
    platform: str = ""  # X-AnyConnect-Identifier-Platform of the login
    tls_description: str = ""
    vhost: str = "default"  # the virtual host its session logged in to (ocserv's VHOSTNAME)
    mtu: int = 0
    connected_at: float = 0.0
    rx: int = 0
    tx: int = 0
    reason: str = ""
    routes: list[str] = field(default_factory=list)
    no_routes: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    script: ScriptJob | None = None
    pending_grant: ipc.ConnectGrant | None = None
    tun_fd: int = -1
    local_port: int = 0
    app_id: bytes = b""
    udp_forwarded_at: float = 0.0
    settings: ipc.SessionSettings = field(default_factory=ipc.SessionSettings)
    ipv4_local: str = ""  # the server's end of the tunnel (first address of the pool)
    lease6: Ipv6Lease | None = None  # set when the client is offered IPv6 (main/ipv6.py)
    iroutes: list[str] = field(default_factory=list)
    iroutes_applied: bool = False  # route-add-cmd ran for them: route-del-cmd must follow
    restricted: bool = False  # firewall rules installed for this TUN
    session_started: float = 0.0
    dtls_cipher: str = ""
    compressed: tuple[int, int] = (0, 0)  # packets received / sent compressed
    compression: tuple[str, str] = ("", "")  # negotiated algorithm on CSTP / DTLS
    end_reason: str = ""  # set when the server ends the session
    kill_at: float = 0.0  # when a terminated worker gets SIGKILL
    ifindex: int = 0  # of the TUN: its name is reused as soon as the device is gone
    radius: dict = field(default_factory=dict)  # RADIUS session attributes (auth/radius/auth.py)
    bad: bool = False  # ended for a bad message: killed by us, already logged
