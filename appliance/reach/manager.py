"""The mapping manager: keeps the VPN's ports mapped on the gateway by whichever protocol
works, renews at half the lease (RFC 6886 advice), re-maps when the gateway forgot the
mappings (restart: epoch went back, or the UPnP entry is gone), takes another external port
when the one asked for is taken, and removes everything on stop.

It does no waiting of its own: ``refresh()`` is one pass and says when the next is due, so a
job runner (jobs.py) owns the timing and the backoff, and tests drive it step by step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import status
from .gateway import NoAnswer
from .mappers import Lease, Mapper, MappingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Want:
    protocol: str
    internal_port: int
    external_port: int  # the port asked for first


class MappingManager:
    def __init__(self, wants: Sequence[Want], factories: Sequence[tuple[str, Callable[[],
                 Mapper]]], lan_address: str, *, lifetime: int = 3600,
                 check_every: float = 30.0, probe_target: str = "") -> None:
        self.wants = list(wants)
        self.factories = list(factories)
        self.lan_address = lan_address
        self.lifetime = lifetime
        self.check_every = check_every
        self.active: Mapper | None = None
        self.leases: dict[tuple[str, int], Lease] = {}
        self.external_address = ""
        self.status: status.Reachability | None = None
        self.last_check = 0.0
        self.probe_target = probe_target  # an Internet address for the hop probe (hops.py)
        self.upstream_hop = ""

    # ------------------------------------------------------------------ one pass
    def refresh(self) -> float:
        """Make sure every wanted port is mapped; returns seconds until the next pass."""
        self.last_check = time.time()
        if self.active is not None:
            try:
                self._keep()
            except (NoAnswer, MappingError, OSError) as exc:
                log.warning("reach mapping via=%s result=lost reason=%r: searching again",
                            self.active.name, str(exc))
                self.active = None
        if self.active is None:
            self._establish()
        return self._next_due()

    def _next_due(self) -> float:
        if self.active is None:
            return self.check_every
        due = [lease.granted_at + lease.lifetime / 2 - time.monotonic()
               for lease in self.leases.values() if lease.lifetime]
        return max(1.0, min([self.check_every, *due]))

    def _keep(self) -> None:
        mapper = self.active
        assert mapper is not None
        lost = [k for k, lease in self.leases.items() if not mapper.still_there(lease)]
        if lost and hasattr(mapper, "epoch"):
            # NAT-PMP/PCP: a reset epoch means the gateway restarted and forgot every mapping,
            # and the watch reports it once: re-map them all, not only the first one checked
            lost = list(self.leases)
        for key, lease in list(self.leases.items()):
            elapsed = time.monotonic() - lease.granted_at
            renew = lease.lifetime and elapsed >= lease.lifetime / 2
            if key in lost or renew:
                self.leases[key] = self._map(mapper, lease.protocol, lease.internal_port,
                                             lease.external_port, lease.nonce)
                log.info("reach mapping via=%s proto=%s external_port=%d internal_port=%d "
                         "lifetime=%d result=%s", mapper.name, lease.protocol,
                         self.leases[key].external_port, lease.internal_port,
                         self.leases[key].lifetime, "remapped" if key in lost else "renewed")
        self._learn_address(mapper)
        self._classify(mapper.name, (mapper.name,), ())

    def _map(self, mapper: Mapper, protocol: str, internal: int, external: int,
             nonce: bytes = b"") -> Lease:
        renew = getattr(mapper, "renew", None)
        if nonce and renew is not None:
            return renew(Lease(protocol, internal, external, 0, mapper.name, nonce=nonce),
                         self.lifetime)
        return mapper.map(protocol, internal, external, self.lifetime)

    def _establish(self) -> None:
        answered: list[str] = []
        failures: list[str] = []
        for name, factory in self.factories:
            try:
                mapper = factory()
                leases = self._map_all(mapper)
            except NoAnswer as exc:
                log.info("reach mapping via=%s result=absent reason=%r", name, str(exc))
                continue
            except MappingError as exc:
                answered.append(name)
                failures.append(f"{name}: {exc}")
                log.warning("reach mapping via=%s result=refused reason=%r", name, str(exc))
                self._learn_address_quietly(locals().get("mapper"))
                continue
            self.active = mapper
            self.leases = leases
            for lease in leases.values():
                log.info("reach mapping via=%s proto=%s external_port=%d internal_port=%d "
                         "lifetime=%d result=mapped", name, lease.protocol, lease.external_port,
                         lease.internal_port, lease.lifetime)
            self._learn_address(mapper)
            self._classify(name, (*answered, name), tuple(failures))
            return
        self._probe_upstream()
        self._classify("", tuple(answered), tuple(failures))
        log.warning("reach status kind=%s external_address=%s", self.status.kind if self.status
                    else "?", self.external_address or "-")

    def _map_all(self, mapper: Mapper) -> dict[tuple[str, int], Lease]:
        """Map every wanted port; when the gateway moves the first one to another external
        port, ask for that port for the others so one port serves TCP and UDP (the clients
        use one URL)."""
        leases: dict[tuple[str, int], Lease] = {}
        previous = {k: v.external_port for k, v in self.leases.items()}
        try:
            for want in self.wants:
                key = (want.protocol, want.internal_port)
                ask = previous.get(key) or want.external_port
                if leases and want.internal_port == self.wants[0].internal_port:
                    ask = next(iter(leases.values())).external_port
                leases[key] = mapper.map(want.protocol, want.internal_port, ask, self.lifetime)
        except BaseException:
            for lease in leases.values():  # do not leave half a set behind
                try:
                    mapper.unmap(lease)
                except (NoAnswer, MappingError, OSError):
                    pass
            raise
        return leases

    def _learn_address(self, mapper: Mapper) -> None:
        address = next((lease.external_address for lease in self.leases.values()
                        if lease.external_address), "")
        if not address:
            address = mapper.external_address()
        if address != self.external_address:
            log.info("reach address via=%s external_address=%s previous=%s", mapper.name,
                     address, self.external_address or "-")
            self.external_address = address

    def _learn_address_quietly(self, mapper: Mapper | None) -> None:
        if mapper is None:
            return
        try:
            address = mapper.external_address()
        except (NoAnswer, MappingError, OSError):
            return
        if address:
            self.external_address = address

    def _probe_upstream(self) -> None:
        """Without a mapping the router may hide its WAN address: ask the hop behind it."""
        if not self.probe_target or status.address_kind(self.external_address) == "public":
            return
        from .hops import hop

        try:
            self.upstream_hop = hop(self.probe_target, 2) or ""
        except OSError as exc:
            log.info("reach probe target=%s result=error reason=%r", self.probe_target, str(exc))
            return
        log.info("reach probe target=%s hop=2 address=%s", self.probe_target,
                 self.upstream_hop or "-")

    def _classify(self, via: str, answered: tuple[str, ...], failures: tuple[str, ...]) -> None:
        rules = tuple(status.PortRule(w.protocol, self.leases[(w.protocol, w.internal_port)]
                                      .external_port if (w.protocol, w.internal_port)
                                      in self.leases and via else w.external_port,
                                      w.internal_port) for w in self.wants)
        self.status = status.classify(lan_address=self.lan_address, rules=rules,
                                      mapped_via=via, external_address=self.external_address,
                                      answered=answered, failures=failures,
                                      upstream_hop=self.upstream_hop)

    # ------------------------------------------------------------------ client-facing port
    def external_port(self, protocol: str, internal_port: int) -> int | None:
        lease = self.leases.get((protocol, internal_port))
        return lease.external_port if lease and self.active else None

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Remove our mappings (stop, factory reset): the router keeps nothing of ours."""
        mapper, self.active = self.active, None
        for lease in self.leases.values():
            if mapper is None:
                break
            try:
                mapper.unmap(lease)
                log.info("reach mapping via=%s proto=%s external_port=%d result=removed",
                         mapper.name, lease.protocol, lease.external_port)
            except (NoAnswer, MappingError, OSError) as exc:
                log.warning("reach mapping via=%s proto=%s external_port=%d result=remove-failed "
                            "reason=%r", mapper.name, lease.protocol, lease.external_port,
                            str(exc))
        self.leases = {}


def default_factories(gateway_address: str = "") -> list[tuple[str, Callable[[], Mapper]]]:
    """PCP first (it also does IPv6), then NAT-PMP, then UPnP (the slowest to discover)."""
    import ipaddress

    from . import gateway
    from .mappers import NatPmpMapper, PcpMapper
    from .upnp import UpnpMapper

    def gw() -> ipaddress.IPv4Address:
        found = (ipaddress.IPv4Address(gateway_address) if gateway_address
                 else gateway.default_gateway())
        if found is None:
            raise NoAnswer("no IPv4 default route: no gateway to ask")
        return found

    return [("pcp", lambda: PcpMapper(gw())), ("nat-pmp", lambda: NatPmpMapper(gw())),
            ("upnp", UpnpMapper)]
