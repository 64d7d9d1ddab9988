"""mDNS while the wizard runs: ``http://ocgate.local/`` finds the device with no DHCP lookup.

Uses the ``zeroconf`` package (pure Python, no avahi daemon on the image).  It announces
the host name and ``_http._tcp`` for the wizard, and ``_https._tcp`` for the VPN once
setup is done.  It only ever binds to the addresses it is given (the LAN addresses on the
device); tests pass ``--no-mdns`` or loopback inside a namespace, so nothing is ever sent
on a host's real interfaces.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_HOSTNAME = "ocgate"


class MdnsError(RuntimeError):
    """zeroconf is missing or could not bind."""


class MdnsAnnouncer:
    """Registers services under ``<hostname>.local`` on the given addresses only."""

    def __init__(self, addresses: list[str], *, hostname: str = DEFAULT_HOSTNAME,
                 instance: str = "OCGate setup") -> None:
        if not addresses:
            raise MdnsError("no address to announce on")
        self.addresses = [str(ipaddress.ip_address(a)) for a in addresses]
        self.hostname = hostname
        self.instance = instance
        self._zc: Any = None
        self._infos: list[Any] = []

    @property
    def server(self) -> str:
        return f"{self.hostname}.local."

    def start(self) -> None:
        try:
            from zeroconf import IPVersion, Zeroconf
        except ImportError as exc:
            raise MdnsError("the 'zeroconf' package is not installed") from exc
        has_v6 = any(ipaddress.ip_address(a).version == 6 for a in self.addresses)
        has_v4 = any(ipaddress.ip_address(a).version == 4 for a in self.addresses)
        version = IPVersion.All if has_v4 and has_v6 else (
            IPVersion.V6Only if has_v6 else IPVersion.V4Only)
        try:
            self._zc = Zeroconf(interfaces=list(self.addresses), ip_version=version)
        except OSError as exc:
            raise MdnsError(f"cannot start mDNS on {self.addresses}: {exc}") from exc
        log.info("mDNS: announcing %s on %s", self.server, ", ".join(self.addresses))

    def announce(self, service_type: str, port: int, properties: dict[str, str] | None = None
                 ) -> None:
        """Register ``<instance>.<service_type>`` (e.g. ``_http._tcp``) at ``port``."""
        if self._zc is None:
            raise MdnsError("start() first")
        from zeroconf import ServiceInfo

        full_type = f"{service_type}.local."
        info = ServiceInfo(
            full_type,
            f"{self.instance}.{full_type}",
            parsed_addresses=self.addresses,
            port=port,
            properties=properties or {"path": "/"},
            server=self.server,
        )
        self._zc.register_service(info, allow_name_change=True)
        self._infos.append(info)

    def stop(self) -> None:
        if self._zc is None:
            return
        try:
            self._zc.unregister_all_services()
        finally:
            self._zc.close()
            self._zc = None
            self._infos.clear()
