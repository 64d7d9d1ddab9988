"""What the owner chose for reachability (STATE/reach.json) and where the service reports.

The wizard and the admin UI write these settings; ``python3 -m appliance.reach run --state``
reads them.  Secrets (TSIG key, dyndns2 password, DuckDNS token) are not here: they go to
``STATE/reach-secrets.json`` through :mod:`credentials` (0600, never logged).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomicfile import write_atomic

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
DDNS_KINDS = ("", "rfc2136", "dyndns2", "duckdns")
#: the credentials each DNS method needs, as keys of the secrets file
SECRET_KEYS = {"": (), "rfc2136": ("tsig_secret",), "dyndns2": ("username", "password"),
               "duckdns": ("token",)}


@dataclass(frozen=True)
class ReachSettings:
    enabled: bool = False  # map the VPN's ports on the router and keep them mapped
    ddns: str = ""  # one of DDNS_KINDS; "" = no name is published
    name: str = ""  # the public name (vpn.example.org, or the DuckDNS subdomain)
    dns_server: str = ""  # RFC 2136: the primary server's address
    dns_zone: str = ""
    tsig_name: str = ""
    ddns_url: str = ""  # dyndns2 / DuckDNS base URL (the provider's, or a test stand-in)
    acme: bool = False  # get a publicly trusted certificate for ``name``
    acme_directory: str = LETS_ENCRYPT
    email: str = ""

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: Any) -> ReachSettings:
        if not isinstance(data, dict):
            raise ValueError("reach settings: expected an object")
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key, value in values.items():
            want = bool if known[key] in (bool, "bool") else str
            if not isinstance(value, want):
                raise ValueError(f"reach settings: {key} must be a {want.__name__}")
        settings = cls(**values)
        if settings.ddns not in DDNS_KINDS:
            raise ValueError(f"reach settings: unknown DNS method {settings.ddns!r}")
        return settings


def load(path: Path) -> ReachSettings:
    """The saved settings, or the defaults (everything off) when there are none."""
    try:
        return ReachSettings.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return ReachSettings()


def save(path: Path, settings: ReachSettings) -> None:
    write_atomic(path, settings.to_json(), 0o644)


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status the service wrote (``run --status-file``), None before the first."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
