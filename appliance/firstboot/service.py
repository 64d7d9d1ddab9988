"""Running the wizard: web server, mDNS, console banner, hand-over, factory reset.

Used by ``python3 -m appliance.firstboot`` (the device's first-boot unit) and by
``make run`` (appliance.devrun), which passes its own hooks to start the VPN server in
the foreground instead of systemd units.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..state import StateLayout
from ..web.server import WebServer
from .app import create_app
from .apply import (
    Handover,
    Runner,
    Units,
    factory_reset,
    factory_reset_commands,
    handover_commands,
    logging_runner,
    recover,
    subprocess_runner,
    switch_commands,
)
from .context import Final, WizardContext
from .mdns import MdnsAnnouncer, MdnsError
from .network import NetworkInfo, detect_network
from .setupcode import SetupCodeStore
from .subnets import POLICIES

log = logging.getLogger(__name__)

#: Grace period between "Finish" and closing the server, so the last page is delivered.
FINISH_GRACE = 1.0


@dataclass
class WizardOptions:
    state: Path
    hosts: list[str] = field(default_factory=lambda: ["0.0.0.0"])
    port: int = 80
    vpn_port: int = 443
    mdns: bool = True
    mdns_name: str = "ocgate"
    policy: str = "home"
    handover: str = "systemd"  # "systemd" on the device, "none" in tests and demos
    linger: float = 1800.0  # seconds the final page stays up when nobody presses Finish
    units: Units = field(default_factory=Units)
    reach_probe: str = ""  # an Internet address for the reach check's hop probe (CGNAT)


class WizardService:
    """One wizard run; :meth:`run` blocks until the user finished (or Ctrl-C)."""

    def __init__(
        self,
        options: WizardOptions,
        *,
        probe: Callable[[], NetworkInfo] = detect_network,
        runner: Runner | None = None,
        on_applied: Callable[[Final], None] | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> None:
        self.options = options
        self.layout = StateLayout.at(options.state)
        self.layout.root.mkdir(parents=True, exist_ok=True)
        recover(self.layout)
        if runner is None:
            runner = subprocess_runner if options.handover == "systemd" else logging_runner
        self.handover = Handover(runner)
        self._user_on_applied = on_applied
        self._user_on_finish = on_finish
        self.applied_at: float | None = None
        self.ctx = WizardContext(
            layout=self.layout,
            port=options.port,
            vpn_port=options.vpn_port,
            policy=POLICIES[options.policy],
            probe=probe,
            handover=self.handover,
            handover_commands=(handover_commands(options.units)
                               if options.handover == "systemd" else []),
            on_applied=self._on_applied,
            on_finish=self._on_finish,
            mdns_name=options.mdns_name,
            extra_hosts=tuple(h for h in options.hosts if h not in ("0.0.0.0", "::", "")),
            reach_check=self._reach_check,
        )
        self.code = SetupCodeStore(self.layout.setup_code).ensure() \
            if not self.layout.is_setup_done() else None
        self.app = create_app(self.ctx)
        self.server: WebServer | None = None
        self.mdns: MdnsAnnouncer | None = None

    # ---- hooks
    def _reach_check(self, lan_address: str, port: int) -> dict[str, Any]:
        from ..reach.check import check_once  # miniupnpc and friends only when asked

        return check_once(lan_address, port, probe_target=self.options.reach_probe)

    def _on_applied(self, final: Final) -> None:
        self.applied_at = time.monotonic()
        if self.mdns is not None:
            try:
                self.mdns.announce("_https._tcp", final.plan.vpn_port)
            except Exception:  # mDNS is a convenience; never fail the setup for it
                log.warning("mDNS: could not announce the VPN service", exc_info=True)
        if self._user_on_applied is not None:
            self._user_on_applied(final)

    def _on_finish(self) -> None:
        # The switch to the admin UI waits for wait(): starting it from inside the Finish
        # request would let its Conflicts= stop this wizard before the page is delivered.
        if self._user_on_finish is not None:
            self._user_on_finish()

    # ---- life cycle
    def urls(self) -> list[str]:
        info = self.ctx.network()
        port = "" if self.options.port == 80 else f":{self.options.port}"
        hosts = [str(a.address) if a.address.version == 4 else f"[{a.address}]"
                 for a in info.lan_addresses]
        urls = [f"http://{h}{port}/" for h in hosts]
        if self.options.mdns:
            urls.append(f"http://{self.options.mdns_name}.local{port}/")
        return urls or [f"http://localhost{port}/"]

    def banner(self, out: TextIO = sys.stdout) -> None:
        """The console message: the only place besides the boot partition with the code.

        Composed first and written at once, so a reader of the console (or of a log file)
        never sees the heading without the code.
        """
        lines = ["=" * 64, " OCGate first-time setup"]
        lines += [f"   open   {url}" for url in self.urls()]
        lines += [f"   setup code   {self.code}", f"   (also in {self.layout.setup_code})"]
        lines.append("=" * 64)
        out.write("\n".join(lines) + "\n")
        out.flush()

    def start(self) -> None:
        self.server = WebServer(self.app, self.options.hosts, self.options.port)
        self.server.start_thread()
        if self.options.mdns:
            self._start_mdns()

    def _start_mdns(self) -> None:
        addresses = [str(a.address) for a in self.ctx.network().lan_addresses]
        try:
            self.mdns = MdnsAnnouncer(addresses, hostname=self.options.mdns_name)
            self.mdns.start()
            self.mdns.announce("_http._tcp", self.options.port)
        except MdnsError as exc:
            log.warning("mDNS disabled: %s", exc)
            self.mdns = None

    def finish(self) -> None:
        """What the Finish button does, also used when the final page lingered too long."""
        if not self.ctx.finished.is_set():
            self.ctx.finished.set()
            self._on_finish()

    def wait(self) -> None:
        """Block until finished; after apply, give up waiting for Finish after ``linger``."""
        while not self.ctx.finished.wait(0.25):
            if self.applied_at is not None and \
                    time.monotonic() - self.applied_at > self.options.linger:
                log.info("nobody pressed Finish for %.0f s; leaving", self.options.linger)
                self.finish()
        time.sleep(FINISH_GRACE)  # the final page reaches the browser first
        if self.options.handover == "systemd":
            self.handover.run(switch_commands(self.options.units))

    def stop(self) -> None:
        if self.mdns is not None:
            self.mdns.stop()
            self.mdns = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def run(self) -> int:
        self.start()
        self.banner()
        try:
            self.wait()
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        finally:
            self.stop()
        return 0


def run_done_handover(options: WizardOptions, runner: Runner | None = None) -> None:
    """Setup is done already (e.g. finished by crash recovery): make sure the units run."""
    if options.handover != "systemd":
        return
    handover = Handover(runner or subprocess_runner)
    handover.run(handover_commands(options.units) + switch_commands(options.units))


def run_factory_reset(options: WizardOptions, *, assume_yes: bool,
                      ask: Callable[[str], str] = input, out: TextIO = sys.stdout,
                      runner: Runner | None = None) -> int:
    layout = StateLayout.at(options.state)
    if not assume_yes:
        print(f"This erases the VPN configuration, all users, the admin account and the "
              f"certificates in {layout.root}.", file=out)
        try:
            answer = ask("Type RESET to continue: ")
        except EOFError:
            answer = ""
        if answer.strip() != "RESET":
            print("Nothing was changed.", file=out)
            return 1
    if options.handover == "systemd":
        Handover(runner or subprocess_runner).run(factory_reset_commands(options.units))
    removed = factory_reset(layout)
    print(f"Factory reset done ({len(removed)} items removed). The setup wizard runs at the "
          "next start.", file=out)
    return 0
