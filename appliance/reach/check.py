"""One look at where the device stands: map the VPN's ports once, report, remove them.

The wizard runs this before the VPN server exists (nothing is left on the router; the
service maps again once the setup is applied).  ``status_dict`` is the one JSON shape of
the status, shared by this check, the service's status file and the pages that read it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import ddns
from .manager import MappingManager, Want, default_factories


def status_dict(manager: MappingManager, publisher: ddns.Publisher | None) -> dict[str, Any]:
    st = manager.status
    return {
        "status": dataclasses.asdict(st) if st else None,
        "external_address": manager.external_address,
        "via": manager.active.name if manager.active else "",
        "leases": [{"protocol": lease.protocol, "internal_port": lease.internal_port,
                    "external_port": lease.external_port, "lifetime": lease.lifetime}
                   for lease in manager.leases.values()],
        "dns": {"name": publisher.name, "published": publisher.published} if publisher else None,
        "last_check": manager.last_check,
        "lan_address": manager.lan_address,
    }


def check_once(lan_address: str, port: int, *, gateway: str = "", probe_target: str = "",
               lifetime: int = 120) -> dict[str, Any]:
    manager = MappingManager([Want(p, port, port) for p in ("tcp", "udp")],
                             default_factories(gateway), lan_address, lifetime=lifetime,
                             probe_target=probe_target)
    try:
        manager.refresh()
        found = status_dict(manager, None)
    finally:
        manager.stop()
    found["leases"] = []  # removed again: the page must not show a mapping that is gone
    return found
