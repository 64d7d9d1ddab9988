"""What a running server holds, read from outside: processes, fds, memory, TUN devices.

Leaks show up as a difference between two idle moments, so everything here is a
snapshot that :mod:`tests.soak.driver` takes once after a warm-up and once at the end.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import psutil

from tests.support.harness import PingResult, Server
from tests.support.netns import Netns


@dataclass(frozen=True)
class ProcSample:
    """One process's resources at one moment."""

    pid: int
    fds: int
    rss: int
    uss: int


@dataclass(frozen=True)
class ServerSample:
    """The server at an idle moment: its two long-lived processes and what is left over."""

    main: ProcSample
    secmod: ProcSample | None
    workers: list[int]  # children of main other than the sec-mod
    tun_devices: list[str]
    users: int
    sessions: int


def sample_process(pid: int) -> ProcSample:
    proc = psutil.Process(pid)
    mem = proc.memory_full_info()  # USS needs a walk of /proc/PID/smaps: idle moments only
    return ProcSample(pid, len(os.listdir(f"/proc/{pid}/fd")), mem.rss, mem.uss)


def secmod_pid(server: Server) -> int | None:
    """The sec-mod's pid as main reports it (occtl), so a restarted one is followed."""
    proc = server.occtl("-j", "show", "status", check=False)
    try:
        pid = int(json.loads(proc.stdout).get("Sec-mod PID") or 0)
    except (ValueError, AttributeError):
        return None
    return pid or None


def worker_pids(server: Server, exclude: set[int]) -> list[int]:
    """Children of main that are not the sec-mod or the zygote (which forks the workers):
    workers (and script jobs, if any)."""
    assert server.pid is not None
    try:
        children = psutil.Process(server.pid).children()
    except psutil.NoSuchProcess:
        return []
    return sorted(c.pid for c in children if c.pid not in exclude and c.status() != "zombie"
                  and c.name() != "ocgate-zygote")


def tun_devices(server: Server) -> list[str]:
    """TUN devices the server created in its namespace (named after ``device``)."""
    out = server.net.server_ns.ip("-o", "link", "show").stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
             if line.count(":") >= 2]
    return sorted(n for n in names if n.startswith(server.files.device))


def occtl_count(server: Server, *args: str) -> int:
    proc = server.occtl("-j", *args, check=False)
    try:
        rows = json.loads(proc.stdout or "[]")
    except ValueError:
        return -1
    return len(rows) if isinstance(rows, list) else -1


def sample_server(server: Server) -> ServerSample:
    assert server.pid is not None
    sm = secmod_pid(server)
    return ServerSample(
        main=sample_process(server.pid),
        secmod=sample_process(sm) if sm else None,
        workers=worker_pids(server, {sm} if sm else set()),
        tun_devices=tun_devices(server),
        users=occtl_count(server, "show", "users"),
        sessions=occtl_count(server, "show", "sessions", "all"),
    )


def ping_all(ns: Netns, addr: str, count: int = 2, deadline: float = 15.0) -> PingResult:
    """ICMP echo that waits for every reply up to ``deadline`` seconds.

    ``ping -W`` gives up on a missing reply after two round trips once one reply came
    back, which on a loaded 2-core machine turns a late reply into a "lost" one; the
    ``-w`` deadline makes ping wait for all ``count`` replies instead.
    """
    proc = ns.run(["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-w", str(int(deadline)),
                   addr], check=False, timeout=deadline + 10)
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", proc.stdout)
    sent, received = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", proc.stdout)
    return PingResult(sent, min(received, count), float(rtt.group(1)) if rtt else None)
