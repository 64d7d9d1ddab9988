"""``python3 -m appliance.vpn``: the server, with ocserv 1.1.6's command line.

Init scripts and supervisors written for ocserv pass ``-p``, ``--no-chdir`` or nothing at
all (background mode), so every flag ocserv accepts is accepted here and means the same.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

from ..update.release import RELEASE_FILE, installed_release
from .auth.radius.conf import RadiusConfError, check_radius_files
from .config import ConfigError, load_config

DEFAULT_CONFIG = "/etc/ocserv/ocserv.conf"
PROG = "ocgate-server"


def version(release_file: Path = RELEASE_FILE) -> str:
    """The package version; on the appliance, the release of the booted slot first."""
    try:
        number = metadata.version("ocgate")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        number = "unknown"
    release = installed_release(release_file)
    if release is not None and release != number:
        return f"{PROG} {release} (package {number}, ocserv 1.1.6 compatible)"
    return f"{PROG} {number} (ocserv 1.1.6 compatible)"


def _debug_level(text: str) -> int:
    level = int(text)
    if not 0 <= level <= 9:
        raise argparse.ArgumentTypeError("must be in the range 0 to 9")
    return level


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG,
                                description="OCGate OpenConnect VPN server (ocserv compatible)")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="do not fork into the background")
    p.add_argument("-d", "--debug", type=_debug_level, nargs="?", const=1, default=0,
                   metavar="NUM", help="debug level (0-9)")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help="configuration file")
    p.add_argument("-t", "--test-config", action="store_true",
                   help="check the configuration file and exit")
    p.add_argument("-p", "--pid-file", metavar="FILE",
                   help="write the server's process ID here (overrides pid-file)")
    p.add_argument("--no-chdir", action="store_true",
                   help="stay in the current directory when going to the background")
    p.add_argument("-x", "--traceable", action="store_true",
                   help="accepted for ocserv's scripts; workers stay untraceable")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return p.parse_args(argv)


def setup_logging(level: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if level >= 2 else logging.INFO,
        format="%(asctime)s %(name)s[%(process)d]: %(levelname)s: %(message)s",
        stream=sys.stderr)
    # libraries' debug chatter would drown ours
    for noisy in ("passlib", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(version(), file=sys.stderr)  # where ocserv prints it
        return 0
    setup_logging(args.debug)
    log = logging.getLogger(__name__)
    # absolute before a chdir("/"): SIGHUP re-reads the file, the pid file is removed at exit
    config_path = os.path.abspath(args.config)
    pid_file = os.path.abspath(args.pid_file) if args.pid_file else None
    try:
        cfg = load_config(config_path)
        check_radius_files(cfg)
    except (ConfigError, RadiusConfError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if cfg.server_cert is None or cfg.server_key is None:  # ocserv refuses it, -t too
        print("error: the 'server-cert' and 'server-key' configuration options must be set",
              file=sys.stderr)
        return 1
    for warning in cfg.warnings:
        log.warning("%s", warning)
    if args.test_config:
        print(f"{args.config}: configuration is valid")
        return 0
    if args.traceable:
        log.warning("-x/--traceable ignored: worker processes stay untraceable")
    if not args.foreground:
        from .main.daemon import daemonize, log_to_syslog
        status = daemonize(chdir=not args.no_chdir)
        if status is not None:
            return status
        log_to_syslog(cfg.syslog_facility)
    from . import native
    from .main.server import Main
    native.log_status()
    try:
        server = Main(cfg, config_path, pid_file)
    except OSError as exc:  # e.g. listen-netns names no namespace (ocserv exits too)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return server.run()


if __name__ == "__main__":
    sys.exit(main())
