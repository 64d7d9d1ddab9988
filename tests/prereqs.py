"""Test prerequisites: a missing one FAILS the test and names what to install.

A skipped test proves nothing and reads like success in a summary line, so a tool,
library, device or privilege that a test needs is never a reason to skip: ``make test``
installs every Debian package and Python package the tests use (Makefile APT_PACKAGES,
pyproject's ``test`` extra) and runs as root.  Each helper returns what it found so a
test can use the checked path directly.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

HINT = "`make test` installs it"
VPNC_SCRIPT = Path("/usr/share/vpnc-scripts/vpnc-script")

# What the end-to-end rigs (namespaces, servers, clients, traffic) run, and its package.
E2E_COMMANDS = {
    "ip": "iproute2", "ss": "iproute2", "ping": "iputils-ping", "openconnect": "openconnect",
    "iperf3": "iperf3", "nft": "nftables", "sysctl": "procps",
    "ocserv": "ocserv", "occtl": "ocserv", "ocpasswd": "ocserv",
}


def fail(what: str) -> NoReturn:
    """Fail the running test (or fixture) without a traceback into this module."""
    pytest.fail(what, pytrace=False)


def missing_command(name: str, package: str) -> str | None:
    if shutil.which(name) is None:
        return f"the '{name}' command (apt package {package})"
    return None


def require_command(name: str, package: str) -> str:
    """The absolute path of ``name``; fails naming the Debian package when it is absent."""
    path = shutil.which(name)
    if path is None:
        fail(f"needs the '{name}' command (apt package {package}; {HINT})")
    return path


def require_path(path: Path | str, package: str) -> Path:
    path = Path(path)
    if not path.exists():
        fail(f"needs {path} (apt package {package}; {HINT})")
    return path


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        fail(f"needs root: {why} (run `make test` as root)")


def require_tun() -> None:
    require_root("tun devices and network namespaces")
    if not Path("/dev/net/tun").exists():
        fail("needs /dev/net/tun (load the 'tun' kernel module, or give the container the "
             "device)")


def require_module(name: str, pip_package: str | None = None) -> ModuleType:
    """Import ``name``; fails naming the pip package (pyproject lists it) when that fails."""
    try:
        return importlib.import_module(name)
    except (ImportError, OSError) as exc:
        fail(f"needs the Python module '{name}' (pip package {pip_package or name}, listed "
             f"in pyproject.toml; {HINT}): {exc}")


def require_library(soname: str, package: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(soname)
    except OSError as exc:
        fail(f"needs the shared library {soname} (apt package {package}; {HINT}): {exc}")


def missing_e2e() -> list[str]:
    """Everything the end-to-end rigs need that this machine lacks (empty when all is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces, tun devices)")
    if not Path("/dev/net/tun").exists():
        missing.append("/dev/net/tun")
    missing += [m for name, package in E2E_COMMANDS.items()
                if (m := missing_command(name, package))]
    if not VPNC_SCRIPT.exists():
        missing.append(f"{VPNC_SCRIPT} (apt package vpnc-scripts)")
    return missing


def require_e2e() -> None:
    missing = missing_e2e()
    if missing:
        fail("end-to-end tests need " + ", ".join(missing) + f"; {HINT}")


def needs(check: Callable[[], object]) -> pytest.MarkDecorator:
    """Mark a test (or a module, via ``pytestmark``) as needing ``check()`` to pass first.

    tests/conftest.py runs every such check at set-up; a failing one fails the test.
    """
    return pytest.mark.prereq.with_args(check)


def needs_command(name: str, package: str) -> pytest.MarkDecorator:
    return needs(lambda: require_command(name, package))
