"""route-add-cmd / route-del-cmd: the commands that route a user's ``iroute`` networks to
the TUN of their session (docs/protocol.md §8.2), run the way ocserv 1.1.6 runs them.

ocserv hands each command to ``/bin/sh -c`` (so redirections and pipes work) after
replacing its placeholders, scanned from left to right: ``%{R}`` and the legacy ``%R``
are the route as ocserv stores it (IPv4 as ``net/dotted-mask``), ``%{RI}`` the same route
in CIDR form, ``%{D}`` and the legacy ``%D`` the TUN device.  Any other ``%`` makes the
command unusable: ocserv then runs nothing and treats it as a failure, and so do we.  The
commands run one after another and main waits for each (as ocserv's main does), bounded
by ``ROUTE_CMD_TIMEOUT``.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess

from .scripts import format_route

log = logging.getLogger(__name__)

ROUTE_CMD_TIMEOUT = 10.0
SHELL = "/bin/sh"
#: the default when route-add-cmd is unset (ocserv itself then only warns)
DEFAULT_ADD = "ip route add %{R} dev %{D}"


def expand(template: str, route: str, device: str) -> str | None:
    """``template`` with ocserv's placeholders replaced; None if it has an unknown one.

    ``route`` is CIDR text (an iroute as the per-user file gave it).  Longest patterns
    are tried where they overlap, so ``%RI`` is ``%R`` then a literal ``I``, as in ocserv.
    """
    net = ipaddress.ip_network(route, strict=False)
    values = (("%{R}", format_route(net)), ("%R", format_route(net)), ("%{D}", device),
              ("%D", device), ("%{RI}", str(net)))
    out: list[str] = []
    i = 0
    while True:
        j = template.find("%", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        for pattern, value in values:
            if template.startswith(pattern, j):
                out.append(value)
                i = j + len(pattern)
                break
        else:
            return None


def run(kind: str, template: str, route: str, device: str) -> bool:
    """Run one route command through the shell; True when it exited with status 0."""
    cmd = expand(template, route, device)
    if cmd is None:
        log.error("%s %r has an unknown %% placeholder; not run (route=%s device=%s)",
                  kind, template, route, device)
        return False
    log.debug("running %s: %s", kind, cmd)
    try:
        done = subprocess.run([SHELL, "-c", cmd], stdin=subprocess.DEVNULL,  # noqa: S603
                              capture_output=True, text=True, timeout=ROUTE_CMD_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("%s %r failed: %s", kind, cmd, exc)
        return False
    if done.returncode != 0:
        log.error("%s %r exited with status %d: %s", kind, cmd, done.returncode,
                  done.stderr.strip()[:500])
        return False
    return True


def apply(add_cmd: str | None, del_cmd: str | None, routes: list[str], device: str) -> bool:
    """Add every route; if one fails, remove the ones already added and return False (the
    session is then refused, as ocserv denies access when its routes cannot be set)."""
    for n, route in enumerate(routes):
        if not run("route-add-cmd", add_cmd or DEFAULT_ADD, route, device):
            remove(del_cmd, routes[:n], device)
            return False
    return True


def remove(del_cmd: str | None, routes: list[str], device: str) -> None:
    """Run route-del-cmd for each route (before the TUN goes, as ocserv orders it)."""
    if not routes:
        return
    if not del_cmd:
        # ocserv warns likewise; the kernel drops the routes with the TUN device anyway
        log.warning("route-del-cmd is not set; iroutes of %s are left to the kernel", device)
        return
    for route in routes:
        run("route-del-cmd", del_cmd, route, device)
