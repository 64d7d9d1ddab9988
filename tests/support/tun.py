"""Python run inside a scratch network namespace, for the tun tests (root only).

:func:`run_in` runs a snippet with ``SETUP``'s helpers in the namespace and reads back the
one JSON document it prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def scratch_netns(prefix: str, *, ipv6: bool = False) -> Iterator[str]:
    """A throw-away network namespace (``prefix`` + random hex), deleted afterwards."""
    name = f"{prefix}{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        if ipv6:
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w",
                            "net.ipv6.conf.all.disable_ipv6=0",
                            "net.ipv6.conf.default.disable_ipv6=0"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_in(ns: str, code: str) -> Any:
    """Run SETUP + ``code`` with python in the namespace; it prints one JSON document."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", SETUP + textwrap.dedent(code)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


SETUP = """
import fcntl, json, os, select, socket, struct, subprocess
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from appliance.vpn.main.tun import configure_tun, link_exists, open_tun, remove_tun, set_mtu
from tests.support.packets import internet_checksum as checksum

def ip_json(*args):
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)

def read_packet(fd, timeout=3.0):
    select.select([fd], [], [], timeout)
    return os.read(fd, 65535)

"""
