"""The health check's decisions (appliance.update.health), without a device."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from appliance.update.health import Check, Hopeless, http_answers, unit_state, wait_healthy


def test_unit_state() -> None:
    assert unit_state("ActiveState=active\nNRestarts=0\n") == ("active", 0)
    assert unit_state("NRestarts=4\nActiveState=activating\n") == ("activating", 4)
    assert unit_state("") == ("unknown", 0)


def test_waits_until_every_check_passes() -> None:
    calls = {"n": 0}

    def flaky() -> str | None:
        calls["n"] += 1
        return None if calls["n"] >= 3 else "not yet"

    assert wait_healthy([Check("ok", lambda: None), Check("flaky", flaky)],
                        time.monotonic() + 10, pause=0.01) is None
    assert calls["n"] == 3


def test_deadline_reports_the_last_failure() -> None:
    why = wait_healthy([Check("web-ui", lambda: "no answer")], time.monotonic() + 0.05,
                       pause=0.01)
    assert why == "web-ui: no answer"


def test_a_hopeless_check_fails_at_once() -> None:
    def crashing() -> str | None:
        raise Hopeless("ocgate-vpn.service is activating after 3 restarts")

    t0 = time.monotonic()
    why = wait_healthy([Check("vpn-ready", crashing)], time.monotonic() + 60, pause=0.01)
    assert why is not None and "3 restarts" in why and time.monotonic() - t0 < 5


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[int]]]:
    statuses = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(statuses[0])
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], statuses
    server.shutdown()
    server.server_close()


def test_http_answers(http_server: tuple[int, list[int]]) -> None:
    port, statuses = http_server
    assert http_answers(port, "/", tls=False) is None
    statuses[0] = 503
    assert http_answers(port, "/", tls=False) == f"port {port} answered 503"
    assert "no answer" in str(http_answers(1, "/", tls=False))
