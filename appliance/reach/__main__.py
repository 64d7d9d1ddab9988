"""``python3 -m appliance.reach``: the reachability engine as a service or a one-shot.

``run`` keeps the VPN's ports mapped, the DNS name current and (with ``--state``) a public
certificate installed, writing the status as JSON after every pass, and removes the mappings
on SIGTERM (service.py); ``cert`` gets a certificate once.  The appliance's systemd unit
(ocgate-reach.service), ``make run`` and the tests drive it the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .manager import MappingManager, Want
from .service import cmd_run, mapping_factories

if TYPE_CHECKING:
    from .acmecert import Issued

log = logging.getLogger(__name__)


def cmd_cert(args: argparse.Namespace) -> int:
    from . import acmecert, challenges

    if args.challenge == "tls-alpn-01":  # answered by the sec-mod on the VPN's own port
        alpn = challenges.store_beside(args.cert)
        issuer = acmecert.AcmeIssuer(args.directory, Path(args.state), email=args.email,
                                     ca_bundle=args.ca_bundle or True, alpn=alpn)
        return _installed(issuer.issue(args.name), args)
    http01 = challenges.HttpChallenges()
    server = challenges.serve_http01(http01, args.http01_address, args.http01_port)
    port80 = None
    if args.map_http01:  # port 80 is mapped only while the challenge needs it
        port80 = MappingManager([Want("tcp", args.http01_port, 80)],
                                mapping_factories("auto", args.gateway), args.lan_address,
                                lifetime=600)
        port80.refresh()
        if port80.status is None or not port80.status.reachable:
            log.warning("reach acme http-01 port 80 not mapped: %s",
                        port80.status.headline if port80.status else "?")
    try:
        issuer = acmecert.AcmeIssuer(args.directory, Path(args.state), email=args.email,
                                     ca_bundle=args.ca_bundle or True, http01=http01)
        issued = issuer.issue(args.name)
    finally:
        server.shutdown()
        server.server_close()
        if port80 is not None:
            port80.stop()
    return _installed(issued, args)


def _installed(issued: Issued, args: argparse.Namespace) -> int:
    from . import acmecert

    try:
        acmecert.install(issued, Path(args.cert), Path(args.key), args.occtl_socket or None)
    except acmecert.ReloadError as exc:
        log.error("reach acme installed but not in use: %s", exc)
        return 1
    print(json.dumps({"not_before": issued.not_before.isoformat(),
                      "not_after": issued.not_after.isoformat(),
                      "renew_at": acmecert.renew_at(issued.not_before,
                                                    issued.not_after).isoformat()}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m appliance.reach")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="keep the ports mapped and the DNS name current")
    run.add_argument("--port", type=int, default=0,
                     help="the VPN's port (default: ocserv.conf's tcp-port with --state, 443)")
    run.add_argument("--external-port", type=int, default=0)
    run.add_argument("--lan-address", default="",
                     help="ours towards the router (default: the source address to it)")
    run.add_argument("--gateway", default="")
    run.add_argument("--only", choices=("auto", "pcp", "nat-pmp", "upnp"), default="auto")
    run.add_argument("--lifetime", type=int, default=3600)
    run.add_argument("--check-every", type=float, default=30.0)
    run.add_argument("--status-file", default="")
    run.add_argument("--probe-target", default="",
                     help="an Internet address for the hop probe (CGNAT, double NAT)")
    run.add_argument("--once", action="store_true", help="one pass, print the status")
    run.add_argument("--keep", action="store_true", help="leave the mappings on exit")
    run.add_argument("--ddns", choices=("rfc2136", "dyndns2", "duckdns"), default="")
    run.add_argument("--name", default="")
    run.add_argument("--secrets", default="", help="0600 JSON file with the credentials")
    run.add_argument("--dns-server", default="")
    run.add_argument("--dns-zone", default="")
    run.add_argument("--tsig-name", default="")
    run.add_argument("--ddns-url", default="")
    run.add_argument("--state", default="",
                     help="the appliance's state folder: its reach settings and status file, "
                     "the VPN's certificate and control socket; re-read while running")
    run.add_argument("--ipv6", choices=("auto", "off"), default="auto",
                     help="auto: with an Internet-reachable IPv6 address, open a PCP pinhole "
                     "for the VPN's ports and publish the AAAA record")
    run.add_argument("--watch-every", type=float, default=2.0,
                     help="seconds between looks at the settings (--state)")
    run.add_argument("--acme-ca-bundle", default="",
                     help="CA file for the ACME server's own HTTPS (a private ACME CA)")
    run.add_argument("--acme-retry", type=float, default=30.0,
                     help="first retry of a failed ACME order, doubling up to an hour")
    run.set_defaults(func=cmd_run)
    cert = sub.add_parser("cert", help="get a certificate by TLS-ALPN-01 or HTTP-01")
    cert.add_argument("--directory", required=True)
    cert.add_argument("--name", required=True)
    cert.add_argument("--state", required=True)
    cert.add_argument("--cert", required=True)
    cert.add_argument("--key", required=True)
    cert.add_argument("--email", default="")
    cert.add_argument("--ca-bundle", default="")
    cert.add_argument("--challenge", choices=("tls-alpn-01", "http-01"), default="tls-alpn-01",
                      help="tls-alpn-01: the VPN server using --cert answers on its port")
    cert.add_argument("--http01-address", default="")
    cert.add_argument("--http01-port", type=int, default=80)
    cert.add_argument("--map-http01", action="store_true",
                      help="map TCP port 80 on the router while the challenge runs")
    cert.add_argument("--lan-address", default="")
    cert.add_argument("--gateway", default="")
    cert.add_argument("--occtl-socket", default="",
                      help="the VPN server's occtl socket: reload it once the pair is installed")
    cert.set_defaults(func=cmd_cert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
