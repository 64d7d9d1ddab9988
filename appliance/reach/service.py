"""``reach run``: the mapping, DNS and ACME jobs, rebuilt whenever the owner's choices change.

With ``--state`` the choices come from the appliance's files (reach.json, its secrets, the
VPN's ocserv.conf for the port, certificate and control socket); they are read again every
few seconds (and on SIGHUP), and when what they resolve to differs, the running engine is
stopped (its mappings removed) and a new one started.  So the admin page's "Save" applies
at once, and a factory reset, which deletes reach.json, takes the mappings off the router
even before the service itself is stopped.  With reachability off the service idles.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomicfile import write_atomic
from . import credentials, ddns, gateway
from .acmejob import AcmeJob
from .check import status_dict
from .jobs import Job, Scheduler
from .manager import MappingManager, Want, default_factories

log = logging.getLogger(__name__)

PINHOLE_RETRY = 600.0  # seconds between looks for PCP over IPv6 on a router that lacked it


def mapping_factories(only: str, gateway_address: str) -> list[Any]:
    found = default_factories(gateway_address)
    return found if only == "auto" else [f for f in found if f[0] == only]


def _publisher(args: argparse.Namespace) -> ddns.Publisher | None:
    if not args.ddns:
        return None
    secrets = credentials.load(Path(args.secrets))
    updater: ddns.Rfc2136 | ddns.Dyndns2 | ddns.DuckDns
    if args.ddns == "rfc2136":
        updater = ddns.Rfc2136(args.dns_server, args.dns_zone, args.tsig_name,
                               secrets["tsig_secret"])
    elif args.ddns == "dyndns2":
        updater = ddns.Dyndns2(args.ddns_url, secrets["username"], secrets["password"])
    else:
        updater = ddns.DuckDns(secrets["token"], args.ddns_url or "https://www.duckdns.org")
    return ddns.Publisher(updater, args.name)


def _lan_address(gateway_address: str) -> str:
    """Our address towards the default gateway ("" without one: no mapping can work)."""
    try:
        gw = (ipaddress.IPv4Address(gateway_address) if gateway_address
              else gateway.default_gateway())
        return str(gateway.source_address(gw, 5351)) if gw is not None else ""
    except (OSError, ValueError):
        return ""


def _ipv6(choice: str) -> tuple[str, str]:
    """(our Internet-reachable IPv6 address, the IPv6 default router) or ("", "")."""
    if choice == "off":
        return "", ""
    address, router = gateway.public_address6(), gateway.default_gateway6()
    return (str(address), str(router)) if address and router else ("", "")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """The command line completed from ``--state``'s files (a copy; ``args`` stays as given).

    ``enabled`` is False when the owner turned reachability off (or never on)."""
    out = argparse.Namespace(**vars(args))
    out.enabled, out.acme = True, False
    out.port = args.port or 443
    out.lan_address = args.lan_address or _lan_address(args.gateway)
    out.ipv6_address, out.gateway6 = _ipv6(args.ipv6)
    if not args.state:
        return out
    from ..state import StateLayout
    from ..vpn.config import ConfigDocument
    from . import settings

    layout = StateLayout.at(args.state)
    chosen = settings.load(layout.reach_settings)
    out.enabled = chosen.enabled
    out.status_file = args.status_file or str(layout.reach_status)
    conf = ConfigDocument.load(str(layout.conf)) if layout.conf.exists() else None

    def first(key: str, default: str) -> str:
        found = conf.get(key) if conf is not None else []
        return found[0] if found else default

    out.port = args.port or int(first("tcp-port", "443"))
    if not args.ddns and chosen.ddns and chosen.name:
        out.ddns, out.name = chosen.ddns, chosen.name
        out.dns_server = args.dns_server or chosen.dns_server
        out.dns_zone = args.dns_zone or chosen.dns_zone
        out.tsig_name = args.tsig_name or chosen.tsig_name
        out.ddns_url = args.ddns_url or chosen.ddns_url
        out.secrets = args.secrets or str(layout.reach_secrets)
    if chosen.acme and chosen.name:
        out.acme, out.acme_name = True, out.name or chosen.name
        if chosen.ddns == "duckdns" and "." not in out.acme_name:
            out.acme_name += ".duckdns.org"
        out.acme_directory, out.email = chosen.acme_directory, chosen.email
        out.cert = first("server-cert", str(layout.server_cert))
        out.key = first("server-key", str(layout.server_key))
        out.own_ca = first("ca-cert", str(layout.ca_cert))
        out.account_dir = str(layout.certs_dir)
        use_occtl = first("use-occtl", "false").lower() in ("true", "yes", "1")
        out.occtl_socket = first("occtl-socket-file", str(layout.occtl_socket)) \
            if use_occtl else ""
    return out


def fingerprint(resolved: argparse.Namespace) -> str:
    """What an engine was built from, secrets included (as a digest, never in the log)."""
    secrets = b""
    if getattr(resolved, "secrets", ""):
        try:
            secrets = Path(resolved.secrets).read_bytes()
        except OSError:
            pass
    text = json.dumps(vars(resolved), sort_keys=True, default=str).encode()
    return hashlib.sha256(text + b"\0" + secrets).hexdigest()


@dataclass
class Engine:
    """The jobs of one set of choices; ``stop`` removes the mappings (unless ``keep``)."""

    manager: MappingManager
    publisher: ddns.Publisher | None
    scheduler: Scheduler
    status_file: Path | None
    pinholes: MappingManager | None = None  # IPv6: the same ports opened by PCP

    def write_status(self) -> None:
        if self.status_file is not None:
            write_atomic(self.status_file, json.dumps(self.status()).encode(), 0o644)

    def status(self) -> dict[str, Any]:
        found = status_dict(self.manager, self.publisher)
        holes = self.pinholes
        found["ipv6"] = None if holes is None else {
            "address": holes.lan_address, "via": holes.active.name if holes.active else "",
            "leases": [{"protocol": lease.protocol, "external_port": lease.external_port,
                        "lifetime": lease.lifetime} for lease in holes.leases.values()]}
        return found

    def stop(self, keep: bool) -> None:
        self.scheduler.stop()
        if not keep:
            self.manager.stop()
            if self.pinholes is not None:
                self.pinholes.stop()
            self.write_status()


def build(a: argparse.Namespace) -> Engine:
    wants = [Want(p, a.port, a.external_port or a.port) for p in ("tcp", "udp")]
    manager = MappingManager(wants, mapping_factories(a.only, a.gateway), a.lan_address,
                             lifetime=a.lifetime, check_every=a.check_every,
                             probe_target=a.probe_target)
    publisher = _publisher(a)
    engine = Engine(manager, publisher, Scheduler(),
                    Path(a.status_file) if a.status_file else None)
    if a.ipv6_address:
        from .mappers import PcpMapper

        gw6, ours6 = ipaddress.IPv6Address(a.gateway6), ipaddress.IPv6Address(a.ipv6_address)
        engine.pinholes = MappingManager(
            [Want(p, a.port, a.port) for p in ("tcp", "udp")],
            [("pcp-ipv6", lambda: PcpMapper(gw6, ours6))], a.ipv6_address,
            lifetime=a.lifetime, check_every=a.check_every)

    retry_holes = [0.0]  # a router without PCP over IPv6 costs a 4 s wait: not every pass

    def mapping() -> float:
        delay = manager.refresh()
        holes = engine.pinholes
        if holes is not None and (holes.active or time.monotonic() >= retry_holes[0]):
            delay = min(delay, holes.refresh())
            if holes.active is None:
                retry_holes[0] = time.monotonic() + PINHOLE_RETRY
        if publisher is not None and manager.external_address and manager.status and \
                manager.status.kind == "reachable":
            # AAAA: the pinholed address; "" removes a record whose pinhole is gone
            publisher.publish(manager.external_address, None if holes is None else
                              holes.lan_address if holes.active else "")
        engine.write_status()
        return delay

    engine.scheduler.jobs.append(Job("mapping", mapping, base=1.0, cap=a.check_every))
    if a.acme:
        def ready() -> str:
            if manager.status is None or manager.status.kind != "reachable":
                return "not-reachable"
            if publisher is not None and (publisher.published or (None,))[0] != \
                    manager.external_address:
                return "name-not-published"
            return ""

        acme = AcmeJob(a.acme_name, a.acme_directory, Path(a.account_dir), Path(a.cert),
                       Path(a.key), ready, occtl_socket=a.occtl_socket,
                       own_ca=Path(a.own_ca), email=a.email,
                       ca_bundle=a.acme_ca_bundle or True)
        engine.scheduler.jobs.append(Job("acme", acme, base=a.acme_retry, cap=3600.0))
    return engine


def cmd_run(args: argparse.Namespace) -> int:
    done, changed = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: changed.set())
    if args.once:
        once = build(resolve(args))
        once.scheduler.run_due()
        print(json.dumps(once.status()))
        if not args.keep:
            once.stop(keep=False)
        return 0
    while not done.is_set():
        resolved = resolve(args)
        built_from = fingerprint(resolved)
        engine: Engine | None = None
        if resolved.enabled:
            engine = build(resolved)
            engine.scheduler.start()
            log.info("reach service result=started port=%d lan_address=%s ddns=%s acme=%s",
                     resolved.port, resolved.lan_address or "-", resolved.ddns or "-",
                     "yes" if resolved.acme else "no")
        else:
            if resolved.status_file:  # nothing is mapped: the card says "off"
                Path(resolved.status_file).unlink(missing_ok=True)
            log.info("reach service result=idle reason=disabled")
        while not done.wait(args.watch_every):
            if changed.is_set() or (args.state and fingerprint(resolve(args)) != built_from):
                break
        if engine is not None:
            engine.stop(keep=args.keep)
        if not done.is_set():
            changed.clear()
            log.info("reach service result=reloading reason=settings-changed")
    log.info("reach service result=stopped")
    return 0
