"""Is the VPN's user database a RADIUS server?  What the Users and Sessions pages need.

With ``auth = radius[config=/etc/radcli/radiusclient.conf,...]`` (docs/protocol.md §10.2) the
accounts live in the RADIUS server: a local add/edit/delete/password change would do
nothing (or, worse, look as if it did).  The pages therefore ask this module and show
where users are managed instead.  The check reads the raw ``auth`` lines through
:class:`~appliance.vpn.config.ConfigDocument` rather than the fully validated config, so
the notice still appears while some other option in the file is being fixed.

The server's name comes from the radcli-style file ocserv points at (``authserver
host[:port][:secret]``); only the host and port are shown, never the secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..vpn.auth.radius.conf import AUTH_PORT, RadiusConfError, parse_keyvalues, split_host
from ..vpn.config import ConfigDocument, ConfigError, parse_auth_method

log = logging.getLogger(__name__)

MAX_RADCLI_BYTES = 64 << 10


@dataclass(frozen=True)
class RadiusInfo:
    """RADIUS is the user source; ``server`` is 'host:port' when the radcli file says."""

    config_file: str
    server: str | None

    @property
    def label(self) -> str:
        return f"RADIUS server {self.server}" if self.server else "the RADIUS server"


def radius_server_name(radcli_text: str, path: str = "radiusclient.conf") -> str | None:
    """'host:port' of the first ``authserver`` (the secret part is dropped)."""
    try:
        first = parse_keyvalues(radcli_text, path).get("authserver", "").split(",")[0].strip()
        if not first:
            return None
        host, port, _secret = split_host(first, AUTH_PORT, path)
    except RadiusConfError:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_radius_info(conf: Path) -> RadiusInfo | None:
    """RadiusInfo when a password ``auth`` method is RADIUS, else None."""
    try:
        doc = ConfigDocument.load(str(conf))
    except (ConfigError, OSError):
        return None
    for value in doc.get("auth"):
        try:
            method = parse_auth_method(value.strip().strip('"'))
        except ValueError:
            continue
        if method.name != "radius":
            continue
        config_file = method.params.get("config", "")
        server = None
        if config_file:
            try:
                with open(config_file, encoding="utf-8", errors="replace") as handle:
                    server = radius_server_name(handle.read(MAX_RADCLI_BYTES), config_file)
            except OSError as exc:
                log.info("radcli config %s not readable: %s", config_file, exc.strerror)
        return RadiusInfo(config_file, server)
    return None
