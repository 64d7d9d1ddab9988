"""VPN users as the admin UI manages them: the ocpasswd file plus per-user settings files.

Both formats belong to other modules, and this one only goes through them:

* the password file is edited with :mod:`appliance.vpn.passwd`'s line-preserving helpers
  (``set_user_text``, ``lock_user_text`` ...) and written with its crash-safe writer, so a
  hand-edited file survives the UI exactly as it survives ocpasswd;
* per-user settings are ocserv's ``config-per-user`` files, built with
  :class:`~appliance.vpn.config.ConfigDocument` and checked with
  :func:`~appliance.vpn.config.parse_user_config` before anything is written.

The password file is the one the server really uses (``auth = plain[passwd=...]`` in
ocserv.conf); the settings folder is ``config-per-user`` from ocserv.conf, and when that is
unset the UI adds ``config-per-user = STATE/config-per-user/`` the first time it needs it.
All edits are read-modify-write under one lock (waitress serves requests in threads).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flask_babel import gettext as _

from ..atomicfile import write_atomic
from ..firstboot.forms import FormError, parse_username
from ..state import StateLayout
from ..vpn.config import (
    OPTIONS,
    Config,
    ConfigDocument,
    ConfigError,
    UserConfig,
    load_config,
    parse_user_config,
    render_value,
    write_config_atomic,
)
from ..vpn.passwd import (
    PasswdEntry,
    PasswdError,
    delete_user_text,
    hash_password,
    lock_user_text,
    parse_passwd,
    set_user_text,
    unlock_user_text,
    write_text_atomic,
)

log = logging.getLogger(__name__)

SETTINGS_DIR_NAME = "config-per-user"
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{1,63}\Z")
MAX_GROUPS = 16
MAX_ITEMS = 32
MAX_RATE = 10**12  # bytes per second; anything above is a typo


class UserStoreError(ValueError):
    """A user operation that cannot be done; the message is shown to the admin."""


@dataclass(frozen=True)
class VpnUser:
    username: str
    groups: list[str]
    locked: bool
    has_settings: bool


@dataclass
class UserSettings:
    """What the per-user page edits; None / [] means 'as the global configuration'."""

    routes: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    explicit_ipv4: str | None = None
    rx_per_sec: int | None = None  # upload limit (from the client), bytes/s
    tx_per_sec: int | None = None  # download limit (to the client), bytes/s

    def is_empty(self) -> bool:
        return not (self.routes or self.dns or self.explicit_ipv4 or self.rx_per_sec
                    or self.tx_per_sec)


def parse_groups(text: str) -> list[str]:
    """'staff, admins' -> ['staff', 'admins']; ocserv ignores one-letter groups."""
    groups: list[str] = []
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        if not _GROUP.match(item):
            raise UserStoreError(_("Group '%(group)s' is not valid: use 2-64 letters, "
                                   "digits and . _ @ -.", group=item[:40]))
        if item not in groups:
            groups.append(item)
    if len(groups) > MAX_GROUPS:
        raise UserStoreError(_("At most %(num)d groups, please.", num=MAX_GROUPS))
    return groups


def check_username(text: str) -> str:
    try:
        return parse_username(text)
    except FormError as exc:
        raise UserStoreError(str(exc)) from None


class UserStore:
    """Reads and edits users for one state folder."""

    def __init__(self, layout: StateLayout, lock: threading.RLock | None = None) -> None:
        self.layout = layout
        self.lock = lock or threading.RLock()

    # ------------------------------------------------------------------ where things are
    def _config(self) -> Config | None:
        try:
            return load_config(str(self.layout.conf))
        except ConfigError as exc:
            log.warning("cannot read %s: %s", self.layout.conf, exc)
            return None

    def passwd_path(self) -> Path:
        """The file named by ``auth = plain[passwd=...]``, else the layout's default."""
        cfg = self._config()
        for method in cfg.auth if cfg else []:
            if method.name == "plain" and method.params.get("passwd"):
                return Path(method.params["passwd"])
        return self.layout.passwd

    def settings_dir(self) -> Path:
        cfg = self._config()
        configured = cfg.config_per_user if cfg else None
        return Path(configured) if configured else self.layout.root / SETTINGS_DIR_NAME

    # ------------------------------------------------------------------ reading
    def _read_passwd(self) -> str:
        path = self.passwd_path()
        try:
            return path.read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise UserStoreError(_("The user file %(path)s cannot be read: %(reason)s",
                                   path=path, reason=exc.strerror)) from None

    def entries(self) -> dict[str, PasswdEntry]:
        return parse_passwd(self._read_passwd())

    def list(self) -> list[VpnUser]:
        folder = self.settings_dir()
        return [VpnUser(e.username, list(e.groups), e.locked, (folder / e.username).is_file())
                for e in sorted(self.entries().values(), key=lambda e: e.username.lower())]

    def get(self, username: str) -> VpnUser | None:
        for user in self.list():
            if user.username == username:
                return user
        return None

    def _require(self, username: str) -> PasswdEntry:
        entry = self.entries().get(username)
        if entry is None:
            raise UserStoreError(_("There is no user '%(name)s'.", name=username[:64]))
        return entry

    # ------------------------------------------------------------------ editing
    def _write_passwd(self, text: str) -> None:
        path = self.passwd_path()
        try:
            write_text_atomic(path, text)
        except PasswdError as exc:
            raise UserStoreError(_("Could not save the user file: %(reason)s",
                                   reason=exc)) from None

    def add(self, username: str, password: str, groups: Sequence[str]) -> None:
        name = check_username(username)
        with self.lock:
            text = self._read_passwd()
            if name in parse_passwd(text):
                raise UserStoreError(_("The user '%(name)s' exists already.", name=name))
            self._write_passwd(set_user_text(text, name, ",".join(groups) or "*",
                                             hash_password(password)))
        log.info("VPN user %s added", name)

    def set_groups(self, username: str, groups: Sequence[str]) -> None:
        with self.lock:
            entry = self._require(username)
            text = self._read_passwd()
            self._write_passwd(set_user_text(text, username, ",".join(groups) or "*",
                                             entry.hash))
        log.info("VPN user %s: groups set to %s", username, ",".join(groups) or "(none)")

    def reset_password(self, username: str, password: str) -> None:
        """New password; a locked user stays locked (the '!' prefix is kept)."""
        with self.lock:
            entry = self._require(username)
            new_hash = hash_password(password)
            if entry.locked:
                new_hash = "!" + new_hash
            text = self._read_passwd()
            groups = ",".join(entry.groups) or "*"
            self._write_passwd(set_user_text(text, username, groups, new_hash))
        log.info("VPN user %s: password reset", username)

    def set_locked(self, username: str, locked: bool) -> None:
        with self.lock:
            self._require(username)
            text = self._read_passwd()
            edit = lock_user_text if locked else unlock_user_text
            self._write_passwd(edit(text, username))
        log.info("VPN user %s %s", username, "locked" if locked else "unlocked")

    def delete(self, username: str) -> None:
        with self.lock:
            self._require(username)
            self._write_passwd(delete_user_text(self._read_passwd(), username))
            settings = self.settings_dir() / username
            if settings.is_file():
                settings.unlink()
        log.info("VPN user %s deleted", username)

    # ------------------------------------------------------------------ per-user settings
    def read_settings(self, username: str) -> UserSettings:
        path = self.settings_dir() / check_username(username)
        try:
            doc = ConfigDocument.load(str(path))
        except ConfigError:
            return UserSettings()
        def first(key: str) -> str | None:
            values = doc.get(key)
            return values[-1] if values else None

        rx, tx = first("rx-data-per-sec"), first("tx-data-per-sec")
        return UserSettings(routes=doc.get("route"), dns=doc.get("dns"),
                            explicit_ipv4=first("explicit-ipv4"),
                            rx_per_sec=int(rx) if rx and rx.isdigit() else None,
                            tx_per_sec=int(tx) if tx and tx.isdigit() else None)

    def render_settings(self, username: str, settings: UserSettings) -> str:
        """The per-user file text, every value checked by the config module."""
        path = str(self.settings_dir() / username)
        try:
            existing = ConfigDocument.load(path)
        except ConfigError:
            existing = ConfigDocument(f"# Settings for VPN user {username}, written by the "
                                      "OCGate admin UI (ocserv config-per-user format).\n",
                                      path)
        wanted: dict[str, list[str]] = {
            "route": settings.routes,
            "dns": settings.dns,
            "explicit-ipv4": [settings.explicit_ipv4] if settings.explicit_ipv4 else [],
            "rx-data-per-sec": [str(settings.rx_per_sec)] if settings.rx_per_sec else [],
            "tx-data-per-sec": [str(settings.tx_per_sec)] if settings.tx_per_sec else [],
        }
        for key, values in wanted.items():
            rendered = [render_value(OPTIONS[key], v) for v in values]
            if rendered:
                existing.set(key, rendered)
            else:
                existing.remove(key)
        text = existing.text()
        if not text.endswith("\n"):
            text += "\n"
        parse_user_config(text, path)
        return text

    def write_settings(self, username: str, settings: UserSettings) -> bool:
        """Save (or remove, when empty) the user's file; True if ocserv.conf changed too."""
        name = check_username(username)
        with self.lock:
            self._require(name)
            path = self.settings_dir() / name
            text = self.render_settings(name, settings)
            if parse_user_config(text, str(path)) == UserConfig():
                path.unlink(missing_ok=True)  # nothing left to override
                return False
            conf_changed = self._ensure_settings_dir()
            write_atomic(self.settings_dir() / name, text.encode(), 0o600)
        log.info("VPN user %s: settings saved", name)
        return conf_changed

    def _ensure_settings_dir(self) -> bool:
        """Make sure ocserv.conf names a settings folder that exists; True if we set it."""
        cfg = self._config()
        if cfg is None:
            raise UserStoreError(_("ocserv.conf cannot be read; fix it on the Settings page "
                                   "first."))
        changed = False
        if not cfg.config_per_user:
            folder = self.layout.root / SETTINGS_DIR_NAME
            doc = ConfigDocument.load(str(self.layout.conf))
            doc.set("config-per-user", str(folder) + "/")
            text = doc.text()
            write_config_atomic(str(self.layout.conf), text if text.endswith("\n")
                                else text + "\n")
            changed = True
        folder = self.settings_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return changed


def parse_settings_form(routes: str, dns: str, explicit_ipv4: str, rx: str,
                        tx: str) -> UserSettings:
    """Form text -> settings; raises UserStoreError with a sentence for the admin."""
    def items(text: str) -> list[str]:
        found = [item for item in re.split(r"[\s,;]+", text) if item]
        if len(found) > MAX_ITEMS:
            raise UserStoreError(_("At most %(num)d entries per list, please.",
                                   num=MAX_ITEMS))
        return found

    route_list = items(routes)
    for route in route_list:
        try:
            render_value(OPTIONS["route"], route)
        except ConfigError:
            raise UserStoreError(_("Route '%(item)s' is not a network like 192.168.1.0/24 "
                                   "(or 'default').", item=route[:40])) from None
    dns_list = items(dns)
    for server in dns_list:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise UserStoreError(_("DNS server '%(item)s' is not an IP address.",
                                   item=server[:40])) from None
    address = explicit_ipv4.strip() or None
    if address is not None:
        try:
            parsed = ipaddress.IPv4Address(address)
        except ValueError:
            raise UserStoreError(_("Static IP '%(item)s' is not an IPv4 address.",
                                   item=address[:40])) from None
        address = str(parsed)
    return UserSettings(route_list, dns_list, address, _rate(rx, upload=True),
                        _rate(tx, upload=False))


def _rate(text: str, *, upload: bool) -> int | None:
    value = text.strip()
    if not value:
        return None
    if not value.isdigit() or int(value) > MAX_RATE:
        raise UserStoreError(_("The upload limit must be a whole number of bytes per second.")
                             if upload else _("The download limit must be a whole number of "
                                              "bytes per second."))
    return int(value) or None
