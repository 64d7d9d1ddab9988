"""The first-boot wizard as the browser tests run it: the process, its setup code, a step.

Shared by the wizard's own end-to-end test and the language tests that walk the same
wizard in Persian and Chinese.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from appliance.state import StateLayout
from tests.support.netns import Netns
from tests.support.nsprocess import NsProcess

VPN_USER = "alice"
VPN_PASSWORD = "seven Violet kites over 19 dunes"


class WizardProcess(NsProcess):
    """``python3 -m appliance.firstboot`` in the server namespace, as the device runs it."""

    def __init__(self, ns: Netns, state: Path, log: Path) -> None:
        super().__init__(ns, [sys.executable, "-u", "-m", "appliance.firstboot", "--state",
                              str(state), "--port", "80", "--no-mdns", "--subnet-policy",
                              "documentation", "--handover", "none", "--linger", "120"], log)
        self.wait_port(80, "wizard")


def submit_step(page: Any, form: str) -> None:
    """Submit the form with id ``form`` and wait for the next page."""
    with page.expect_navigation():
        page.click(f"#{form} button[type=submit]")


def read_code(layout: StateLayout) -> str:
    """The setup code the wizard wrote for the console (XXXX-XXXX-XXXX-XXXX)."""
    text = layout.setup_code.read_text()
    match = re.search(r"^([0-9A-Z]{4}-){3}[0-9A-Z]{4}$", text, re.M)
    assert match, text
    return match.group(0)
