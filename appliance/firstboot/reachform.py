"""The reachability form (wizard step and admin settings): fields -> settings + secrets.

Secrets the owner leaves empty keep their saved value, so the form never has to show a
password or token again; a method switched off takes its secrets with it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask_babel import gettext as _

from ..reach.settings import (
    DDNS_KINDS,
    LETS_ENCRYPT,
    LETS_ENCRYPT_STAGING,
    SECRET_KEYS,
    ReachSettings,
)
from .forms import FormError, parse_dns_name

FIELDS = ("enabled", "ddns", "name", "dns_server", "dns_zone", "tsig_name", "ddns_url",
          "acme", "acme_ca", "acme_directory", "email")
SECRET_FIELDS = ("tsig_secret", "username", "password", "token")
DEFAULT_DYNDNS2 = "https://dynupdate.no-ip.com"
DEFAULT_DUCKDNS = "https://www.duckdns.org"


@dataclass(frozen=True)
class ReachForm:
    settings: ReachSettings
    secrets: dict[str, str]
    errors: list[str]
    values: dict[str, str]  # what to show again in the form (never a secret)


def form_values(settings: ReachSettings) -> dict[str, str]:
    ca = ("letsencrypt" if settings.acme_directory == LETS_ENCRYPT else
          "staging" if settings.acme_directory == LETS_ENCRYPT_STAGING else "custom")
    return {"enabled": "on" if settings.enabled else "", "ddns": settings.ddns,
            "name": settings.name, "dns_server": settings.dns_server,
            "dns_zone": settings.dns_zone, "tsig_name": settings.tsig_name,
            "ddns_url": settings.ddns_url, "acme": "on" if settings.acme else "",
            "acme_ca": ca, "acme_directory": "" if ca != "custom" else settings.acme_directory,
            "email": settings.email}


def _url(text: str) -> str:
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:  # "Invalid IPv6 URL" and friends: a typing error, not a crash
        host = None
    if host is None or parts.scheme not in ("https", "http"):
        raise FormError(_("'%(url)s' is not an http(s) address.", url=text[:80]))
    return text.rstrip("/")


def parse_reach_form(form: Mapping[str, str], saved: Mapping[str, str]) -> ReachForm:
    values = {k: str(form.get(k, ""))[:500].strip() for k in FIELDS}
    errors: list[str] = []
    enabled = values["enabled"] == "on"
    ddns = values["ddns"] if values["ddns"] in DDNS_KINDS else ""
    name = ""
    if ddns:
        try:
            name = (values["name"].lower() if ddns == "duckdns" and "." not in values["name"]
                    and values["name"] else parse_dns_name(values["name"]))
        except FormError as exc:
            errors.append(str(exc))
    secrets = {k: str(form.get(k, "")).strip() or saved.get(k, "") for k in SECRET_KEYS[ddns]}
    for key in SECRET_KEYS[ddns]:
        if not secrets[key]:
            errors.append({"tsig_secret": _("Enter the TSIG key's secret."),
                           "username": _("Enter the dynamic DNS account's user name."),
                           "password": _("Enter the dynamic DNS account's password."),
                           "token": _("Enter the DuckDNS token.")}[key])
    dns_server = dns_zone = tsig_name = ddns_url = ""
    if ddns == "rfc2136":
        try:
            dns_server = str(ipaddress.ip_address(values["dns_server"]))
        except ValueError:
            errors.append(_("Enter the DNS server's IP address."))
        for key in ("dns_zone", "tsig_name"):
            try:
                parsed = parse_dns_name(values[key])
            except FormError as exc:
                errors.append(str(exc))
                continue
            if key == "dns_zone":
                dns_zone = parsed
            else:
                tsig_name = parsed
        if name and dns_zone and not (name == dns_zone or name.endswith("." + dns_zone)):
            errors.append(_("%(name)s is not inside the zone %(zone)s.", name=name,
                            zone=dns_zone))
        try:
            base64.b64decode(secrets.get("tsig_secret", ""), validate=True)
        except (binascii.Error, ValueError):
            errors.append(_("The TSIG secret must be base64, as tsig-keygen prints it."))
    elif ddns:
        try:
            ddns_url = _url(values["ddns_url"] or
                            (DEFAULT_DYNDNS2 if ddns == "dyndns2" else DEFAULT_DUCKDNS))
        except FormError as exc:
            errors.append(str(exc))
    acme = values["acme"] == "on"
    directory = {"letsencrypt": LETS_ENCRYPT, "staging": LETS_ENCRYPT_STAGING}.get(
        values["acme_ca"], values["acme_directory"])
    if acme:
        if not ddns:
            errors.append(_("A trusted certificate needs a public name: choose how the name "
                            "is published."))
        if not enabled:
            errors.append(_("A trusted certificate needs the port forwarding on."))
        try:
            directory = _url(directory)
        except FormError as exc:
            errors.append(str(exc))
    email = values["email"]
    if email and ("@" not in email or " " in email):
        errors.append(_("'%(email)s' is not an e-mail address.", email=email[:80]))
    settings = ReachSettings(enabled, ddns, name, dns_server, dns_zone, tsig_name, ddns_url,
                             acme, directory or LETS_ENCRYPT, email)
    return ReachForm(settings, secrets, errors, values)
