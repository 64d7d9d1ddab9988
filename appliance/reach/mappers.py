"""The three port mapping protocols behind one small interface the manager drives.

Each mapper talks to the default gateway by one protocol; ``map`` returns a Lease telling
which external port the gateway gave (it may differ from the one asked for) and for how long.
A MappingError says why the gateway refused; NoAnswer (gateway.py) that it does not speak
the protocol at all.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol

from . import gateway, natpmp, pcp


class MappingError(Exception):
    """The gateway answered and refused; ``conflict`` when the external port is taken."""

    def __init__(self, message: str, *, conflict: bool = False,
                 no_resources: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict
        self.no_resources = no_resources


@dataclass
class Lease:
    protocol: str  # "tcp" | "udp"
    internal_port: int
    external_port: int
    lifetime: int  # seconds granted; 0 = until removed (UPnP IGDv1 permanent mapping)
    via: str  # "pcp" | "nat-pmp" | "upnp"
    granted_at: float = field(default_factory=time.monotonic)
    external_address: str = ""
    nonce: bytes = b""


class Mapper(Protocol):
    name: str

    def external_address(self) -> str: ...

    def map(self, protocol: str, internal_port: int, external_port: int,
            lifetime: int) -> Lease: ...

    def unmap(self, lease: Lease) -> None: ...

    def still_there(self, lease: Lease) -> bool:
        """False when the gateway lost the mapping (rebooted, table flushed)."""
        ...


class _EpochWatch:
    """RFC 6886 3.6 / RFC 6887 8.5: a gateway whose epoch fell behind our clock restarted."""

    def __init__(self) -> None:
        self.last: tuple[int, float] | None = None
        self.reset_seen = False

    def see(self, epoch: int) -> None:
        now = time.monotonic()
        if self.last is not None:
            old_epoch, then = self.last
            if epoch + 2 < old_epoch + (now - then) * 7 / 8:
                self.reset_seen = True
        self.last = (epoch, now)


class NatPmpMapper:
    name = "nat-pmp"

    def __init__(self, gw: ipaddress.IPv4Address) -> None:
        self.gw = gw
        self.epoch = _EpochWatch()

    def _ask(self, request: bytes, want: type) -> natpmp.ExternalAddress | natpmp.MapResult:
        def ok(data: bytes) -> bool:
            try:
                return isinstance(natpmp.decode_response(data), want)
            except natpmp.NatPmpError:
                return False
        reply = natpmp.decode_response(gateway.exchange(self.gw, natpmp.PORT, request, ok))
        self.epoch.see(reply.epoch)
        return reply

    def external_address(self) -> str:
        reply = self._ask(natpmp.encode_external_address_request(), natpmp.ExternalAddress)
        if reply.result:
            raise MappingError(f"NAT-PMP external address: {natpmp.result_text(reply.result)}",
                               no_resources=reply.result in (3, 4))
        assert isinstance(reply, natpmp.ExternalAddress)
        return str(reply.address)

    def map(self, protocol: str, internal_port: int, external_port: int,
            lifetime: int) -> Lease:
        reply = self._ask(natpmp.encode_map_request(protocol, internal_port, external_port,
                                                    lifetime), natpmp.MapResult)
        assert isinstance(reply, natpmp.MapResult)
        if reply.result:
            raise MappingError(f"NAT-PMP {protocol} {external_port}: "
                               f"{natpmp.result_text(reply.result)}",
                               no_resources=reply.result in (3, 4))
        return Lease(protocol, internal_port, reply.external_port, reply.lifetime, self.name)

    def unmap(self, lease: Lease) -> None:
        self._ask(natpmp.encode_map_request(lease.protocol, lease.internal_port, 0, 0),
                  natpmp.MapResult)

    def still_there(self, lease: Lease) -> bool:
        self.external_address()  # refreshes the epoch
        seen, self.epoch.reset_seen = self.epoch.reset_seen, False
        return not seen


class PcpMapper:
    """PCP over IPv4 (a NAT mapping) or, given an IPv6 gateway and our global address, over
    IPv6: the same MAP then opens a pinhole in the router's firewall (RFC 6887 section 11),
    external address and port being our own."""

    name = "pcp"

    def __init__(self, gw: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 client: ipaddress.IPv6Address | None = None) -> None:
        self.gw = gw
        self.client: ipaddress.IPv4Address | ipaddress.IPv6Address
        if isinstance(gw, ipaddress.IPv6Address):
            if client is None:
                raise ValueError("PCP over IPv6 needs the address the pinhole is for")
            self.name, self.client = "pcp-ipv6", client
            self._source = str(client)
        else:
            self.client, self._source = gateway.source_address(gw, pcp.PORT), ""
        self.epoch = _EpochWatch()
        self.last_external = ""

    def _ask(self, request: bytes, opcode: int) -> pcp.Response:
        def ok(data: bytes) -> bool:
            try:
                return pcp.decode_response(data).opcode == opcode
            except pcp.PcpError:
                return data[:1] == b"\x00"  # a NAT-PMP-only gateway: decode says so below
        try:
            reply = pcp.decode_response(gateway.exchange(self.gw, pcp.PORT, request, ok,
                                                         source=self._source))
        except pcp.PcpError as exc:  # a NAT-PMP-only gateway: PCP is absent there
            raise gateway.NoAnswer(str(exc)) from exc
        self.epoch.see(reply.epoch)
        return reply

    def external_address(self) -> str:
        if not self.last_external:
            raise MappingError("PCP tells the external address only with a mapping")
        return self.last_external

    def map(self, protocol: str, internal_port: int, external_port: int,
            lifetime: int, nonce: bytes | None = None) -> Lease:
        nonce = nonce or secrets.token_bytes(12)
        reply = self._ask(pcp.encode_map_request(self.client, nonce, protocol, internal_port,
                                                 external_port, lifetime), pcp.OP_MAP)
        if reply.result or reply.map is None:
            raise MappingError(f"PCP {protocol} {external_port}: "
                               f"{pcp.result_text(reply.result)}",
                               no_resources=reply.result in (7, 8, 10, 11))
        if reply.map.nonce != nonce:
            raise MappingError("PCP answer for another nonce")
        self.last_external = str(reply.map.external_address)
        return Lease(protocol, internal_port, reply.map.external_port, reply.lifetime,
                     self.name, external_address=self.last_external, nonce=nonce)

    def renew(self, lease: Lease, lifetime: int) -> Lease:
        return self.map(lease.protocol, lease.internal_port, lease.external_port, lifetime,
                        lease.nonce)

    def unmap(self, lease: Lease) -> None:
        self._ask(pcp.encode_map_request(self.client, lease.nonce, lease.protocol,
                                         lease.internal_port, 0, 0), pcp.OP_MAP)

    def still_there(self, lease: Lease) -> bool:
        self._ask(pcp.encode_announce(self.client), pcp.OP_ANNOUNCE)
        seen, self.epoch.reset_seen = self.epoch.reset_seen, False
        return not seen
