"""Validation of what users type into the wizard's forms (pure functions).

Each parser returns a clean value or raises :class:`FormError` with a sentence meant for
the person at the keyboard.  Names end up in certificates and ocserv.conf, user names in
ocpasswd; all three formats have characters that would corrupt them, so the accepted
alphabet is deliberately narrow.
"""

from __future__ import annotations

import ipaddress
import re

from flask_babel import gettext as _

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
MAX_NAMES = 16
MAX_ROUTES = 32
MAX_DNS = 4


class FormError(ValueError):
    """A form value the wizard cannot use; the message is shown as it is."""


def _show(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 60 else text[:57] + "..."


def parse_username(text: str) -> str:
    """ocpasswd-safe user name: letters, digits, . _ @ -; no ':' or spaces."""
    name = text.strip()
    if not name:
        raise FormError(_("Enter a user name."))
    if not _USERNAME.match(name):
        raise FormError(_("The user name may use letters, digits and . _ @ - (up to 64 "
                          "characters, starting with a letter or digit)."))
    return name


def parse_label(text: str) -> str:
    """A host name label such as ``ocgate`` or ``vpn-box``."""
    label = text.strip().lower().removesuffix(".local")
    if not _LABEL.match(label):
        raise FormError(_("The device name may use letters, digits and '-' (not at the "
                          "start or end), up to 63 characters."))
    return label


def parse_dns_name(text: str) -> str:
    """A DNS name (IDNs converted to their ASCII form), lower case, no trailing dot."""
    name = text.strip().rstrip(".").lower()
    if not name:
        raise FormError(_("Enter a name."))
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise FormError(_("'%(name)s' is not a valid DNS name.", name=_show(text))) from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise FormError(_("'%(name)s' is not a valid DNS name.", name=_show(text)))
    if all(label.isdigit() for label in labels):
        raise FormError(_("'%(name)s' looks like a broken IP address.", name=_show(text)))
    return ascii_name


def parse_host(text: str) -> str:
    """Where users connect: an IP address or a DNS name."""
    value = text.strip().removeprefix("https://").rstrip("/")
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    return parse_dns_name(value)


def _items(text: str) -> list[str]:
    return [item for item in re.split(r"[\s,;]+", text) if item]


def parse_name_list(text: str) -> list[str]:
    names: list[str] = []
    for item in _items(text):
        name = parse_dns_name(item)
        if name not in names:
            names.append(name)
    if len(names) > MAX_NAMES:
        raise FormError(_("At most %(num)d names, please.", num=MAX_NAMES))
    return names


def parse_dns_servers(text: str) -> list[str]:
    servers: list[str] = []
    for item in _items(text):
        try:
            addr = str(ipaddress.ip_address(item))
        except ValueError:
            raise FormError(_("DNS server '%(item)s' is not an IP address.",
                              item=_show(item))) from None
        if addr not in servers:
            servers.append(addr)
    if len(servers) > MAX_DNS:
        raise FormError(_("At most %(num)d DNS servers, please.", num=MAX_DNS))
    return servers


def parse_routes(text: str) -> list[IPNetwork]:
    routes: list[IPNetwork] = []
    for item in _items(text):
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise FormError(_("Route '%(item)s' is not a network like 192.168.1.0/24.",
                              item=_show(item))) from None
        if net.prefixlen == 0:
            raise FormError(_("For all traffic choose 'Everything (full tunnel)' instead of "
                              "a 0/0 route."))
        if net not in routes:
            routes.append(net)
    if len(routes) > MAX_ROUTES:
        raise FormError(_("At most %(num)d routes, please.", num=MAX_ROUTES))
    return routes
