"""The VPN server's sentences that reach a page through the control socket, in the page's language.

The server speaks English on its control socket, like ocserv: occtl, the logs and every
script that reads them keep working, and a log line looks the same in every country.
Translation happens here, at the last step before a person reads the text: each known
sentence of the server (docs/control-protocol.md, ``appliance/vpn/control.py`` and
``main.py``) is recognised by a pattern and said again in the page's language, with its
details (paths, option names) kept verbatim.  A sentence we do not know is shown as the
server wrote it, inside a translated frame, so nothing is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from flask_babel import gettext as _


@dataclass(frozen=True)
class ServerMessage:
    """A server sentence for a page: ``ok`` False when it reports a failure."""

    text: str
    ok: bool
    known: bool = True


def _reloaded(m: re.Match[str]) -> ServerMessage:
    if m["restart"]:
        return ServerMessage(_("The VPN server reloaded its configuration (%(path)s). These "
                               "options change only when it restarts: %(options)s.",
                               path=m["path"], options=m["restart"]), True)
    return ServerMessage(_("The VPN server reloaded its configuration (%(path)s).",
                           path=m["path"]), True)


_Handler = Callable[[re.Match[str]], ServerMessage]
PATTERNS: tuple[tuple[re.Pattern[str], _Handler], ...] = (
    (re.compile(r"configuration reloaded from (?P<path>.+?)"
                r"(?:; needs a restart to change: (?P<restart>.+))?"), _reloaded),
    (re.compile(r"reload failed: (?P<detail>.+)"), lambda m: ServerMessage(
        _("The VPN server could not reload its configuration and keeps running with the "
          "previous one: %(detail)s", detail=m["detail"]), False)),
    (re.compile(r"reload requested"), lambda m: ServerMessage(
        _("The VPN server was asked to reload its configuration."), True)),
    (re.compile(r"server scheduled to stop"), lambda m: ServerMessage(
        _("The VPN server is stopping."), True)),
    (re.compile(r"internal error"), lambda m: ServerMessage(
        _("The VPN server had an internal error; the details are in its log."), False)),
    (re.compile(r"too many control clients"), lambda m: ServerMessage(
        _("The VPN server is busy with other control connections; try again in a moment."),
        False)),
    (re.compile(r"response too large"), lambda m: ServerMessage(
        _("The VPN server's answer was too large to show."), False)),
    (re.compile(r"unknown command"), lambda m: ServerMessage(
        _("The VPN server does not know this command; is it an older version?"), False)),
    (re.compile(r"unsupported protocol version (?P<version>\S+)"), lambda m: ServerMessage(
        _("The VPN server does not speak this version (%(version)s) of the control "
          "protocol.", version=m["version"]), False)),
    (re.compile(r"'(?P<name>[^']+)' must be a positive integer"), lambda m: ServerMessage(
        _("The VPN server expects a positive whole number for '%(name)s'.",
          name=m["name"]), False)),
    (re.compile(r"'(?P<name>[^']+)' is not an IP address"), lambda m: ServerMessage(
        _("The VPN server refused '%(name)s': it is not an IP address.", name=m["name"]),
        False)),
    (re.compile(r"'(?P<name>[^']+)' (?:must be a non-empty string|is too long or holds "
                r"control characters)"), lambda m: ServerMessage(
        _("The VPN server refused the value of '%(name)s' (empty, too long or with control "
          "characters).", name=m["name"]), False)),
)


def translate(message: str, *, failed: bool = False) -> ServerMessage:
    """The server's ``message`` for the page; ``failed`` when it came as an error reply."""
    text = message.strip()
    for pattern, handler in PATTERNS:
        match = pattern.fullmatch(text)
        if match is not None:
            result = handler(match)
            return ServerMessage(result.text, result.ok and not failed)
    if failed:
        return ServerMessage(_("The VPN server refused: %(message)s", message=text), False,
                             known=False)
    return ServerMessage(_("The VPN server answered: %(message)s", message=text), True,
                         known=False)
