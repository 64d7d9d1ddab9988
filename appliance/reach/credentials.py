"""DDNS and ACME credentials: one JSON file, mode 0600 from its creation, written atomically.

Values are never logged; ``redact`` is what goes into a log line or a status page instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomicfile import write_atomic

MODE = 0o600


class SecretStoreError(ValueError):
    pass


def load(path: Path) -> dict[str, str]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    if st.st_mode & 0o077:
        raise SecretStoreError(f"{path}: mode {st.st_mode & 0o777:o} lets others read the "
                               "credentials; expected 600")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SecretStoreError(f"{path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in data.items()):
        raise SecretStoreError(f"{path}: expected an object of strings")
    return data


def save(path: Path, secrets: dict[str, str]) -> None:
    write_atomic(path, json.dumps(secrets, indent=1, sort_keys=True).encode() + b"\n", MODE,
                 owner=(os.getuid(), os.getgid()))


def redact(value: str) -> str:
    return "(set)" if value else "(empty)"
