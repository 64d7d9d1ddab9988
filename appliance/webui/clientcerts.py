"""Client certificates for VPN users: issue (PKCS#12), list, revoke, keep the CRL current.

Certificates are signed by the appliance CA the first-boot wizard made (``certs/ca-*.pem``)
with :func:`appliance.pki.make_client_cert`, which puts the user name in both CN and UID,
so ``cert-user-oid`` may name either.  The private key exists only in memory: it goes into
a PKCS#12 file protected by a random one-time password, which the admin downloads once;
the device keeps nothing but the metadata (``client-certs.json``: serial, user, validity,
fingerprint, revocation date).  That is enough to list and revoke certificates, which is
all a CRL needs.

Revoking rewrites ``certs/crl.pem`` atomically (temp file, fsync, rename): the server
re-reads the CRL when the file's stamp changes (ocserv does the same), so the revoked
certificate is refused at its next login without a restart.  Turning certificate login on
for the first time edits ocserv.conf (``enable-auth = certificate``, ``ca-cert``,
``cert-user-oid``, ``crl``); the server reads authentication settings at start only, so
the page then asks for a restart of the VPN service.
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from flask_babel import gettext as _

from .. import pki
from ..atomicfile import write_atomic
from ..state import StateLayout
from ..vpn.config import ConfigDocument, ConfigError, load_config, write_config_atomic

log = logging.getLogger(__name__)

UID_OID = "0.9.2342.19200300.100.1.1"
DEFAULT_DAYS = 730
MAX_DAYS = 3650
#: The CRL is re-signed on every change; between changes it must not expire, or OpenSSL
#: would refuse every certificate ("CRL has expired").  Ten years: the CA's own lifetime.
CRL_DAYS = 3650
MAX_CERTS = 2000


class ClientCertError(ValueError):
    """A certificate operation that cannot be done; the message is shown to the admin."""


@dataclass
class IssuedCert:
    """What the device remembers about one certificate it issued (no key)."""

    serial: str  # upper-case hex
    username: str
    not_before: str  # ISO 8601, UTC
    not_after: str
    sha256: str  # certificate fingerprint, hex
    issued_by: str = ""
    revoked: str | None = None  # ISO 8601 revocation time

    @property
    def expires(self) -> datetime.datetime:
        return datetime.datetime.fromisoformat(self.not_after)

    def status(self, now: datetime.datetime) -> str:
        if self.revoked:
            return "revoked"
        return "expired" if self.expires <= now else "valid"


@dataclass(frozen=True)
class IssuedBundle:
    """A freshly issued certificate: the PKCS#12 file and its password exist only here."""

    record: IssuedCert
    p12: bytes
    password: str


@dataclass(frozen=True)
class LoginChange:
    """What enabling certificate login changed in ocserv.conf (empty: nothing)."""

    options: tuple[str, ...]

    @property
    def needs_restart(self) -> bool:
        return bool(self.options)


def one_time_password() -> str:
    """About 95 bits in groups of five: typed by hand on a phone when importing the file."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(19))
    return "-".join(raw[i:i + 5] for i in range(0, 19, 5))


def parse_issued(raw: object) -> list[IssuedCert]:
    """``client-certs.json`` content as records; a restore validates a backup with it."""
    if not isinstance(raw, list):
        raise ClientCertError(_("The certificate list is not a JSON array."))
    records = []
    for item in raw:
        try:
            record = IssuedCert(**item)
            int(record.serial, 16)
            datetime.datetime.fromisoformat(record.not_after)
        except (TypeError, ValueError):
            raise ClientCertError(_("The certificate list has a malformed entry.")) from None
        records.append(record)
    return records


def build_crl(ca_key: pki.PrivateKey, ca_cert: x509.Certificate, revoked: list[IssuedCert],
              now: datetime.datetime, number: int) -> bytes:
    """PEM CRL signed by the CA, listing every revoked serial."""
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - pki.CLOCK_SKEW)
               .next_update(now + datetime.timedelta(days=CRL_DAYS))
               .add_extension(x509.CRLNumber(number), critical=False))
    for record in revoked:
        when = datetime.datetime.fromisoformat(record.revoked or now.isoformat())
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(record.serial, 16))
            .revocation_date(when).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


class ClientCerts:
    """Issued certificates of one state folder."""

    def __init__(self, layout: StateLayout, lock: threading.RLock | None = None) -> None:
        self.layout = layout
        self.lock = lock or threading.RLock()

    # ------------------------------------------------------------------ records
    def load(self) -> list[IssuedCert]:
        try:
            raw = json.loads(self.layout.client_certs.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ClientCertError(_("%(path)s cannot be read: %(reason)s",
                                      path=self.layout.client_certs, reason=exc)) from None
        return parse_issued(raw)

    def _save(self, records: list[IssuedCert]) -> None:
        text = json.dumps([asdict(r) for r in records], indent=1) + "\n"
        write_atomic(self.layout.client_certs, text.encode(), 0o600)

    def for_user(self, username: str) -> list[IssuedCert]:
        return [r for r in self.load() if r.username == username]

    # ------------------------------------------------------------------ CA
    def _ca(self) -> tuple[pki.PrivateKey, x509.Certificate]:
        try:
            return pki.load_key(self.layout.ca_key), pki.load_cert(self.layout.ca_cert)
        except pki.PkiError as exc:
            raise ClientCertError(_("The appliance CA cannot be used: %(reason)s",
                                      reason=exc)) from None

    def _check_configured_ca(self) -> None:
        """A ca-cert other than ours would make every certificate we issue useless."""
        try:
            cfg = load_config(str(self.layout.conf))
        except ConfigError as exc:
            raise ClientCertError(_("ocserv.conf cannot be read: %(reason)s",
                                    reason=exc)) from None
        if cfg.ca_cert and Path(cfg.ca_cert).resolve() != self.layout.ca_cert:
            try:
                same = pki.load_cert(cfg.ca_cert) == pki.load_cert(self.layout.ca_cert)
            except pki.PkiError:
                same = False
            if not same:
                raise ClientCertError(_("The server trusts another CA (%(path)s); "
                                        "certificates from the appliance CA would be "
                                        "refused.", path=cfg.ca_cert))

    # ------------------------------------------------------------------ issue / revoke
    def issue(self, username: str, now: datetime.datetime, *, days: int = DEFAULT_DAYS,
              admin: str = "") -> IssuedBundle:
        if not 1 <= days <= MAX_DAYS:
            raise ClientCertError(_("The validity must be 1 to %(num)d days.", num=MAX_DAYS))
        self._check_configured_ca()
        ca_key, ca_cert = self._ca()
        with self.lock:
            records = self.load()
            if len(records) >= MAX_CERTS:
                raise ClientCertError(_("Too many certificates; revoke and clean up first."))
            try:
                key, cert = pki.make_client_cert(ca_key, ca_cert, username=username,
                                                 days=days, now=now)
            except pki.PkiError as exc:
                raise ClientCertError(str(exc)) from None
            password = one_time_password()
            p12 = pki.pkcs12_bundle(key, cert, ca_cert, password.encode(),
                                    f"{username} (OCGate)")
            record = IssuedCert(
                serial=format(cert.serial_number, "X"), username=username,
                not_before=cert.not_valid_before_utc.isoformat(),
                not_after=cert.not_valid_after_utc.isoformat(),
                sha256=cert.fingerprint(hashes.SHA256()).hex(), issued_by=admin)
            records.append(record)
            self._save(records)
        log.info("issued client certificate %s for VPN user %s", record.serial, username)
        return IssuedBundle(record, p12, password)

    def revoke(self, serial: str, now: datetime.datetime) -> IssuedCert:
        with self.lock:
            records = self.load()
            record = next((r for r in records if r.serial == serial.upper()), None)
            if record is None:
                raise ClientCertError(_("There is no certificate with that serial number."))
            if record.revoked:
                raise ClientCertError(_("That certificate is revoked already."))
            record.revoked = now.isoformat()
            self.write_crl(now, records)
            self._save(records)
        log.info("revoked client certificate %s of VPN user %s", record.serial,
                 record.username)
        return record

    def crl_path(self) -> Path:
        """The file the server reads (``crl``), else where we will point it."""
        try:
            configured = load_config(str(self.layout.conf)).crl
        except ConfigError:
            configured = None
        return Path(configured) if configured else self.layout.crl

    def write_crl(self, now: datetime.datetime,
                  records: list[IssuedCert] | None = None) -> Path:
        """Re-sign and atomically replace the CRL (0644: the server's processes read it)."""
        records = self.load() if records is None else records
        ca_key, ca_cert = self._ca()
        revoked = [r for r in records if r.revoked]
        path = self.crl_path()
        data = build_crl(ca_key, ca_cert, revoked, now, int(now.timestamp() * 1000))
        write_atomic(path, data, 0o644)
        log.info("wrote CRL %s with %d revoked certificate(s)", path, len(revoked))
        return path

    # ------------------------------------------------------------------ server settings
    def cert_login_enabled(self) -> bool:
        try:
            cfg = load_config(str(self.layout.conf))
        except ConfigError:
            return False
        methods = [m.name for m in cfg.auth + cfg.enable_auth]
        return "certificate" in methods and bool(cfg.crl)

    def ensure_cert_login(self, now: datetime.datetime) -> LoginChange:
        """Let certificates log in (as an alternative to the password) and point the
        server at our CRL; returns which options had to change."""
        with self.lock:
            try:
                cfg = load_config(str(self.layout.conf))
                doc = ConfigDocument.load(str(self.layout.conf))
            except ConfigError as exc:
                raise ClientCertError(_("ocserv.conf cannot be read: %(reason)s",
                                        reason=exc)) from None
            changed: list[str] = []
            if "certificate" not in [m.name for m in cfg.auth + cfg.enable_auth]:
                doc.set("enable-auth", [*doc.get("enable-auth"), "certificate"])
                changed.append("enable-auth")
            if not cfg.ca_cert:
                doc.set("ca-cert", str(self.layout.ca_cert))
                changed.append("ca-cert")
            if cfg.cert_user_oid is None:
                doc.set("cert-user-oid", UID_OID)
                changed.append("cert-user-oid")
            if not self.crl_path().is_file():
                self.write_crl(now)
            if not cfg.crl:
                doc.set("crl", str(self.layout.crl))
                changed.append("crl")
            if changed:
                text = doc.text()
                try:
                    write_config_atomic(str(self.layout.conf),
                                        text if text.endswith("\n") else text + "\n")
                except ConfigError as exc:
                    raise ClientCertError(_("Certificate login cannot be turned on: %(reason)s",
                                            reason=exc)) from None
                log.info("certificate login enabled in ocserv.conf (%s)", ", ".join(changed))
        return LoginChange(tuple(changed))
