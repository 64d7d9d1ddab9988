"""Reachability in the page's language: the wizard step and the dashboard card show the same.

The service (appliance/reach) writes its status in English for logs and tools; the pages
say it again from the status *kind* and its addresses, translated, so a Persian admin reads
Persian.  ``public_identity`` is what client-facing pages use (onboarding, QR code,
AnyConnect profile): the public name once it is published, and whether the certificate is
one a client trusts without pinning.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from flask_babel import gettext as _

from ..reach import settings as reach_settings
from ..state import StateLayout
from .l10n import format_day, format_duration, format_epoch


@dataclass(frozen=True)
class CertInfo:
    not_after: datetime.datetime
    issuer: str
    public: bool  # signed by someone other than the appliance CA (an ACME CA)


@dataclass(frozen=True)
class ReachCard:
    kind: str  # reachable, cgnat, double-nat, no-protocol, refused, off, unknown
    reachable: bool
    headline: str
    explanation: str
    manual_rule: str
    rows: list[tuple[str, str, str]]  # (id, label, value)


def certificate_info(layout: StateLayout) -> CertInfo | None:
    try:
        cert = x509.load_pem_x509_certificate(layout.server_cert.read_bytes())
    except (OSError, ValueError):
        return None
    public = True
    try:
        ca = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
        public = cert.issuer != ca.subject
    except (OSError, ValueError):
        pass
    names = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return CertInfo(cert.not_valid_after_utc, str(names[0].value) if names else "", public)


def _rule(lan_address: str, rules: list[dict[str, Any]]) -> str:
    parts = [_("%(proto)s port %(external)d to %(address)s port %(internal)d",
               proto=str(r["protocol"]).upper(), external=int(r["external_port"]),
               address=lan_address, internal=int(r["internal_port"])) for r in rules]
    return _("On your router, forward %(ports)s.", ports=_(" and ").join(parts)) \
        if parts else ""


def _words(kind: str, st: dict[str, Any], address: str) -> tuple[str, str]:
    ports = ", ".join(f"{str(r['protocol']).upper()} {r['external_port']}"
                      for r in st.get("rules", []))
    if kind == "reachable":
        return (_("Reachable from the Internet"),
                _("The router forwards %(ports)s from %(address)s to this device (%(via)s).",
                  ports=ports, address=address or "?", via=st.get("via", "")))
    if kind == "cgnat":
        return (_("Your Internet provider uses carrier-grade NAT"),
                _("The router's outside address is in the shared range 100.64.0.0/10: the "
                  "provider puts many customers behind one public address, so no rule on "
                  "your router can bring connections from the Internet to this device. The "
                  "VPN works at home only. Ask the provider for a public IPv4 address, or "
                  "use IPv6 if they offer it."))
    if kind == "double-nat":
        return (_("Your router is behind another router (double NAT)"),
                _("The router's outside address is a private one: another router sits "
                  "between it and the Internet. Forward the same ports on the outer router "
                  "too, or put the outer box in bridge mode."))
    if kind == "no-protocol":
        return (_("The router does not offer automatic port forwarding"),
                _("The router answered none of UPnP IGD, NAT-PMP and PCP (they may be off in "
                  "its settings). Add the rule below in the router's web page, or turn UPnP "
                  "or NAT-PMP on there."))
    return (_("The router refused the port forwarding"),
            _("The router speaks a port-mapping protocol but refused the mapping. Add the "
              "rule below in the router's web page."))


def card(status: dict[str, Any] | None, config: reach_settings.ReachSettings,
         cert: CertInfo | None) -> ReachCard:
    """The card from the service's last status (None: not checked yet)."""
    lan_address = str((status or {}).get("lan_address") or "?")
    if not config.enabled and status is None:
        return ReachCard("off", False, _("Not reachable from the Internet"),
                         _("Automatic port forwarding is off: the VPN works at home only."),
                         "", _cert_rows(cert))
    st = (status or {}).get("status") or {}
    if not st:
        return ReachCard("unknown", False, _("Not checked yet"),
                         _("The reachability check has not run yet."), "", _cert_rows(cert))
    kind = str(st.get("kind", ""))
    address = str((status or {}).get("external_address") or st.get("external_address") or "")
    headline, explanation = _words(kind, st, address)
    rule = "" if kind in ("reachable", "cgnat") else _rule(lan_address, st.get("rules", []))
    rows: list[tuple[str, str, str]] = []
    leases = (status or {}).get("leases") or []
    if leases:
        lease = ", ".join(_("%(proto)s %(port)d for %(time)s",
                            proto=str(x["protocol"]).upper(), port=int(x["external_port"]),
                            time=format_duration(float(x["lifetime"])))
                          if x.get("lifetime") else
                          _("%(proto)s %(port)d, permanent", proto=str(x["protocol"]).upper(),
                            port=int(x["external_port"])) for x in leases)
        via = str((status or {}).get("via", ""))
        rows.append(("reach-lease", _("Port mapping"), f"{lease} ({via})" if via else lease))
    rows.append(("reach-address", _("Public address"), address or _("unknown")))
    dns = (status or {}).get("dns")
    if dns:
        published = dns.get("published") or []
        value = (_("%(name)s → %(address)s", name=dns["name"], address=published[0])
                 if published and published[0] else
                 _("%(name)s (not published yet)", name=dns["name"]))
        rows.append(("reach-dns", _("DNS record"), value))
    else:
        rows.append(("reach-dns", _("DNS record"), _("none")))
    rows += _cert_rows(cert)
    last = float((status or {}).get("last_check") or 0)
    rows.append(("reach-checked", _("Last check"), format_epoch(last) if last else _("never")))
    return ReachCard(kind, kind == "reachable", headline, explanation, rule, rows)


def _cert_rows(cert: CertInfo | None) -> list[tuple[str, str, str]]:
    if cert is None:
        return []
    trust = (_("publicly trusted, from %(issuer)s", issuer=cert.issuer) if cert.public
             else _("from this device's own CA (clients pin it)"))
    return [("reach-cert", _("Certificate"),
             _("valid until %(day)s, %(trust)s", day=format_day(cert.not_after),
               trust=trust))]


@dataclass(frozen=True)
class PublicIdentity:
    """How clients outside the home should name the server, when that is known."""
    host: str
    port: int
    trusted: bool  # the certificate chains to a public root: no pin needed


def public_identity(layout: StateLayout) -> PublicIdentity | None:
    """The public name once the service found the device reachable and published the name;
    None while clients must use the LAN address."""
    try:
        config = reach_settings.load(layout.reach_settings)
    except ValueError:
        return None
    status = reach_settings.read_status(layout.reach_status)
    if not (config.enabled and config.name and status):
        return None
    st = status.get("status") or {}
    dns = status.get("dns") or {}
    if st.get("kind") != "reachable" or not (dns.get("published") or [None])[0]:
        return None
    ports = {int(r["external_port"]) for r in st.get("rules", []) if r.get("protocol") == "tcp"}
    host = str(dns.get("name") or config.name)
    if config.ddns == "duckdns" and "." not in host:
        host += ".duckdns.org"
    cert = certificate_info(layout)
    trusted = cert is not None and cert.public and _names(layout, host)
    return PublicIdentity(host, ports.pop() if len(ports) == 1 else 443, trusted)


def _names(layout: StateLayout, host: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(Path(layout.server_cert).read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return host.lower() in (n.lower() for n in san.value.get_values_for_type(x509.DNSName))
