"""``python3 -m appliance.vpn``: the server, with ocserv's command-line flags."""

from __future__ import annotations

import argparse
import logging
import sys

from .auth.radius.conf import RadiusConfError, check_radius_files
from .config import ConfigError, load_config

DEFAULT_CONFIG = "/etc/ocserv/ocserv.conf"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ocgate-server",
                                description="OCGate OpenConnect VPN server (ocserv compatible)")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground (always the case; accepted for ocserv scripts)")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="configuration file")
    p.add_argument("-d", "--debug", type=int, nargs="?", const=1, default=0,
                   help="debug level (0-9); also logs to stderr")
    p.add_argument("-t", "--test-config", action="store_true",
                   help="check the configuration file and exit")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return p.parse_args(argv)


def setup_logging(level: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if level >= 2 else logging.INFO,
        format="%(asctime)s %(name)s[%(process)d]: %(levelname)s: %(message)s",
        stream=sys.stderr)
    # libraries' debug chatter would drown ours (and pyroute2 logs every netlink message)
    for noisy in ("pyroute2", "passlib", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print("OCGate VPN server (ocserv 1.1.6 compatible)")
        return 0
    setup_logging(args.debug)
    log = logging.getLogger(__name__)
    try:
        cfg = load_config(args.config)
        check_radius_files(cfg)
    except (ConfigError, RadiusConfError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in cfg.warnings:
        log.warning("%s", warning)
    if args.test_config:
        print(f"{args.config}: configuration is valid")
        return 0
    from .main.server import Main
    return Main(cfg, args.config).run()


if __name__ == "__main__":
    sys.exit(main())
