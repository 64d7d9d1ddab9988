"""Stored language choices: the device default (the wizard's language) and each admin's.

One small JSON file, ``STATE/ui-language.json``::

    {"default": "fa", "accounts": {"admin": "fa"}}

The wizard writes the default when it applies the setup, in the language it was
completed in, so the admin UI opens in that language too; the admin UI's switch stores
the signed-in admin's choice.  Nothing here is secret (0644).  A damaged or foreign file
reads as "nothing stored": the pages then follow the browser, they never fail.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from ..atomicfile import write_atomic
from .i18n import known

log = logging.getLogger(__name__)

MAX_ACCOUNTS = 64
MAX_BYTES = 64 * 1024


class LanguagePrefs:
    """Reads and updates one ``ui-language.json`` (thread-safe within a process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()[:MAX_BYTES]
            data = json.loads(raw.decode("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def default(self) -> str | None:
        return known(self._read().get("default"))

    def account(self, username: str) -> str | None:
        accounts = self._read().get("accounts")
        return known(accounts.get(username)) if isinstance(accounts, dict) else None

    def _update(self, change: dict[str, Any]) -> None:
        with self._lock:
            data = self._read()
            stored = data.get("accounts")
            accounts: dict[str, Any] = stored if isinstance(stored, dict) else {}
            if "default" in change:
                data["default"] = change["default"]
            for name, code in change.get("accounts", {}).items():
                accounts[name] = code
            data["accounts"] = {k: v for k, v in list(accounts.items())[-MAX_ACCOUNTS:]
                                if isinstance(k, str) and known(v)}
            text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
            write_atomic(self.path, text.encode("utf-8"), 0o644)

    def set_default(self, code: str) -> None:
        if known(code):
            self._update({"default": code})

    def set_account(self, username: str, code: str) -> None:
        if known(code) and username and self.account(username) != code:
            self._update({"accounts": {username: code}})
