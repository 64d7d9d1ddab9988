"""Memory per session: OCGate and ocserv with 1 and with N idle DTLS sessions, side by side.

Small routers have 512 MB to 1 GB, so what one more session costs matters more than what the
server costs at rest. The figure issue 19 sets a goal for is the *marginal* cost: the total
USS (memory only that process holds) of all the server's processes at N sessions minus the
total at 1, divided by N - 1. It counts whatever a session makes main and the sec-mod grow,
too, not only its worker. Beside it: the fixed processes' USS (main, sec-mod and zygote;
ocserv's main and sec-mod) at N sessions, and the median worker's USS, PSS and RSS.
``--breakdown`` adds where a median worker's private memory sits (bench/smaps.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.smaps import private_by_kind
from tests.support import harness
from tests.support.netns import TestNet

GOAL_MARGINAL_MB = 3.0
GOAL_FIXED_MB = 12.0


@dataclass
class ProcMem:
    pid: int
    worker: bool
    uss: int
    pss: int
    rss: int
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class Snapshot:
    kind: str
    sessions: int
    procs: list[ProcMem]
    connect_s: list[float]
    cookie_s: list[float] = field(default_factory=list)

    @property
    def workers(self) -> list[ProcMem]:
        return [p for p in self.procs if p.worker]

    @property
    def total_uss(self) -> int:
        return sum(p.uss for p in self.procs)

    @property
    def fixed_uss(self) -> int:
        return sum(p.uss for p in self.procs if not p.worker)

    def median(self, attr: str) -> float:
        values = [getattr(p, attr) for p in self.workers]
        return statistics.median(values) if values else float("nan")


def measure(kind: str, sessions: int, settle: float = 2.0,
            env: dict[str, str] | None = None) -> Snapshot:
    """Start ``kind``, connect ``sessions`` openconnect clients with DTLS up, let them sit
    ``settle`` seconds, and read every server process's memory."""
    with TestNet() as net, tempfile.TemporaryDirectory(prefix="ocg-mem-", dir="/tmp") as d:
        users = {f"user{i}": f"pw-{i}-secret" for i in range(sessions)}
        files = harness.make_server_files(
            Path(d), net, users=users,
            extra_conf=[f"max-clients = {max(16, sessions + 8)}"])
        server = harness.Server(net, files, harness.server_command(kind))
        with _environ(env or {}):
            server.start()
        main_pid = server.pid
        if main_pid is None:  # psutil.Process(None) would measure this process instead
            raise RuntimeError(f"{kind} did not start")
        clients = []
        connect_s = []
        try:
            for name, password in users.items():
                client = harness.Client(net, files, name=name)
                clients.append(client)
                t0 = time.monotonic()
                if not client.connect(name, password, no_dtls=False, timeout=30):
                    raise RuntimeError(f"{name} could not connect:\n{client.log[-2000:]}")
                connect_s.append(time.monotonic() - t0)
                if not client.wait_dtls(15):
                    raise RuntimeError(f"{name}: DTLS did not come up:\n{client.log[-2000:]}")
            time.sleep(settle)
            snap = Snapshot(kind, sessions, _read(kind, main_pid), connect_s)
            if sessions == 1:  # after the reading: these sessions must not be counted
                snap.cookie_s = _cookie_connects(net, files, *next(iter(users.items())))
            return snap
        finally:
            for client in clients:
                client.close()
            server.stop()


def _cookie_connects(net: TestNet, files: harness.ServerFiles, user: str, password: str,
                     rounds: int = 3) -> list[float]:
    """Seconds from starting openconnect with a fresh cookie (``--authenticate`` first,
    not timed) to the tunnel up, ``rounds`` times."""
    out = []
    for i in range(rounds):
        client = harness.Client(net, files, name=f"cookie{i}")
        try:
            cookie = client.authenticate(user, password)["COOKIE"]
            t0 = time.monotonic()
            if not client.connect_with_cookie(cookie, no_dtls=False, timeout=30):
                raise RuntimeError(f"cookie connect failed:\n{client.log[-2000:]}")
            out.append(time.monotonic() - t0)
        finally:
            client.close()
    return out


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """Variables added to os.environ while the server starts (it inherits them)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _read(kind: str, main_pid: int) -> list[ProcMem]:
    main = psutil.Process(main_pid)
    main_uid = main.uids().real
    children = main.children(recursive=True)
    out = []
    for proc in [main, *children]:
        try:
            name = proc.name()
            m = proc.memory_full_info()
            by_kind = private_by_kind(proc.pid)
        except (psutil.Error, OSError):  # gone in between
            continue
        if kind == "ocserv":
            worker = "worker" in name
        else:  # ours: workers run as run-as-user; main, the sec-mod and the zygote as root
            worker = proc.uids().real != main_uid
        out.append(ProcMem(proc.pid, worker, m.uss, m.pss, m.rss, by_kind))
    return out


def marginal_mb(one: Snapshot, many: Snapshot) -> float:
    return (many.total_uss - one.total_uss) / (many.sessions - one.sessions) / 2**20


def report(rows: dict[str, tuple[Snapshot, Snapshot]], breakdown: bool = False) -> str:
    names = list(rows)
    n = rows[names[0]][1].sessions
    mb = 2**20
    lines = [f"{'memory, MB':44}" + "".join(f"{k:>12}" for k in names) + "  goal"]

    def row(label: str, values: list[float], goal: str = "", fmt: str = "12.2f") -> None:
        lines.append(f"{label:44}" + "".join(f"{v:{fmt}}" for v in values) + goal)

    row(f"marginal USS per session (at {n} - at 1)/{n - 1}",
        [marginal_mb(*rows[k]) for k in names], f"  <= {GOAL_MARGINAL_MB} (OCGate)")
    row(f"fixed processes USS at {n} sessions", [rows[k][1].fixed_uss / mb for k in names],
        f"  <= {GOAL_FIXED_MB} (OCGate)")
    row("fixed processes USS at 1 session", [rows[k][0].fixed_uss / mb for k in names])
    row(f"total USS at {n} sessions", [rows[k][1].total_uss / mb for k in names])
    for attr in ("uss", "pss", "rss"):
        row(f"median worker {attr.upper()} at {n} sessions",
            [rows[k][1].median(attr) / mb for k in names])
    row("median connect time, s (password to tunnel up)",
        [statistics.median(rows[k][1].connect_s) for k in names], fmt="12.3f")
    row("median cookie connect time, s (1 session up)",
        [statistics.median(rows[k][0].cookie_s) for k in names], fmt="12.3f")
    if breakdown:
        for k in names:
            lines.append(f"\n{k}: private memory of the median worker / of each fixed "
                         f"process at {n} sessions, by mapping, KB")
            many = rows[k][1]
            workers = sorted(many.workers, key=lambda p: p.uss)
            show = ([workers[len(workers) // 2]] if workers else []) + [
                p for p in many.procs if not p.worker]
            for p in show:
                parts = ", ".join(f"{kind} {b // 1024}" for kind, b in
                                  sorted(p.by_kind.items(), key=lambda kv: -kv[1]) if b >= 4096)
                lines.append(f"  {'worker' if p.worker else 'fixed':6} pid {p.pid}: "
                             f"USS {p.uss // 1024}: {parts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=50, help="N (the many-sessions point)")
    p.add_argument("--servers", default="ocserv,ocgate", help="comma list: ocserv, ocgate")
    p.add_argument("--breakdown", action="store_true", help="private memory by mapping")
    args = p.parse_args(argv)
    if args.sessions < 2:
        p.error("--sessions must be at least 2")
    rows = {}
    for kind in [s.strip() for s in args.servers.split(",") if s.strip()]:
        print(f"# {kind}: 1 session, then {args.sessions}", file=sys.stderr, flush=True)
        rows[kind] = (measure(kind, 1), measure(kind, args.sessions))
    print(report(rows, args.breakdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
