"""Polling until something holds: the one loop every test uses instead of a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; its last verdict."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, what: str = "the condition",
    step: float = 0.05,
) -> None:
    """:func:`wait_for` that fails the test, naming ``what`` it waited for."""
    assert wait_for(predicate, timeout, step), f"timed out waiting for {what}"
