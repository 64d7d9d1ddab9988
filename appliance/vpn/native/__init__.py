"""The worker's optional native per-packet core (_fastpath.c; docs/performance.md).

``fastpath`` is the compiled module, or None: not built (no compiler or libssl-dev at
install time, or another architecture's image), failed to load, or switched off with
OCGATE_NATIVE=0 (the reference path the tests and ``bench.compare``'s ocgate-python
variant compare against). The pure-Python path is complete on its own; the native one only
takes over the common case of each batch and hands everything else back to it. One log line
(``log_status``, at start) says which runs; main imports this before it forks, so workers
inherit the module loaded and OpenSSL initialised.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("OCGATE_NATIVE", "1") == "0":
        return None, "OCGATE_NATIVE=0"
    try:
        from . import _fastpath
    except ImportError as exc:
        return None, f"not built ({exc})"
    return _fastpath, ""


fastpath, why_not = _load()


def log_status() -> None:
    """The one line saying which data path the workers run (main logs it at start)."""
    if fastpath is None:
        log.info("native_datapath=off reason=%r (pure-Python data path)", why_not)
    else:
        log.info("native_datapath=on")


def aead(key: bytes, chacha: bool) -> object | None:
    """A native AEAD context keyed with ``key``, or None on the pure-Python path."""
    if fastpath is None:
        return None
    return fastpath.Aead(key, chacha)
