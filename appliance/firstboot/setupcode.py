"""The one-time setup code that proves the person in the browser owns the device.

Without it, whoever reaches port 80 first after the device boots (a housemate, a guest on
the Wi-Fi, a script) could set the admin password.  The code is printed on the console and
serial port and written to the boot partition (readable with a card reader), never sent
over the network.  Format: 16 characters from Crockford's base32 alphabet in four groups,
``7KQ3-M9XD-2HPW-TF6R``: 80 bits, no I/L/O/U, so it can be read off a screen and typed on
a phone; input is forgiving (case, spaces, dashes, O for 0, I/L for 1).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path

from ..atomicfile import write_atomic

log = logging.getLogger(__name__)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
GROUPS = 4
GROUP_SIZE = 4
CODE_LENGTH = GROUPS * GROUP_SIZE
_SUBSTITUTES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_HEADER = "# OCGate one-time setup code: type it into the setup page in your browser.\n"


class SetupCodeError(ValueError):
    """The setup code file is unreadable or holds something that is not a code."""


def generate_code() -> str:
    """A fresh code, grouped for reading: ``XXXX-XXXX-XXXX-XXXX``."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return format_code(raw)


def format_code(raw: str) -> str:
    return "-".join(raw[i:i + GROUP_SIZE] for i in range(0, len(raw), GROUP_SIZE))


def normalize(typed: str) -> str:
    """What the user meant: upper case, separators dropped, look-alikes mapped.

    Anything outside the alphabet is kept as is (it will simply not match), so hostile
    input cannot raise here.
    """
    kept = "".join(ch for ch in typed.upper() if ch not in " -_.\t\r\n")
    return kept.translate(_SUBSTITUTES)[: CODE_LENGTH * 4]


def codes_match(expected: str, typed: str) -> bool:
    """Constant-time comparison of normalized codes (the length is not a secret)."""
    want = normalize(expected).encode("ascii", "replace")
    got = normalize(typed).encode("utf-8", "replace")
    return hmac.compare_digest(want, got)


class SetupCodeStore:
    """The code file in the state folder's boot/ directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> str | None:
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SetupCodeError(f"cannot read {self.path}: {exc}") from None
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                code = normalize(line)
                if len(code) != CODE_LENGTH or any(ch not in ALPHABET for ch in code):
                    raise SetupCodeError(f"{self.path} does not hold a setup code")
                return format_code(code)
        raise SetupCodeError(f"{self.path} does not hold a setup code")

    def ensure(self) -> str:
        """The current code, creating one (mode 0600, fsynced) if there is none yet."""
        try:
            existing = self.read()
        except SetupCodeError as exc:
            log.warning("%s; making a new setup code", exc)
            existing = None
        if existing is not None:
            return existing
        code = generate_code()
        write_atomic(self.path, (_HEADER + code + "\n").encode("ascii"), 0o600)
        log.info("new setup code written to %s", self.path)
        return code

    def verify(self, typed: str) -> bool:
        code = self.read()
        if code is None:
            # Still burn a comparison so timing does not reveal that setup is over.
            codes_match("0" * CODE_LENGTH, typed)
            return False
        return codes_match(code, typed)

    def invalidate(self) -> None:
        """Setup is done: the code must never open the wizard again."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
