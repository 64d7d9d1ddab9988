"""Per-user and per-group files (config-per-user, config-per-group, defaults)."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import Any

from .lexer import _entries
from .model import Config, _Builder, _decode, _expand_routes, _read_text
from .options import MAX_USER_FILE_BYTES, OPTIONS, ConfigError, IPNetwork, _BadValue
from .values import _show

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# Per-user / per-group files (§10.7)
# --------------------------------------------------------------------------------------


@dataclass
class UserConfig:
    """Settings from a per-user or per-group file; None (or an absent list) = not set."""

    dns: list[str] | None = None
    nbns: list[str] | None = None
    ipv4_network: ipaddress.IPv4Network | None = None
    ipv4_netmask: str | None = None
    ipv6_network: ipaddress.IPv6Network | None = None
    ipv6_subnet_prefix: int | None = None
    explicit_ipv4: ipaddress.IPv4Address | None = None
    explicit_ipv6: ipaddress.IPv6Address | None = None
    route: list[IPNetwork] | None = None
    no_route: list[IPNetwork] | None = None
    iroute: list[IPNetwork] | None = None
    split_dns: list[str] | None = None
    tunnel_all_dns: bool | None = None
    rx_data_per_sec: int | None = None
    tx_data_per_sec: int | None = None
    net_priority: str | None = None
    deny_roaming: bool | None = None
    no_udp: bool | None = None
    keepalive: int | None = None
    dpd: int | None = None
    mobile_dpd: int | None = None
    max_same_clients: int | None = None
    restrict_user_to_routes: bool | None = None
    restrict_user_to_ports: str | None = None
    stats_report_time: int | None = None
    mtu: int | None = None
    idle_timeout: int | None = None
    mobile_idle_timeout: int | None = None
    session_timeout: int | None = None
    hostname: str | None = None
    user_profile: str | None = None
    client_bypass_protocol: bool | None = None


def parse_user_config(text: str, path: str, *, ipv6: bool = False) -> UserConfig:
    """Parse a per-user/per-group file; any key not allowed there is an error.

    ``ipv6`` says whether 'route = default' should also cover ::/0.
    """
    builder = _Builder(path)
    for entry in _entries(text, path):
        if entry.section:
            raise ConfigError("sections are not allowed in per-user/per-group files",
                              path, entry.line)
        spec = OPTIONS.get(entry.key)
        if spec is None or spec.scope != "u":
            raise ConfigError(f"option '{entry.key}' is not allowed in per-user/per-group "
                              "files", path, entry.line)
        target = OPTIONS[spec.alias_of] if spec.alias_of else spec
        try:
            builder._store(spec, target, entry.value, entry)
        except _BadValue as exc:
            raise builder.invalid(spec, entry.value, exc, entry) from None
        builder.refuse_unimplemented(spec, target, entry.value, entry)
    return _user_config_from(builder, ipv6)


def _user_config_from(b: _Builder, ipv6: bool) -> UserConfig:
    user = UserConfig()
    for attr, value in b.values.items():
        setattr(user, attr, value)
    if b.mask4 is not None and b.net4 is None:
        raise b.error("'ipv4-netmask' is set but 'ipv4-network' is not", b.mask4[1])
    if b.net4 is not None:
        addr, prefix, line = b.net4
        if b.mask4 is not None and (prefix is None or b.mask4[1] > line):
            prefix = b.mask4[0]
        if prefix is None or not 1 <= prefix <= 30:
            raise b.error("'ipv4-network' needs a prefix length from 1 to 30 (a.b.c.d/len "
                          "or ipv4-netmask)", line)
        user.ipv4_network = ipaddress.IPv4Network((addr, prefix), strict=False)
        user.ipv4_netmask = str(user.ipv4_network.netmask)
    if b.net6 is not None:
        addr6, prefix6, line6 = b.net6
        if prefix6 is None:
            raise b.error("'ipv6-network' needs a prefix length (addr/len)", line6)
        user.ipv6_network = ipaddress.IPv6Network((addr6, prefix6), strict=False)
    ipv6 = ipv6 or user.ipv6_network is not None
    for name, items in b.routes.items():
        setattr(user, name.replace("-", "_"), _expand_routes(items, ipv6))
    return user


def _check_name(name: str, kind: str, directory: str) -> None:
    if not name or "/" in name or name.startswith(".") or "\x00" in name:
        raise ConfigError(f"refusing to load settings for illegal {kind} name "
                          f"'{_show(name)}'", directory)


def _open_in_dir(directory: str, name: str) -> int | None:
    """Open directory/name without following symlinks; None if there is no such file."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        log.warning("cannot open settings directory %s", directory)
        return None
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            raise ConfigError(f"cannot open '{_show(name)}': {exc.strerror}",
                              directory) from None
        return None
    finally:
        os.close(dir_fd)


def _read_fd(fd: int, path: str) -> str:
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_USER_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path) from None
    if len(data) > MAX_USER_FILE_BYTES:
        raise ConfigError(f"file is larger than {MAX_USER_FILE_BYTES} bytes", path)
    return _decode(data, path)


def _load_sup_file(directory: str, name: str, fallback: str | None, kind: str,
                   ipv6: bool) -> UserConfig:
    _check_name(name, kind, directory)
    fd = _open_in_dir(directory, name)
    if fd is not None:
        path = os.path.join(directory, name)
        return parse_user_config(_read_fd(fd, path), path, ipv6=ipv6)
    if fallback is not None:
        if os.path.exists(fallback):
            return parse_user_config(_read_text(fallback, MAX_USER_FILE_BYTES), fallback,
                                     ipv6=ipv6)
        log.warning("default %s settings file %s does not exist", kind, fallback)
    return UserConfig()


def merge_user_configs(group: UserConfig, user: UserConfig) -> UserConfig:
    """Combine group then user settings the way ocserv does.

    Single values from the user file win.  Lists are concatenated (group entries first),
    because ocserv appends both files' lines to the same lists.
    """
    merged = UserConfig()
    for f in dataclasses.fields(UserConfig):
        g, u = getattr(group, f.name), getattr(user, f.name)
        if isinstance(g, list) and isinstance(u, list):
            value: Any = g + [x for x in u if x not in g]
        else:
            value = u if u is not None else g
        setattr(merged, f.name, value)
    return merged


def load_user_config(cfg: Config, username: str, groupname: str | None) -> UserConfig:
    """Settings for one login: group file (or default-group-config), then user file.

    As in ocserv, files are looked up only when config-per-user/config-per-group is set,
    the default-*-config file is used when the named file does not exist, and names that
    could escape the directory are refused.  Missing files simply mean no settings.
    """
    ipv6 = cfg.ipv6_network is not None
    group = UserConfig()
    if groupname and cfg.config_per_group is not None:
        group = _load_sup_file(cfg.config_per_group, groupname, cfg.default_group_config,
                               "group", ipv6)
    user = UserConfig()
    if cfg.config_per_user is not None:
        user = _load_sup_file(cfg.config_per_user, username, cfg.default_user_config,
                              "user", ipv6)
    return merge_user_configs(group, user)
