"""The radcli configuration file that ``auth = radius[config=FILE]`` points at.

ocserv hands that file to radcli (``rc_read_config``), so administrators already have one
(usually /etc/radcli/radiusclient.conf) plus the ``servers`` file it names.  We read the
same two files so that a working ocserv set-up keeps working unchanged; only the keys that
change what goes on the wire are honoured, the rest (dictionary, seqfile, login tools) are
accepted and ignored because pyrad carries its own dictionary.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

AUTH_PORT = 1812
ACCT_PORT = 1813
DEFAULT_TIMEOUT = 5
DEFAULT_RETRIES = 3
MAX_CONF_BYTES = 256 * 1024


class RadiusConfError(ValueError):
    """The radcli configuration or servers file cannot be used."""


@dataclass(frozen=True)
class RadiusServer:
    """One authserver/acctserver entry with the secret that the servers file gives it."""

    host: str
    port: int
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class RadiusConf:
    auth_servers: tuple[RadiusServer, ...]
    acct_servers: tuple[RadiusServer, ...]
    timeout: float = DEFAULT_TIMEOUT  # seconds per try (radius_timeout)
    retries: int = DEFAULT_RETRIES  # sends per server (radius_retries)
    nas_identifier: str = ""
    nas_ip: str = ""  # bindaddr: also the NAS-IP-Address we announce
    default_realm: str = ""


def _lines(text: str) -> list[tuple[int, str]]:
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append((number, line))
    return out


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONF_BYTES + 1)
    except OSError as exc:
        raise RadiusConfError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONF_BYTES:
        raise RadiusConfError(f"{path}: larger than {MAX_CONF_BYTES} bytes")
    return data.decode("utf-8", "replace")


def parse_keyvalues(text: str, path: str) -> dict[str, str]:
    """radcli's ``key value`` lines; a repeated key keeps its last value, as radcli does.

    A keyword alone is an empty value, as radcli reads it: its own sample file has a bare
    ``default_realm`` line, and ocserv admins point ``auth = radius[config=...]`` at it.
    """
    values: dict[str, str] = {}
    for _number, line in _lines(text):
        key, *value = line.split(None, 1)
        values[key.lower()] = value[0].strip() if value else ""
    return values


def parse_servers_file(text: str, path: str) -> dict[str, bytes]:
    """``host[:port] secret`` per line; the secret is matched by host name."""
    secrets: dict[str, bytes] = {}
    for number, line in _lines(text):
        parts = line.split(None, 1)
        if len(parts) != 2 or not parts[1].strip():
            raise RadiusConfError(f"{path}:{number}: expected 'server secret'")
        host, _port, _ = split_host(parts[0], 0, path, number)
        secrets[host] = parts[1].strip().encode()
    return secrets


def split_host(text: str, default_port: int, path: str,
                number: int = 0) -> tuple[str, int, bytes | None]:
    """``host``, ``host:port``, ``host:port:secret`` or ``[v6]:port[:secret]``."""
    secret: bytes | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise RadiusConfError(f"{path}:{number}: unterminated '[' in {text!r}")
        host, rest = text[1:end], text[end + 1:]
        rest = rest[1:] if rest.startswith(":") else rest
    else:
        host, _, rest = text.partition(":")
    port_text, _, secret_text = rest.partition(":")
    if secret_text:
        secret = secret_text.encode()
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise RadiusConfError(f"{path}:{number}: bad port {port_text!r} in {text!r}")
        port = int(port_text)
    if not host:
        raise RadiusConfError(f"{path}:{number}: empty server name in {text!r}")
    return host, port, secret


def _servers(value: str, default_port: int, secrets: dict[str, bytes],
             path: str) -> tuple[RadiusServer, ...]:
    out = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        host, port, secret = split_host(item, default_port, path)
        secret = secret if secret is not None else secrets.get(host)
        if secret is None:
            raise RadiusConfError(f"{path}: no secret for RADIUS server '{host}' (add it to "
                                  "the servers file)")
        out.append(RadiusServer(host, port, secret))
    return tuple(out)


def _number(values: dict[str, str], key: str, default: int, path: str) -> int:
    text = values.get(key)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise RadiusConfError(f"{path}: '{key}' must be a positive number, not {text!r}")
    return int(text)


def parse_radius_conf(text: str, path: str, servers_text: str | None = None,
                      servers_path: str = "servers") -> RadiusConf:
    """The settings from the file's text (and the servers file's, when it names one)."""
    values = parse_keyvalues(text, path)
    secrets = parse_servers_file(servers_text, servers_path) if servers_text else {}
    auth = _servers(values.get("authserver", ""), AUTH_PORT, secrets, path)
    acct = _servers(values.get("acctserver", ""), ACCT_PORT, secrets, path)
    if not auth and not acct:
        raise RadiusConfError(f"{path}: neither 'authserver' nor 'acctserver' is set")
    bindaddr = values.get("bindaddr", "")
    return RadiusConf(
        auth_servers=auth, acct_servers=acct,
        timeout=_number(values, "radius_timeout", DEFAULT_TIMEOUT, path),
        retries=_number(values, "radius_retries", DEFAULT_RETRIES, path),
        nas_identifier=values.get("nas-identifier", values.get("nas_identifier", "")),
        nas_ip="" if bindaddr in ("", "*") else bindaddr,
        default_realm=values.get("default_realm", ""))


def load_radius_conf(path: str) -> RadiusConf:
    """Read the radcli file and the ``servers`` file it names (relative to its folder)."""
    text = _read(path)
    servers_path = parse_keyvalues(text, path).get("servers")
    servers_text = None
    if servers_path:
        if not os.path.isabs(servers_path):
            servers_path = os.path.join(os.path.dirname(path), servers_path)
        servers_text = _read(servers_path)
    conf = parse_radius_conf(text, path, servers_text, servers_path or "servers")
    log.info("RADIUS configuration %s: auth %s, acct %s, timeout %.0f s x %d", path,
             ",".join(f"{s.host}:{s.port}" for s in conf.auth_servers) or "-",
             ",".join(f"{s.host}:{s.port}" for s in conf.acct_servers) or "-",
             conf.timeout, conf.retries)
    return conf


DEFAULT_RADCLI = "/etc/radcli/radiusclient.conf"


def check_radius_files(cfg: Any) -> None:
    """Read every radcli file the config names, at start (and for ``-t``), so that a
    broken one is a one-line error instead of a sec-mod that dies at each restart."""
    methods = [*getattr(cfg, "auth", []), *getattr(cfg, "enable_auth", [])]
    if getattr(cfg, "acct", None) is not None:
        methods.append(cfg.acct)
    for method in methods:
        if method.name == "radius":
            load_radius_conf(method.params.get("config") or DEFAULT_RADCLI)
