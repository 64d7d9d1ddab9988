"""Settings pages generated from the config module's option table, and the apply flow.

Each page is a group of ocserv.conf options; the field type, help text and default come
from :data:`appliance.vpn.config.OPTIONS`, so the UI can never drift from what the server
accepts.  A submitted page is turned into edits of a
:class:`~appliance.vpn.config.ConfigDocument` (comments, order and unknown options of the
file survive), every value is checked with ``render_value`` (clear per-field messages),
then the whole new file with ``parse_config`` (cross-option rules).  Nothing is written
until the admin has seen the diff: a :class:`Draft` keeps the proposed text together with
a hash of the file it was based on, and applying refuses if the file changed meanwhile.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..vpn.config import (
    OPTIONS,
    ConfigDocument,
    ConfigError,
    OptionSpec,
    parse_config,
    render_value,
)
from ..web.l10n import format_bytes

MAX_RAW_BYTES = 256 * 1024
MAX_DRAFTS = 16


@dataclass(frozen=True)
class Group:
    slug: str
    title: str
    intro: str
    options: tuple[str, ...]


GROUPS: tuple[Group, ...] = (
    Group("network", _l("Network"),
          _l("Where the VPN listens and which addresses clients get."),
          ("tcp-port", "udp-port", "listen-host", "ipv4-network", "ipv4-netmask",
           "ipv6-network", "ipv6-subnet-prefix", "max-clients", "max-same-clients",
           "predictable-ips", "mtu")),
    Group("dns-routes", _l("DNS & routes"),
          _l("What clients send through the tunnel and which DNS servers they use. No "
             "route at all (or 'default') means a full tunnel."),
          ("route", "no-route", "dns", "split-dns", "default-domain", "tunnel-all-dns")),
    Group("security", _l("Security"),
          _l("Login protection, TLS and what users see around the login."),
          ("max-ban-score", "ban-time", "ban-reset-time", "ban-points-wrong-password",
           "ban-points-connection", "auth-timeout", "tls-priorities",
           "restrict-user-to-routes", "cisco-client-compat", "dtls-legacy", "dtls-psk",
           "banner", "pre-login-banner")),
    Group("timeouts", _l("Timeouts"),
          _l("Keepalives, dead-peer detection and how long sessions and cookies live."),
          ("keepalive", "dpd", "mobile-dpd", "idle-timeout", "mobile-idle-timeout",
           "session-timeout", "cookie-timeout", "persistent-cookies",
           "switch-to-tcp-timeout", "rekey-time", "rekey-method")),
    Group("compression", _l("Compression"),
          _l("LZS/LZ4 compression of tunnel packets (off by default: compressing encrypted "
             "traffic can leak information and rarely helps today)."),
          ("compression", "no-compress-limit", "compression-algo-priority")),
    Group("performance", _l("Performance"),
          _l("Fine-tuning for throughput and load."),
          ("try-mtu-discovery", "output-buffer", "rate-limit-ms", "rx-data-per-sec",
           "tx-data-per-sec", "net-priority")),
)
GROUPS_BY_SLUG = {g.slug: g for g in GROUPS}


@dataclass(frozen=True)
class Field:
    """One form field as the template renders it."""

    spec: OptionSpec
    kind: str  # "bool", "list", "choice", "number", "text"
    value: str  # current text in the form ("" = not set, i.e. the default)
    default: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def help(self) -> str:
        """The option's help from the config module, in the page's language.

        The English text lives in :data:`appliance.vpn.config.OPTIONS` (the server's own
        table); :mod:`appliance.web.i18nextract` puts every shown one into the catalog.
        """
        return _(self.spec.help)


def _default_text(spec: OptionSpec) -> str:
    default = spec.default
    if default is None or default == ():
        return ""
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def _kind(spec: OptionSpec) -> str:
    if spec.type == "bool":
        return "bool"
    if spec.multi:
        return "list"
    if spec.type == "choice":
        return "choice"
    if spec.type == "int":
        return "number"
    return "text"


def _bool_form_value(values: list[str]) -> str:
    if not values:
        return ""
    return "on" if values[-1].lower() in ("true", "yes", "1") else "off"


def fields_for(group: Group, doc: ConfigDocument) -> list[Field]:
    out = []
    for name in group.options:
        spec = OPTIONS[name]
        values = doc.get(name)
        kind = _kind(spec)
        if kind == "bool":
            value = _bool_form_value(values)
        elif kind == "list":
            value = "\n".join(values)
        else:
            value = values[-1] if values else ""
        out.append(Field(spec, kind, value, _default_text(spec)))
    return out


def form_values(group: Group, form: dict[str, str]) -> dict[str, str]:
    """The submitted text per option (missing fields count as empty)."""
    return {name: str(form.get(name, ""))[:MAX_RAW_BYTES] for name in group.options}


def apply_form(group: Group, doc: ConfigDocument,
               submitted: dict[str, str]) -> dict[str, str]:
    """Edit ``doc`` in place from the form; returns per-field error messages."""
    errors: dict[str, str] = {}
    for name in group.options:
        spec = OPTIONS[name]
        raw = submitted.get(name, "")
        try:
            values = _values_from_form(spec, raw)
            rendered = [render_value(spec, v) for v in values]
        except ConfigError as exc:
            errors[name] = _field_message(spec, exc)
            continue
        if rendered:
            try:
                doc.set(name, rendered)
            except ConfigError as exc:
                errors[name] = _field_message(spec, exc)
        else:
            doc.remove(name)
    return errors


def _values_from_form(spec: OptionSpec, raw: str) -> list[str]:
    kind = _kind(spec)
    if kind == "bool":
        choice = raw.strip()
        if choice == "":
            return []
        if choice not in ("on", "off"):
            raise ConfigError(_("choose on, off or the default"))
        return ["true" if choice == "on" else "false"]
    if kind == "list":
        return [line.strip() for line in raw.splitlines() if line.strip()]
    text = raw.strip()
    if "\n" in text or "\r" in text:
        raise ConfigError(_("a single line is expected"))
    return [text] if text else []


def _field_message(spec: OptionSpec, exc: ConfigError) -> str:
    message = exc.message if isinstance(exc, ConfigError) else str(exc)
    message = re.sub(r"^invalid value for '[^']+': ", "", message)
    return f"{spec.name}: {message}"


def validate_text(text: str, path: str) -> list[str]:
    """Whole-file errors (empty list: the server would accept this file)."""
    if len(text.encode("utf-8", "replace")) > MAX_RAW_BYTES:
        return [_("The configuration is larger than %(size)s.",
                  size=format_bytes(MAX_RAW_BYTES))]
    try:
        parse_config(text, path)
    except ConfigError as exc:
        return [str(exc)]
    return []


def warnings_for(text: str, path: str) -> list[str]:
    try:
        return parse_config(text, path).warnings
    except ConfigError:
        return []


def normalise(text: str) -> str:
    text = text.replace("\r\n", "\n")
    return text if text.endswith("\n") or not text else text + "\n"


def unified_diff(old: str, new: str, name: str = "ocserv.conf") -> list[str]:
    return list(difflib.unified_diff(old.splitlines(), new.splitlines(),
                                     f"{name} (now)", f"{name} (new)", lineterm="", n=2))


def restart_needed(old: str, new: str, path: str) -> list[str]:
    """Options whose change only takes effect when the VPN server restarts."""
    try:
        before, after = ConfigDocument(old, path), ConfigDocument(new, path)
    except ConfigError:
        return []
    return [name for name, spec in OPTIONS.items()
            if not spec.reloadable and before.get(name) != after.get(name)]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class Draft:
    """A validated proposal waiting for the admin's "Apply"."""

    id: str
    base_hash: str
    text: str
    origin: str  # group slug or "raw", to go back to the right page
    diff: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class DraftStore:
    """Per admin session, the last proposal only (a second one replaces the first)."""

    def __init__(self) -> None:
        self._drafts: OrderedDict[str, Draft] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, owner: str, draft: Draft) -> None:
        with self._lock:
            self._drafts[owner] = draft
            self._drafts.move_to_end(owner)
            while len(self._drafts) > MAX_DRAFTS:
                self._drafts.popitem(last=False)

    def get(self, owner: str, draft_id: str) -> Draft | None:
        with self._lock:
            draft = self._drafts.get(owner)
            return draft if draft is not None and draft.id == draft_id else None

    def current(self, owner: str) -> Draft | None:
        with self._lock:
            return self._drafts.get(owner)

    def drop(self, owner: str) -> None:
        with self._lock:
            self._drafts.pop(owner, None)
