"""occtl's command line: options, socket, one command or the interactive mode."""

from __future__ import annotations

import sys

from .commands import Context, commands_help, run_line
from .format import DEFAULT_CONFIG, DEFAULT_SOCKET, EXIT
from .interactive import _banner, interactive

# --- entry point ----------------------------------------------------------------------------


def usage() -> str:
    return ("occtl: [OPTIONS...] {COMMAND}\n\n"
            "  -s --socket-file       Specify the server's occtl socket file\n"
            "  -h --help              Show this help\n"
            "     --debug             Enable more verbose information in some commands\n"
            "  -v --version           Show the program's version\n"
            "  -j --json              Use JSON formatting for output\n"
            "  -n --no-pager          Do not pipe the output through a pager\n\n"
            + commands_help(interactive=False) + "\n")


def default_socket(config_path: str = DEFAULT_CONFIG) -> str:
    """occtl-socket-file from the server's configuration, else ocserv's default path."""
    from ..config import ConfigError, load_config
    try:
        return load_config(config_path).occtl_socket_file or DEFAULT_SOCKET
    except (ConfigError, OSError):
        return DEFAULT_SOCKET


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ctx = Context(socket_path="")
    socket_path: str | None = None
    while args and args[0].startswith("-") and args[0] != "-":
        opt = args.pop(0)
        if opt in ("-j", "--json"):
            ctx.json = True
        elif opt in ("-n", "--no-pager"):
            ctx.pager = False
        elif opt == "--debug":
            ctx.debug = True
        elif opt in ("-s", "--socket-file") and args:
            socket_path = args.pop(0)
        elif opt.startswith("--socket-file="):
            socket_path = opt.split("=", 1)[1]
        elif opt in ("-v", "--version"):
            _banner(sys.stderr)
            return 0
        elif opt in ("-h", "--help"):
            sys.stdout.write(usage())
            return 0
        elif opt == "--":
            break
        else:
            sys.stderr.write(usage())
            return 1
    ctx.socket_path = socket_path or default_socket()
    if not args:
        return interactive(ctx)
    rc = run_line(ctx, " ".join(args))
    return 0 if rc == EXIT else rc


if __name__ == "__main__":
    sys.exit(main())
