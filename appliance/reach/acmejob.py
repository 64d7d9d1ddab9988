"""The ACME job of ``reach run``: get a public certificate when there is none, renew it.

The certificate the VPN presents (its ``server-cert``) is the record of what we have: when
it is not signed by the appliance's own CA, names the public host and is not yet due, the
job sleeps until it is due; otherwise it orders one by TLS-ALPN-01 (answered by the VPN
server on its own port, so the mapping must be up and the name published first), installs
it and makes the VPN server reload it for new handshakes.  Failures raise, so the
scheduler's backoff (jobs.py) spaces the retries.

Due means :func:`acmecert.renew_at`; its jitter is drawn from the certificate's serial, so
a restart of the service keeps the same renewal time instead of drawing a new one.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from . import acmecert, challenges

log = logging.getLogger(__name__)

#: never sleep longer than this between looks (a clock that jumps, a file replaced by hand)
MAX_SLEEP = 6 * 3600.0
WAIT_FOR_REACH = 15.0


@dataclass(frozen=True)
class Current:
    serial: int
    not_before: datetime.datetime
    not_after: datetime.datetime
    renew_at: datetime.datetime


def current_public(cert_path: Path, name: str, own_ca: Path | None) -> Current | None:
    """The installed certificate if it is a public one for ``name`` that has not expired."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None
    if own_ca is not None:
        try:
            ca = x509.load_pem_x509_certificate(own_ca.read_bytes())
        except (OSError, ValueError):
            ca = None
        if ca is not None and cert.issuer == ca.subject:
            return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    if name.lower() not in (n.lower() for n in san.value.get_values_for_type(x509.DNSName)):
        return None
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if datetime.datetime.now(datetime.UTC) >= na:
        return None
    digest = hashlib.sha256(cert.serial_number.to_bytes(20, "big", signed=False)).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2 ** 64
    return Current(cert.serial_number, nb, na, acmecert.renew_at(nb, na, lambda: fraction))


@dataclass
class AcmeJob:
    """One pass returns the seconds until the next; see the module docstring."""

    name: str
    directory: str
    account_dir: Path
    cert: Path
    key: Path
    ready: Callable[[], str]  # "" when the name leads to our mapped port, else why not
    occtl_socket: str = ""
    own_ca: Path | None = None
    email: str = ""
    ca_bundle: str | bool = True
    _reload_owed: bool = field(default=False, init=False)
    _waiting: str = field(default="", init=False)
    _announced: int = field(default=-1, init=False)

    def __call__(self) -> float:
        if self._reload_owed:  # installed earlier, the VPN server did not take it yet
            acmecert.reload_vpn(self.occtl_socket)
            self._reload_owed = False
        current = current_public(self.cert, self.name, self.own_ca)
        now = datetime.datetime.now(datetime.UTC)
        if current is not None and now < current.renew_at:
            if current.serial != self._announced:
                log.info("reach acme name=%s result=valid serial=%x not_after=%s renew_at=%s",
                         self.name, current.serial, current.not_after.isoformat(),
                         current.renew_at.isoformat())
                self._announced = current.serial
            return min(MAX_SLEEP, max(1.0, (current.renew_at - now).total_seconds()))
        why_not = self.ready()
        if why_not:
            if why_not != self._waiting:
                log.info("reach acme name=%s result=waiting reason=%s", self.name, why_not)
                self._waiting = why_not
            return WAIT_FOR_REACH
        self._waiting = ""
        log.info("reach acme name=%s result=ordering reason=%s", self.name,
                 "renewal-due" if current is not None else "no-public-certificate")
        issuer = acmecert.AcmeIssuer(self.directory, self.account_dir, email=self.email,
                                     ca_bundle=self.ca_bundle,
                                     alpn=challenges.store_beside(self.cert))
        issued = issuer.issue(self.name)
        self._reload_owed = bool(self.occtl_socket)
        acmecert.install(issued, self.cert, self.key)
        fresh = current_public(self.cert, self.name, self.own_ca)
        log.info("reach acme name=%s result=installed serial=%s not_after=%s renew_at=%s",
                 self.name, f"{fresh.serial:x}" if fresh else "?",
                 issued.not_after.isoformat(), fresh.renew_at.isoformat() if fresh else "?")
        if fresh is not None:
            self._announced = fresh.serial
        if self._reload_owed:
            acmecert.reload_vpn(self.occtl_socket)
            self._reload_owed = False
        if fresh is None:
            raise acmecert.AcmeError(f"the certificate installed for {self.name} does not "
                                     "check out as a public one for that name")
        return min(MAX_SLEEP, max(1.0, (fresh.renew_at - datetime.datetime.now(
            datetime.UTC)).total_seconds()))
