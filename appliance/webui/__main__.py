"""``python3 -m appliance.webui``: serve the admin UI with waitress.

    python3 -m appliance.webui --state /var/lib/ocgate --https            # the device
    python3 -m appliance.webui --state state --host 127.0.0.1 --port 8080  # development
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

from ..state import DEVICE_STATE_DIR, StateLayout
from ..web.server import WebServer
from ..web.tlsserver import HttpsWebServer
from .app import create_app
from .context import WebUIContext
from .logsource import LogSource

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m appliance.webui",
                                description="OCGate admin web UI")
    p.add_argument("--state", type=Path, default=DEVICE_STATE_DIR,
                   help=f"state folder (default {DEVICE_STATE_DIR})")
    p.add_argument("--host", action="append", dest="hosts",
                   help="address to listen on (repeatable; default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default 8443 with --https, else 8080)")
    p.add_argument("--https", action="store_true",
                   help="serve HTTPS with the device certificate from the state folder")
    p.add_argument("--http-redirect-port", type=int, default=None, metavar="PORT",
                   help="with --https: also listen on PORT (e.g. 80) with plain HTTP and "
                        "redirect every request to the HTTPS address")
    p.add_argument("--log-file", type=Path, default=None,
                   help="log file shown on the Logs page (default: the systemd journal)")
    p.add_argument("--session-minutes", type=int, default=30,
                   help="sign out after this many idle minutes (30)")
    p.add_argument("--threads", type=int, default=4, help="worker threads (4)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def redirect_app(https_port: int) -> WSGIApp:
    """Plain-HTTP app that sends everybody to the same host over HTTPS.

    People type the device's address without a scheme; the browser then tries port 80.
    Only the host name (without any port) is taken from the request, and the path is
    kept; nothing else is served on plain HTTP.
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        host = str(environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or "localhost")
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not _HOST.fullmatch(host):
            host = str(environ.get("SERVER_NAME") or "localhost")
        path = quote(str(environ.get("PATH_INFO") or "/"), safe="/")
        port = "" if https_port == 443 else f":{https_port}"
        location = f"https://{host}{port}{path}"
        start_response("301 Moved Permanently", [("Location", location),
                                                 ("Content-Type", "text/plain"),
                                                 ("Cache-Control", "no-store")])
        return [f"The admin interface is at {location}\n".encode()]

    return app


def make_server(args: argparse.Namespace) -> WebServer:
    layout = StateLayout.at(args.state)
    if not layout.admin_passwd.is_file():
        raise SystemExit(f"{layout.admin_passwd} does not exist: run the setup wizard "
                         "(python3 -m appliance.firstboot) first. There is no default "
                         "admin account.")
    ctx = WebUIContext.for_state(layout.root, https=args.https,
                                 logs=LogSource(args.log_file))
    app = create_app(ctx, session_minutes=max(1, args.session_minutes))
    hosts = args.hosts or ["0.0.0.0"]
    port = args.port if args.port is not None else (8443 if args.https else 8080)
    if args.https:
        return HttpsWebServer(app, hosts, port, cert=layout.server_cert,
                              key=layout.server_key, threads=args.threads)
    return WebServer(app, hosts, port, threads=args.threads)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        server = make_server(args)
    except OSError as exc:
        print(f"cannot start the admin UI: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.start_thread()
    redirector = None
    if args.https and args.http_redirect_port:
        redirector = WebServer(redirect_app(server.port), args.hosts or ["0.0.0.0"],
                               args.http_redirect_port, threads=1)
        redirector.start_thread()
    scheme = "https" if args.https else "http"
    for host, port in server.addresses:
        log.info("admin UI listening on %s://%s:%d/", scheme, host, port)
    stop.wait()
    log.info("stopping")
    if redirector is not None:
        redirector.stop()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
