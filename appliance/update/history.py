"""What was installed and how it ended, on the data partition (updates never write it).

Two small JSON files under ``STATE/update/``:

* ``pending.json`` is written just before ``rauc install``: the version, the slot it goes
  to and the release it replaces.  It says "an update is waiting for its first good boot".
* ``last.json`` is the outcome, written by the health check of the next boots: either
  ``installed`` (the new slot booted and passed the check) or ``rolled-back`` (the boot
  loader fell back to the old slot after the new one used up its tries).

:func:`settle` is the decision, pure: the pending record, the slot that booted and whether
the health check passed in, the outcome (or None: keep waiting) out.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from ..atomicfile import write_atomic

T = TypeVar("T")
INSTALLED = "installed"
ROLLED_BACK = "rolled-back"


@dataclass(frozen=True)
class Pending:
    version: str
    slot: str
    from_version: str
    started: float


@dataclass(frozen=True)
class Outcome:
    result: str  # INSTALLED or ROLLED_BACK
    version: str
    slot: str
    from_version: str
    booted_slot: str
    at: float


def settle(pending: Pending, booted: str | None, healthy: bool,
           now: float | None = None) -> Outcome | None:
    """The outcome of ``pending`` given this boot, or None while the new slot still tries.

    Booted elsewhere than the update's slot: the boot loader fell back, the update is
    rolled back whether this (old) system is healthy or not.  Booted the update's slot and
    healthy: installed.  Booted it and not healthy: undecided; the failed boot used one
    try and the boot loader decides on the next boot.
    """
    at = time.time() if now is None else now
    if booted is not None and booted != pending.slot:
        return Outcome(ROLLED_BACK, pending.version, pending.slot, pending.from_version,
                       booted, at)
    if healthy:
        return Outcome(INSTALLED, pending.version, pending.slot, pending.from_version,
                       booted or pending.slot, at)
    return None


@dataclass(frozen=True)
class History:
    folder: Path

    @property
    def pending_file(self) -> Path:
        return self.folder / "pending.json"

    @property
    def last_file(self) -> Path:
        return self.folder / "last.json"

    def pending(self) -> Pending | None:
        return _load(self.pending_file, Pending)

    def last(self) -> Outcome | None:
        return _load(self.last_file, Outcome)

    def begin(self, pending: Pending) -> None:
        write_atomic(self.pending_file, json.dumps(asdict(pending)).encode(), 0o644)

    def abandon(self) -> None:
        """The install itself failed: nothing was switched, nothing to wait for."""
        self.pending_file.unlink(missing_ok=True)

    def finish(self, outcome: Outcome) -> None:
        write_atomic(self.last_file, json.dumps(asdict(outcome)).encode(), 0o644)
        self.pending_file.unlink(missing_ok=True)


def _load(path: Path, cls: type[T]) -> T | None:
    try:
        return cls(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # a torn or foreign file says nothing reliable
