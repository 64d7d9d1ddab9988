"""UPnP IGD (v1 and v2, WANIPConnection or WANPPPConnection) through libminiupnpc.

The library finds the IGD by SSDP, picks the connection service and speaks SOAP; we add the
policy: AddAnyPortMapping (IGDv2) lets the router choose a free external port, IGDv1 gets
AddPortMapping tried on a few other ports when the one asked for is taken (error 718), and a
router that only takes permanent mappings (725) gets lease 0 and a presence check instead.
A router whose external address is in a reserved range makes libminiupnpc call the IGD "not
connected"; it is still the router and we go on with it.
"""

from __future__ import annotations

import logging
from typing import Any

from .gateway import NoAnswer
from .mappers import Lease, MappingError

log = logging.getLogger(__name__)

DESCRIPTION = "OCGate VPN"
ALTERNATIVE_TRIES = 8


class UpnpMapper:
    name = "upnp"

    def __init__(self, discover_ms: int = 1500) -> None:
        try:
            import miniupnpc
        except ImportError as exc:  # pyproject lists it; fail loudly rather than skip UPnP
            raise RuntimeError(f"the miniupnpc Python module is missing: {exc}") from exc
        self.u: Any = miniupnpc.UPnP()
        self.u.discoverdelay = discover_ms
        try:
            found = self.u.discover()
        except Exception as exc:  # raised when nothing answered, with errno's text
            raise NoAnswer(f"no UPnP IGD answered the SSDP search ({exc})") from exc
        if found < 1:
            raise NoAnswer("no UPnP IGD answered the SSDP search")
        try:
            self.u.selectigd()
        except Exception as exc:  # the binding raises a bare Exception with the reason
            raise MappingError(f"no usable UPnP IGD: {exc}") from exc
        self.lan_address: str = self.u.lanaddr

    def external_address(self) -> str:
        try:
            return str(self.u.externalipaddress() or "")
        except Exception as exc:
            raise MappingError(f"UPnP GetExternalIPAddress: {exc}") from exc

    def _add(self, protocol: str, internal_port: int, external_port: int,
             lifetime: int) -> int:
        proto = protocol.upper()
        try:  # IGDv2: the router picks a free port near the one we ask for
            port = self.u.addanyportmapping(external_port, proto, self.lan_address,
                                            internal_port, DESCRIPTION, "", lifetime)
            return int(port)
        except Exception as exc:
            if "OnlyPermanentLeasesSupported" in str(exc) or "725" in str(exc):
                raise MappingError(str(exc)) from exc
            log.debug("AddAnyPortMapping refused (%s): trying AddPortMapping", exc)
        last = ""
        for tries in range(ALTERNATIVE_TRIES):
            port = external_port + tries * 1000 if tries else external_port
            port = port if port <= 0xFFFF else 1024 + port % 60000
            try:
                self.u.addportmapping(port, proto, self.lan_address, internal_port,
                                      DESCRIPTION, "", lifetime)
                return port
            except Exception as exc:
                last = str(exc)
                if "Conflict" not in last and "718" not in last:
                    raise MappingError(f"UPnP AddPortMapping {proto} {port}: {last}",
                                       no_resources="501" in last) from exc
        raise MappingError(f"UPnP: external ports taken ({last})", conflict=True)

    def map(self, protocol: str, internal_port: int, external_port: int,
            lifetime: int) -> Lease:
        try:
            port = self._add(protocol, internal_port, external_port, lifetime)
        except MappingError as exc:
            if "OnlyPermanent" not in str(exc) and "725" not in str(exc):
                raise
            lifetime = 0
            port = self._add(protocol, internal_port, external_port, 0)
        return Lease(protocol, internal_port, port, lifetime, self.name,
                     external_address=self.external_address())

    def unmap(self, lease: Lease) -> None:
        try:
            self.u.deleteportmapping(lease.external_port, lease.protocol.upper(), "")
        except Exception as exc:
            raise MappingError(f"UPnP DeletePortMapping: {exc}") from exc

    def still_there(self, lease: Lease) -> bool:
        try:
            entry = self.u.getspecificportmapping(lease.external_port, lease.protocol.upper())
        except Exception:
            return False
        return bool(entry) and entry[0] == self.lan_address and int(entry[1]) == \
            lease.internal_port
