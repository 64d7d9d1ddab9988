"""What a RADIUS Access-Accept says about a session, and the per-user settings it replaces
(ocserv's radius sup-config).

Main reads these for every session, so this module must not import pyrad: a server without
RADIUS never loads it (auth/radius/auth.py, the exchange itself, does; docs/architecture.md).
The attributes travel sec-mod → main as a plain dict in the session's ``extra``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from ...config import UserConfig


@dataclass
class SessionAttrs:
    """What an Access-Accept says about the session; travels sec-mod → main as a dict."""

    groups: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # hex, echoed in accounting
    groupconfig: bool = False  # the settings below replace config-per-user/group
    framed_ip: str = ""
    framed_netmask: str = ""
    framed_ipv6: str = ""
    routes: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    session_timeout: int | None = None
    idle_timeout: int | None = None
    interim_interval: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"radius": asdict(self)}

    @classmethod
    def from_wire(cls, extra: dict[str, Any] | None) -> SessionAttrs | None:
        """None when the session was not authenticated by RADIUS."""
        data = (extra or {}).get("radius")
        if not isinstance(data, dict):
            return None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def radius_user_config(extra: dict[str, Any] | None) -> UserConfig | None:
    """The UserConfig that replaces config-per-user/group files for a RADIUS session with
    ``groupconfig=true`` (ocserv's radius sup-config); None otherwise."""
    attrs = SessionAttrs.from_wire(extra)
    if attrs is None or not attrs.groupconfig:
        return None
    user = UserConfig()
    if attrs.framed_ip:
        user.explicit_ipv4 = ipaddress.IPv4Address(attrs.framed_ip)
        if attrs.framed_netmask:
            net = ipaddress.IPv4Network(f"{attrs.framed_ip}/{attrs.framed_netmask}",
                                        strict=False)
            user.ipv4_network, user.ipv4_netmask = net, str(net.netmask)
    if attrs.framed_ipv6:
        user.explicit_ipv6 = ipaddress.IPv6Address(attrs.framed_ipv6)
    if attrs.routes:
        user.route = [ipaddress.ip_network(r, strict=False) for r in attrs.routes]
    if attrs.dns:
        user.dns = list(attrs.dns)
    user.session_timeout = attrs.session_timeout or None
    user.idle_timeout = attrs.idle_timeout or None
    user.stats_report_time = attrs.interim_interval or None
    return user
