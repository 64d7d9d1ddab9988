"""Helpers every page module uses: the context, the navigation, VPN calls that degrade."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from flask import Blueprint, current_app, g
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ...web.vpnclient import VpnCommandError, VpnUnavailable
from ..context import WebUIContext
from ..servermessages import translate

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
    ("dashboard.index", _l("Dashboard")),
    ("users.index", _l("Users")),
    ("sessions.index", _l("Sessions")),
    ("settings.index", _l("Settings")),
    ("backup.index", _l("Backup")),
    ("update.index", _l("Update")),
    ("logs.index", _l("Logs")),
    ("diagnostics.index", _l("Diagnostics")),
    ("account.index", _l("Account")),
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
        return default, _("The VPN server is not running or not reachable.")
    except VpnCommandError as exc:  # the server's English sentence, said in the page's language
        return default, translate(str(exc), failed=True).text
