"""``python3 -m appliance.firstboot``: the first-boot wizard, or a factory reset.

    python3 -m appliance.firstboot --state /var/lib/ocgate            # device (systemd unit)
    python3 -m appliance.firstboot --state state --port 8080 --handover none --no-mdns
    python3 -m appliance.firstboot --factory-reset --state /var/lib/ocgate [--yes]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..state import DEVICE_STATE_DIR, StateLayout
from .apply import recover
from .service import WizardOptions, WizardService, run_done_handover, run_factory_reset
from .subnets import POLICIES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m appliance.firstboot",
                                description="OCGate first-boot setup wizard")
    p.add_argument("--state", type=Path, default=DEVICE_STATE_DIR,
                   help=f"state folder (default {DEVICE_STATE_DIR})")
    p.add_argument("--port", type=int, default=80, help="HTTP port of the wizard (80)")
    p.add_argument("--host", action="append", dest="hosts",
                   help="address to listen on (repeatable; default every IPv4 address)")
    p.add_argument("--vpn-port", type=int, default=443, help="VPN port written to the config")
    p.add_argument("--no-mdns", action="store_true", help="do not announce ocgate.local")
    p.add_argument("--mdns-name", default="ocgate", help="mDNS host name (ocgate)")
    p.add_argument("--subnet-policy", choices=sorted(POLICIES), default="home",
                   help="VPN subnet candidates: 'home' (default) or 'documentation' "
                        "(RFC 5737 ranges, for tests and demos in namespaces)")
    p.add_argument("--handover", choices=["systemd", "none"], default="systemd",
                   help="after apply: enable/start the systemd units, or only log")
    p.add_argument("--linger", type=float, default=1800.0,
                   help="seconds the final page stays up without a click on Finish")
    p.add_argument("--factory-reset", action="store_true",
                   help="erase the configuration so that the wizard runs again")
    p.add_argument("--yes", action="store_true", help="do not ask before a factory reset")
    p.add_argument("--reach-probe", default="", metavar="ADDRESS",
                   help="an Internet address the reach check sends its hop probe towards "
                        "(tells carrier-grade NAT apart); default: none")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = WizardOptions(state=args.state, hosts=args.hosts or ["0.0.0.0"],
                            port=args.port, vpn_port=args.vpn_port, mdns=not args.no_mdns,
                            mdns_name=args.mdns_name, policy=args.subnet_policy,
                            handover=args.handover, linger=args.linger,
                            reach_probe=args.reach_probe)
    if args.factory_reset:
        return run_factory_reset(options, assume_yes=args.yes)
    layout = StateLayout.at(args.state)
    if layout.root.exists():
        recover(layout)
    if layout.is_setup_done():
        print(f"{layout.root} is already set up. To run the wizard again: "
              f"python3 -m appliance.firstboot --factory-reset --state {layout.root}")
        run_done_handover(options)
        return 0
    try:
        service = WizardService(options)
    except OSError as exc:
        print(f"cannot start the wizard: {exc}", file=sys.stderr)
        return 1
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
