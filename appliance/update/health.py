"""``python3 -m appliance.update.health``: is this boot good enough to keep?

Run once per boot by ocgate-health.service.  Before the wizard finished, the wizard must
answer on port 80.  After it, three things must hold: the VPN unit is active (it is
``Type=notify``, so active means main sent READY=1 with its listeners, sec-mod and the
control socket up), the control socket answers ``show status``, and the admin web UI
answers over HTTPS on 8443.  All true within the deadline: ``rauc status mark-good`` gives
the booted slot its tries back, and a waiting update is settled (installed, or rolled back
when the boot loader fell back to the other slot).  Otherwise exit 1, and the unit's
``FailureAction=reboot`` spends one of the slot's tries.  A boot that did not come
through the A/B boot script (no ``rauc.slot=``) has nothing to fall back to: it is only
logged.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..state import DEVICE_STATE_DIR, StateLayout
from ..vpn.control.client import ConnectFailed, ControlClient, ServerError, Unreachable
from . import rauc
from .history import ROLLED_BACK, History, settle

log = logging.getLogger("ocgate.health")


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], str | None]  # None = passed, else why not


def http_answers(port: int, path: str, *, tls: bool) -> str | None:
    try:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the device's own certificate, localhost
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", port, timeout=10, context=context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return f"no answer on port {port}: {exc}"
    return None if status < 500 else f"port {port} answered {status}"


class Hopeless(Exception):
    """A check that will not pass by waiting longer (the unit keeps crashing)."""


MAX_RESTARTS = 3


def unit_state(show_output: str) -> tuple[str, int]:
    """(ActiveState, NRestarts) from ``systemctl show -p ActiveState -p NRestarts``."""
    props = dict(line.split("=", 1) for line in show_output.splitlines() if "=" in line)
    try:
        restarts = int(props.get("NRestarts", "0"))
    except ValueError:
        restarts = 0
    return props.get("ActiveState", "unknown"), restarts


def unit_active(unit: str) -> str | None:
    """None once ``unit`` is active; raises Hopeless when it crashed MAX_RESTARTS times
    (``Restart=on-failure`` would keep it "activating" until the deadline)."""
    proc = subprocess.run(["systemctl", "show", "-p", "ActiveState", "-p", "NRestarts",
                           unit], capture_output=True, text=True, timeout=30, check=False)
    state, restarts = unit_state(proc.stdout)
    if state == "active":
        return None
    if restarts >= MAX_RESTARTS or state == "failed":
        raise Hopeless(f"{unit} is {state} after {restarts} restarts")
    return f"{unit} is {state}"


def control_answers(layout: StateLayout) -> str | None:
    from ..webui.context import control_socket_path

    try:
        with ControlClient(control_socket_path(layout), timeout=10) as client:
            status = client.call("show status")
    except (ConnectFailed, Unreachable, ServerError) as exc:
        return f"control socket: {exc or type(exc).__name__}"
    return None if isinstance(status, dict) else "control socket: no status"


def checks_for(layout: StateLayout) -> list[Check]:
    if not layout.is_setup_done():
        return [Check("wizard", lambda: http_answers(80, "/setup/", tls=False))]
    return [Check("vpn-ready", lambda: unit_active("ocgate-vpn.service")),
            Check("control-socket", lambda: control_answers(layout)),
            Check("web-ui", lambda: http_answers(8443, "/", tls=True))]


def wait_healthy(checks: list[Check], deadline: float, pause: float = 3.0) -> str | None:
    """Run every check until all pass (None) or the deadline passes (the last failure)."""
    while True:
        failure = None
        for check in checks:
            try:
                why = check.run()
            except Hopeless as exc:
                return f"{check.name}: {exc}"
            if why is not None:
                failure = f"{check.name}: {why}"
                break
        if failure is None or time.monotonic() >= deadline:
            return failure
        time.sleep(pause)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="mark this boot good once the appliance works")
    p.add_argument("--state", type=Path, default=DEVICE_STATE_DIR)
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for every check to pass")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    layout = StateLayout.at(args.state)
    history = History(layout.root / "update")
    booted = rauc.booted_slot(Path("/proc/cmdline").read_text())
    pending = history.pending()
    if pending is not None and booted is not None and booted != pending.slot:
        # the boot loader fell back: settle now, whatever this boot's health
        outcome = settle(pending, booted, healthy=False)
        assert outcome is not None and outcome.result == ROLLED_BACK
        history.finish(outcome)
        log.warning("update result=rolled-back version=%s slot=%s booted=%s",
                    pending.version, pending.slot, booted)
        try:
            rauc.mark("bad", "other")
        except rauc.RaucError as exc:
            log.warning("health mark-bad other failed: %s", exc)
        pending = None
    failure = wait_healthy(checks_for(layout), time.monotonic() + args.timeout)
    if booted is None:
        # not started by the A/B boot script (the Pi firmware, a kernel passed directly):
        # there is no other slot to fall back to, so a reboot would only repeat this boot
        log.warning("health result=%s slot=unknown reason=%s (no rauc.slot=: nothing to "
                    "mark, no fallback)", "bad" if failure else "good", failure or "-")
        return 0
    if failure is not None:
        log.error("health result=bad slot=%s reason=%s", booted, failure)
        return 1
    try:
        rauc.mark("good", "booted")
    except rauc.RaucError as exc:
        log.error("health result=bad slot=%s reason=mark-good failed: %s", booted, exc)
        return 1
    if pending is not None:
        outcome = settle(pending, booted, healthy=True)
        if outcome is not None:
            history.finish(outcome)
            log.info("update result=%s version=%s slot=%s", outcome.result, outcome.version,
                     outcome.slot)
    log.info("health result=good slot=%s", booted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
