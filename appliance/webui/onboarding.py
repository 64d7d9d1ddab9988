"""What a user needs to connect: URL, certificate pin, command line, profile, QR code.

The appliance's server certificate is signed by its own CA, so clients must be told what
to trust.  openconnect takes the pin of the server key (``--servercert pin-sha256:...``),
which survives nothing but that one key and so is exact; AnyConnect-style clients read
an XML profile naming the server; phones get a QR code to scan the URL and pin.

Once the device is reachable from the Internet under a published name
(appliance/web/reachview.py), every one of these uses that name; once the certificate
for it comes from a public CA (ACME), the pin is left out: clients check the certificate
as a browser does, and a pin would only break at the next renewal.
"""

from __future__ import annotations

import json
import logging
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import segno
from cryptography import x509

from .. import pki
from ..state import StateLayout
from ..vpn.config import Config
from ..web.reachview import public_identity

log = logging.getLogger(__name__)

PROFILE_NAMESPACE = "http://schemas.xmlsoap.org/encoding/"


@dataclass(frozen=True)
class ServerIdentity:
    """How users reach this server and how they recognise it."""

    url: str
    host: str
    pin: str  # pin-sha256:BASE64 of the server key
    sha1: str  # certificate SHA-1 (what older clients show)
    not_after: str
    trusted: bool = False  # publicly trusted certificate for ``host``: no pin needed

    def openconnect_command(self, username: str) -> str:
        pin = [] if self.trusted else [f"--servercert={self.pin}"]
        return shlex.join(["openconnect", *pin, f"--user={username}", self.url])

    def qr_text(self) -> str:
        """The URL to type, and (unless the certificate is publicly trusted) the pin to
        compare."""
        return self.url if self.trusted else f"{self.url}\n{self.pin}"


def _marker_url(layout: StateLayout) -> str | None:
    try:
        data = json.loads(layout.setup_done.read_text())
    except (OSError, ValueError):
        return None
    url = data.get("url") if isinstance(data, dict) else None
    return url if isinstance(url, str) and url.startswith("https://") else None


def _host_from_cert(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    names = [n for n in san.get_values_for_type(x509.DNSName) if not n.endswith(".local")]
    if names:
        return str(names[0])
    addresses = san.get_values_for_type(x509.IPAddress)
    return str(addresses[0]) if addresses else None


def server_identity(layout: StateLayout, cfg: Config | None) -> ServerIdentity:
    """From the wizard's marker (the address the owner chose) and the certificate."""
    cert_path = (cfg.server_cert if cfg and cfg.server_cert else None) or str(
        layout.server_cert)
    cert = pki.load_cert(cert_path)
    public = public_identity(layout)
    url = _marker_url(layout)
    if public is not None:
        url = f"https://{public.host}" + ("" if public.port == 443 else f":{public.port}") + "/"
    if url is None:
        host = _host_from_cert(cert) or "ocgate.local"
        if ":" in host:
            host = f"[{host}]"
        port = cfg.tcp_port if cfg else 443
        url = f"https://{host}" + ("" if port == 443 else f":{port}") + "/"
    host = url.removeprefix("https://").split("/")[0]
    return ServerIdentity(url=url, host=host, pin=pki.pin_sha256(cert),
                          sha1=pki.sha1_fingerprint_hex(cert),
                          not_after=cert.not_valid_after_utc.strftime("%Y-%m-%d"),
                          trusted=public is not None and public.trusted)


def qr_svg(text: str) -> str:
    """Inline SVG (no script, no style attribute: fine under our CSP), black on white."""
    code = segno.make(text, error="m")
    return str(code.svg_inline(scale=4, border=3, dark="#000000", light="#ffffff"))


def anyconnect_profile(identity: ServerIdentity, name: str = "OCGate") -> bytes:
    """A minimal AnyConnect XML client profile with this server as its only host entry."""
    ET.register_namespace("", PROFILE_NAMESPACE)
    ns = "{" + PROFILE_NAMESPACE + "}"
    root = ET.Element(f"{ns}AnyConnectProfile")
    init = ET.SubElement(root, f"{ns}ClientInitialization")
    strict = "true" if identity.trusted else "false"  # a public CA: refuse anything else
    for tag, value in (("UseStartBeforeLogon", "false"), ("StrictCertificateTrust", strict),
                       ("RestrictPreferenceCaching", "false"), ("BypassDownloader", "true"),
                       ("AutoUpdate", "false"), ("AutoReconnect", "true"),
                       ("AllowLocalProxyConnections", "true")):
        ET.SubElement(init, f"{ns}{tag}").text = value
    servers = ET.SubElement(root, f"{ns}ServerList")
    entry = ET.SubElement(servers, f"{ns}HostEntry")
    ET.SubElement(entry, f"{ns}HostName").text = name
    ET.SubElement(entry, f"{ns}HostAddress").text = identity.url.removeprefix(
        "https://").rstrip("/")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
