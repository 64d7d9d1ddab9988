"""Optional second factor for the admin: TOTP (RFC 6238) plus one-time recovery codes.

The codes themselves come from ``cryptography``'s RFC 6238 implementation (already a
dependency), so this module only adds what an appliance needs around it:

* a tolerance of one time step either way, because a phone's clock and the device's
  clock (no RTC on many boards, NTP may be late after boot) are rarely in sync;
* replay protection: a code (time step) that signed somebody in once is spent, so a code
  shoulder-surfed or phished within its 90-second window cannot be used again;
* recovery codes with 80 random bits each, stored as SHA-256 hashes: they are random, not
  chosen by a person, so a slow password hash would add nothing but delay;
* a JSON file (0600) per state folder, written atomically, that the backup carries along
  (restoring a backup must not silently switch the second factor off).

Every function takes ``now`` (epoch seconds) from the caller; nothing here reads a clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.hashes import SHA1, SHA256, SHA512
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from flask_babel import gettext as _

from ..atomicfile import write_atomic

log = logging.getLogger(__name__)

DIGITS = 6
STEP = 30
WINDOW = 1  # time steps accepted before and after the current one
SECRET_BYTES = 20  # 160 bits, what RFC 4226 recommends for HMAC-SHA1
RECOVERY_CODES = 10
RECOVERY_BYTES = 10  # 80 bits -> 16 base32 characters
ISSUER = "OCGate"
_ALGORITHMS: dict[str, type[SHA1 | SHA256 | SHA512]] = {"SHA1": SHA1, "SHA256": SHA256,
                                                      "SHA512": SHA512}


class TotpError(ValueError):
    """A TOTP secret, code or store file that cannot be used; the message is for people."""


# --------------------------------------------------------------------------- codes


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def secret_to_text(secret: bytes) -> str:
    """Base32 without padding: what authenticator apps expect in ``secret=``."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def secret_from_text(text: str) -> bytes:
    cleaned = "".join(text.split()).upper()
    try:
        secret = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raise TotpError(_("The TOTP secret is not valid base32.")) from None
    if len(secret) < 16:
        raise TotpError(_("The TOTP secret is shorter than 128 bits."))
    return secret


def _totp(secret: bytes, digits: int, algorithm: str, step: int) -> TOTP:
    try:
        hash_class = _ALGORITHMS[algorithm]
    except KeyError:
        raise TotpError(_("Unknown TOTP algorithm %(name)s.", name=repr(algorithm))) from None
    return TOTP(secret, digits, hash_class(), step, enforce_key_length=False)


def totp_code(secret: bytes, now: float, *, digits: int = DIGITS, algorithm: str = "SHA1",
              step: int = STEP) -> str:
    """The code an authenticator shows at ``now`` (epoch seconds)."""
    return _totp(secret, digits, algorithm, step).generate(int(now)).decode("ascii")


def matching_step(secret: bytes, code: str, now: float, *, after_step: int = -1,
                  window: int = WINDOW, digits: int = DIGITS, step: int = STEP) -> int | None:
    """The time-step counter ``code`` belongs to, or None.

    Steps at or before ``after_step`` (the last one used) are refused: that is the replay
    protection.  Every candidate step is checked, so the time taken does not reveal which
    one matched.
    """
    cleaned = "".join(code.split())
    if len(cleaned) != digits or not cleaned.isdigit():
        return None
    totp = _totp(secret, digits, "SHA1", step)
    current = int(now) // step
    found = None
    for counter in range(current - window, current + window + 1):
        try:
            totp.verify(cleaned.encode("ascii"), counter * step)
        except InvalidToken:
            continue
        if counter > after_step and found is None:
            found = counter
    return found


def provisioning_uri(secret: bytes, account: str, issuer: str = ISSUER) -> str:
    """``otpauth://totp/...`` (Google Authenticator key URI format) for the QR code."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode({"secret": secret_to_text(secret), "issuer": issuer,
                       "algorithm": "SHA1", "digits": DIGITS, "period": STEP})
    return f"otpauth://totp/{label}?{query}"


# --------------------------------------------------------------------------- recovery codes


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """``ABCD-EFGH-IJKL-MNOP``: grouped so that a person can copy them onto paper."""
    codes = []
    for _index in range(count):
        raw = base64.b32encode(secrets.token_bytes(RECOVERY_BYTES)).decode("ascii")
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
    return codes


def normalise_recovery(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def hash_recovery(code: str) -> str:
    return hashlib.sha256(normalise_recovery(code).encode("ascii", "replace")).hexdigest()


def looks_like_recovery(code: str) -> bool:
    return len(normalise_recovery(code)) == 16


# --------------------------------------------------------------------------- store


@dataclass
class TotpRecord:
    """One admin's second factor; ``enabled`` only after a first code confirmed it."""

    secret: str  # base32
    enabled: bool = False
    last_step: int = -1
    recovery: list[str] = field(default_factory=list)  # SHA-256 hex of unused codes


class TotpStore:
    """The ``admin-totp.json`` file: read-modify-write under a lock, atomic writes."""

    def __init__(self, path: Path, lock: threading.RLock | None = None) -> None:
        self.path = path
        self.lock = lock or threading.RLock()

    def load(self) -> dict[str, TotpRecord]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise TotpError(_("%(path)s cannot be read: %(reason)s", path=self.path,
                              reason=exc)) from None
        return parse_records(raw)

    def _save(self, records: dict[str, TotpRecord]) -> None:
        data = {name: asdict(record) for name, record in sorted(records.items())}
        write_atomic(self.path, (json.dumps(data, indent=1) + "\n").encode(), 0o600)

    def get(self, username: str) -> TotpRecord | None:
        return self.load().get(username)

    def is_enabled(self, username: str) -> bool:
        """Fails closed: an unreadable file means 'a code is required' (and none works)."""
        try:
            record = self.get(username)
        except TotpError as exc:
            log.error("admin TOTP file unreadable, second factor cannot pass: %s", exc)
            return True
        return record is not None and record.enabled

    def begin(self, username: str) -> TotpRecord:
        """A fresh, not yet enabled secret (replaces an unconfirmed one)."""
        with self.lock:
            records = self.load()
            current = records.get(username)
            if current is not None and current.enabled:
                raise TotpError(_("Two-step sign-in is already on; turn it off first."))
            record = TotpRecord(secret_to_text(new_secret()))
            records[username] = record
            self._save(records)
        log.info("admin %s started TOTP enrolment", username)
        return record

    def confirm(self, username: str, code: str, now: float) -> list[str]:
        """Enable after a first good code; returns the recovery codes (shown once)."""
        with self.lock:
            records = self.load()
            record = records.get(username)
            if record is None or record.enabled:
                raise TotpError(_("Start the set-up again: there is no pending secret."))
            step = matching_step(secret_from_text(record.secret), code, now)
            if step is None:
                raise TotpError(_("That code is not right; check the phone's clock and try "
                                  "the next code."))
            codes = new_recovery_codes()
            record.enabled, record.last_step = True, step
            record.recovery = [hash_recovery(c) for c in codes]
            self._save(records)
        log.info("admin %s turned on TOTP", username)
        return codes

    def verify(self, username: str, code: str, now: float) -> str | None:
        """'totp' or 'recovery' when ``code`` passes (and is spent), else None."""
        with self.lock:
            records = self.load()
            record = records.get(username)
            if record is None or not record.enabled:
                return None
            step = matching_step(secret_from_text(record.secret), code, now,
                                 after_step=record.last_step)
            if step is not None:
                record.last_step = step
                self._save(records)
                return "totp"
            if looks_like_recovery(code):
                wanted = hash_recovery(code)
                for stored in record.recovery:
                    if hmac.compare_digest(stored, wanted):
                        record.recovery.remove(stored)
                        self._save(records)
                        log.warning("admin %s used a recovery code (%d left)", username,
                                    len(record.recovery))
                        return "recovery"
            return None

    def disable(self, username: str) -> None:
        with self.lock:
            records = self.load()
            if records.pop(username, None) is not None:
                self._save(records)
        log.info("admin %s turned off TOTP", username)


def parse_records(raw: object) -> dict[str, TotpRecord]:
    """The file's JSON as records; also what a restore uses to validate a backup's copy."""
    if not isinstance(raw, dict):
        raise TotpError(_("The TOTP file is not a JSON object."))
    records: dict[str, TotpRecord] = {}
    for name, item in raw.items():
        if not isinstance(name, str) or not isinstance(item, dict):
            raise TotpError(_("The TOTP file has a malformed entry."))
        try:
            record = TotpRecord(str(item["secret"]), bool(item.get("enabled", False)),
                                int(item.get("last_step", -1)),
                                [str(h) for h in item.get("recovery", [])])
        except (KeyError, TypeError, ValueError):
            raise TotpError(_("The TOTP entry for %(name)s is malformed.",
                              name=repr(name[:64]))) from None
        secret_from_text(record.secret)
        records[name] = record
    return records
