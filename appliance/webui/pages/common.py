"""Helpers every page module uses: the context, the navigation, VPN calls that degrade."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from flask import Blueprint, current_app, g

from ...web.vpnclient import VpnCommandError, VpnUnavailable
from ..context import WebUIContext

log = logging.getLogger(__name__)

EXTENSION = "ocgate_webui"
T = TypeVar("T")
D = TypeVar("D")

#: Static files and templates of the admin UI (the shared ones come from appliance.web).
ui = Blueprint("ui", __name__, static_folder=str(Path(__file__).resolve().parents[1] /
                                                  "static"),
               static_url_path="/static/ui",
               template_folder=str(Path(__file__).resolve().parents[1] / "templates"))

#: (endpoint, label) of the side navigation, in order.
NAV: tuple[tuple[str, str], ...] = (
    ("dashboard.index", "Dashboard"),
    ("users.index", "Users"),
    ("sessions.index", "Sessions"),
    ("settings.index", "Settings"),
    ("backup.index", "Backup"),
    ("logs.index", "Logs"),
    ("diagnostics.index", "Diagnostics"),
    ("account.index", "Account"),
)


def ctx() -> WebUIContext:
    return current_app.extensions[EXTENSION]


def owner() -> str:
    """The signed-in admin session's id (drafts and downloads belong to it)."""
    return str(g.get("sid", ""))


def vpn_call(call: Callable[[], T], default: D) -> tuple[T | D, str | None]:
    """Run a control-socket call; (default, reason) when the server is not reachable."""
    try:
        return call(), None
    except VpnUnavailable as exc:
        log.info("VPN server not reachable: %s", exc)
        return default, "The VPN server is not running or not reachable."
    except VpnCommandError as exc:
        return default, f"The VPN server refused: {exc}"
