"""Checks for the diagnostics page: is the VPN reachable and healthy, and if not, why.

Each check yields :class:`Finding` rows (ok / warn / error plus a sentence) so the page is
a readable checklist: listening ports against the configuration, whether recent sessions
reached DTLS (UDP blocked somewhere when they did not), VPN subnet conflicts with the
device's own networks, certificate expiry, and configuration warnings.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil
from cryptography import x509
from flask_babel import gettext as _
from flask_babel import ngettext

from ..vpn.config import Config
from ..vpn.control import UserInfo
from ..web.l10n import format_day

log = logging.getLogger(__name__)

EXPIRY_WARN_DAYS = 30
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn", "error"
    title: str
    detail: str


@dataclass(frozen=True)
class Listener:
    proto: str
    address: str
    port: int
    process: str


def listeners() -> list[Listener]:
    """TCP sockets in LISTEN and bound UDP sockets of this network namespace."""
    out: list[Listener] = []
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError) as exc:
        log.warning("cannot list sockets: %s", exc)
        return out
    names: dict[int, str] = {}
    for c in conns:
        if not c.laddr:
            continue
        tcp = c.type == 1  # SOCK_STREAM
        if tcp and c.status != psutil.CONN_LISTEN:
            continue
        if not tcp and c.raddr:
            continue  # connected UDP sockets are per-client, not listeners
        name = ""
        if c.pid:
            if c.pid not in names:
                try:
                    names[c.pid] = psutil.Process(c.pid).name()
                except psutil.Error:
                    names[c.pid] = str(c.pid)
            name = names[c.pid]
        item = Listener("tcp" if tcp else "udp", str(c.laddr.ip), int(c.laddr.port), name)
        if item not in out:
            out.append(item)
    return sorted(out, key=lambda x: (x.port, x.proto, x.address))


def check_ports(cfg: Config | None, found: Iterable[Listener]) -> list[Finding]:
    if cfg is None:
        return [Finding("error", _("Configuration"), _("ocserv.conf cannot be read."))]
    found = list(found)
    results = []
    wanted = [("tcp", cfg.tcp_port, _("TLS logins and the TCP tunnel"))]
    if cfg.udp_port:
        wanted.append(("udp", cfg.udp_port, _("DTLS (the faster UDP tunnel)")))
    for proto, port, what in wanted:
        title = _("%(proto)s port %(port)d", proto=proto.upper(), port=port)
        if any(x.proto == proto and x.port == port for x in found):
            results.append(Finding("ok", title, _("Listening (%(what)s).", what=what)))
        else:
            results.append(Finding("error", title, _("Nothing listens: %(what)s cannot work. "
                                                     "Is the VPN server running?",
                                                     what=what)))
    return results


def check_dtls(users: list[UserInfo], udp_enabled: bool) -> list[Finding]:
    if not users:
        return [Finding("ok", "DTLS", _("No sessions right now; nothing to judge."))]
    tls_only = [u for u in users if not u.dtls_cipher]
    if not udp_enabled:
        return [Finding("warn", "DTLS", _("udp-port is not set: every session uses the "
                                          "slower TCP tunnel."))]
    if not tls_only:
        return [Finding("ok", "DTLS", ngettext("The %(num)d session uses DTLS.",
                                               "All %(num)d sessions use DTLS.", len(users)))]
    names = ", ".join(sorted({u.username for u in tls_only}))[:200]
    level = "warn" if len(tls_only) == len(users) else "ok"
    return [Finding(level, "DTLS", ngettext(
        "%(tls)d of %(num)d session runs over TCP only (%(names)s); UDP may be blocked on "
        "their network or a router in between, or the client disabled DTLS.",
        "%(tls)d of %(num)d sessions run over TCP only (%(names)s); UDP may be blocked on "
        "their network or a router in between, or the client disabled DTLS.",
        len(users), tls=len(tls_only), names=names))]


def local_networks() -> list[IPNetwork]:
    nets: list[IPNetwork] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family.name not in ("AF_INET", "AF_INET6") or not a.netmask:
                continue
            try:
                net = ipaddress.ip_network(f"{a.address.split('%')[0]}/{a.netmask}",
                                           strict=False)
            except ValueError:
                continue
            if not net.is_loopback and not net.is_link_local and net not in nets:
                nets.append(net)
    return nets


def check_subnets(cfg: Config | None, networks: list[IPNetwork],
                  tun_prefix: str = "") -> list[Finding]:
    if cfg is None:
        return []
    results = []
    for pool in (cfg.ipv4_network, cfg.ipv6_network):
        if pool is None:
            continue
        clashes = [n for n in networks if n.version == pool.version and n.overlaps(pool)
                   and not pool.supernet_of(n)]  # type: ignore[arg-type]
        title = _("VPN subnet %(pool)s", pool=pool)
        if clashes:
            results.append(Finding("error", title, _(
                "Overlaps %(list)s: clients could not reach those networks.",
                list=", ".join(map(str, clashes)))))
        else:
            results.append(Finding("ok", title, _("No overlap with the device's networks.")))
    return results


def check_certificates(paths: list[tuple[str, Path]],
                       now: datetime.datetime | None = None) -> list[Finding]:
    now = now or datetime.datetime.now(datetime.UTC)
    results = []
    for label, path in paths:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            results.append(Finding("error", label, _("%(path)s cannot be read: %(reason)s",
                                                     path=path, reason=exc)))
            continue
        left = cert.not_valid_after_utc - now
        days = left.days
        when = format_day(cert.not_valid_after_utc)
        if left.total_seconds() <= 0:
            results.append(Finding("error", label, _("Expired on %(day)s.", day=when)))
        elif days < EXPIRY_WARN_DAYS:
            results.append(Finding("warn", label, ngettext(
                "Expires in %(num)d day (%(day)s).", "Expires in %(num)d days (%(day)s).",
                days, day=when)))
        else:
            results.append(Finding("ok", label, ngettext(
                "Valid until %(day)s (%(num)d day).", "Valid until %(day)s (%(num)d days).",
                days, day=when)))
    return results


def check_config(load: Callable[[], Config]) -> tuple[Config | None, list[Finding]]:
    try:
        cfg = load()
    except (ValueError, OSError) as exc:
        return None, [Finding("error", _("Configuration"), str(exc))]
    if not cfg.warnings:
        return cfg, [Finding("ok", _("Configuration"), _("Valid, no warnings."))]
    return cfg, [Finding("warn", _("Configuration"), w) for w in cfg.warnings]
