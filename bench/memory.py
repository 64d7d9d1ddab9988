"""Per-session memory: N openconnect sessions against OCGate and ocserv, side by side.

Small routers have 512 MB to 1 GB, so what one more session costs matters more than what the
server costs at rest. We report USS (memory only that process holds: what the session really
costs) and PSS of each worker, and the fixed cost of the other processes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

from tests.support import harness
from tests.support.netns import TestNet


def measure(kind: str, sessions: int) -> dict[str, float]:
    with TestNet() as net, tempfile.TemporaryDirectory(prefix="ocg-mem-", dir="/tmp") as d:
        users = {f"user{i}": f"pw-{i}-secret" for i in range(sessions)}
        files = harness.make_server_files(Path(d), net, users=users)
        server = harness.Server(net, files, harness.server_command(kind)).start()
        main_pid = server.pid
        if main_pid is None:  # psutil.Process(None) would measure this process instead
            raise RuntimeError(f"{kind} did not start")
        clients = []
        try:
            for name, password in users.items():
                client = harness.Client(net, files, name=name)
                if not client.connect(name, password, no_dtls=False):
                    raise RuntimeError(f"{name} could not connect:\n{client.log[-2000:]}")
                clients.append(client)
            procs = psutil.Process(main_pid).children(recursive=True) + [
                psutil.Process(main_pid)]
            infos = {p.pid: (p.name(), p.memory_full_info()) for p in procs}
            workers = [m for pid, (name, m) in infos.items()
                       if len(procs) > 2 and _is_worker(kind, pid, name, main_pid, procs)]
            others = [m for pid, (name, m) in infos.items()
                      if not _is_worker(kind, pid, name, main_pid, procs)]
            return {
                "sessions": sessions,
                "worker_uss_kb": statistics.median(m.uss for m in workers) / 1024,
                "worker_pss_kb": statistics.median(m.pss for m in workers) / 1024,
                "worker_rss_kb": statistics.median(m.rss for m in workers) / 1024,
                "fixed_uss_kb": sum(m.uss for m in others) / 1024,
                "workers": len(workers),
            }
        finally:
            for client in clients:
                client.close()
            server.stop()


def _is_worker(kind: str, pid: int, name: str, main_pid: int,
               procs: list[psutil.Process]) -> bool:
    if pid == main_pid:
        return False
    if kind == "ocserv":
        return "worker" in name
    # ours: main's children are the sec-mod (the oldest) and the workers
    children = sorted((p for p in procs if p.pid != main_pid), key=lambda p: p.create_time())
    return bool(children) and pid != children[0].pid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=8)
    args = p.parse_args(argv)
    rows = {kind: measure(kind, args.sessions) for kind in ("ocserv", "ocgate")}
    print(f"{'':22} {'ocserv':>10} {'ocgate':>10}")
    for key in ("worker_uss_kb", "worker_pss_kb", "worker_rss_kb", "fixed_uss_kb", "workers"):
        print(f"{key:22} {rows['ocserv'][key]:10.0f} {rows['ocgate'][key]:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
