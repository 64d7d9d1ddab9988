"""waitress around our Flask apps, with a clean stop for tests, devrun and hand-over.

The wizard must leave its port when setup is done (the admin UI takes over), and tests
start and stop many servers in one process; ``waitress.serve`` can do neither, so we keep
the server object and close its socket map ourselves.
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import Any

import waitress
from waitress import wasyncore

log = logging.getLogger(__name__)


def listen_spec(host: str, port: int) -> str:
    """waitress ``listen`` syntax; IPv6 literals need brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class WebServer:
    """One waitress server for ``app`` on ``hosts`` x ``port`` (port 0 picks a free one)."""

    def __init__(self, app: Any, hosts: list[str], port: int, *, threads: int = 4,
                 https: bool = False, channel_timeout: int = 60) -> None:
        self._server = waitress.create_server(
            app,
            listen=" ".join(listen_spec(h, port) for h in hosts),
            threads=threads,
            ident="OCGate",
            url_scheme="https" if https else "http",
            clear_untrusted_proxy_headers=True,
            max_request_body_size=1 << 20,
            # idle (or never-finishing TLS) connections are closed after channel_timeout;
            # waitress checks every cleanup_interval, 30 s by default
            channel_timeout=channel_timeout,
            cleanup_interval=max(1, min(30, channel_timeout // 2)),
            asyncore_loop_timeout=1,
        )
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._stopping = threading.Event()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) actually bound, e.g. to learn the port chosen for port 0."""
        listen = getattr(self._server, "effective_listen", None)
        if listen is not None:
            return [(str(h), int(p)) for h, p in listen]
        return [(str(self._server.effective_host), int(self._server.effective_port))]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def serve_forever(self) -> None:
        """Block until :meth:`stop` (from another thread) or Ctrl-C."""
        try:
            self._server.run()
        except OSError as exc:
            # stop() closes the sockets under the loop's select(): expected, not an error
            if not (self._stopping.is_set() and exc.errno == errno.EBADF):
                raise
        finally:
            self._stopped.set()

    def start_thread(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.serve_forever, name="web-server",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listening sockets and every connection; idempotent."""
        self._stopping.set()
        socket_map = getattr(self._server, "map", None) or getattr(self._server, "_map", {})
        try:
            self._server.task_dispatcher.shutdown(timeout=timeout)
        except Exception:  # shutting down must never fail the caller
            log.debug("task dispatcher shutdown failed", exc_info=True)
        wasyncore.close_all(socket_map)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
