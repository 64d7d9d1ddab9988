"""Many concurrent DTLS sessions moving traffic at once: OCGate and ocserv side by side.

Issue 19 asks for 100 concurrent DTLS sessions on the two cores, each moving traffic. This
connects N openconnect clients (DTLS up on each), then runs one bulk TCP flow per session
(bench/traffic.py: one process per side, each flow bound to its own tunnel device) for a
fixed time, up then down, and reports the aggregate goodput and the server's CPU seconds
(main, sec-mod and every worker, bench/rig.py) per GB. The client side shares the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.rig import cpu_delta, cpu_snapshot
from tests.support import harness
from tests.support.netns import TestNet

TRAFFIC = str(Path(__file__).with_name("traffic.py"))
PORT = 5301


def _wait_line(proc: subprocess.Popen[str], word: str, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if word in line:
            return
        if not line and proc.poll() is not None:
            break
    raise harness.HarnessError(f"traffic {word!r} not seen (exit {proc.poll()})")


def transfer(net: TestNet, main_pid: int, devices: list[str], direction: str,
             seconds: float) -> dict[str, float]:
    common = ["--ip", net.inside_ip, "--port", str(PORT), "--direction", direction,
              "--seconds", str(seconds)]
    server = net.server_ns.popen([sys.executable, TRAFFIC, "serve", *common,
                                  "--flows", str(len(devices))],
                                 stdout=subprocess.PIPE, text=True)
    client = None
    try:
        _wait_line(server, "listening", 10)
        before = cpu_snapshot(main_pid)
        t0 = time.monotonic()
        client = net.primary.ns.popen([sys.executable, TRAFFIC, "connect", *common,
                                       "--devices", ",".join(devices)],
                                      stdout=subprocess.PIPE, text=True)
        out_c, _ = client.communicate(timeout=seconds + 60)
        out_s, _ = server.communicate(timeout=30)
        elapsed = time.monotonic() - t0
        after = cpu_snapshot(main_pid)
    finally:
        for proc in (server, client):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    report = json.loads((out_s if direction == "up" else out_c).strip().splitlines()[-1])
    cpu_s, _ = cpu_delta(before, after)
    gbytes = report["bytes"] / 1e9
    return {"mbps": report["bytes"] * 8 / 1e6 / max(report["seconds"], 1e-9),
            "cpu_s_per_gb": cpu_s / gbytes if gbytes else float("nan"),
            "server_cpu_pct": 100 * cpu_s / elapsed}


def measure(kind: str, sessions: int, seconds: float) -> dict[str, dict[str, float]]:
    with TestNet() as net, tempfile.TemporaryDirectory(prefix="ocg-many-", dir="/tmp") as d:
        users = {f"user{i}": f"pw-{i}-secret" for i in range(sessions)}
        files = harness.make_server_files(Path(d), net, users=users,
                                          extra_conf=[f"max-clients = {sessions + 8}"])
        server = harness.Server(net, files, harness.server_command(kind)).start()
        assert server.pid is not None
        clients: list[harness.Client] = []
        try:
            for name, password in users.items():
                client = harness.Client(net, files, name=name)
                clients.append(client)
                if not client.connect(name, password, no_dtls=False,
                                      extra_args=["--compression=none"], timeout=30):
                    raise harness.HarnessError(f"{kind}: {name} did not connect:\n"
                                               f"{harness.tail_lines(client.log)}")
            for client in clients:
                if not client.wait_dtls(20):
                    raise harness.HarnessError(f"{kind}: DTLS did not come up:\n"
                                               f"{harness.tail_lines(client.log)}")
            time.sleep(1)
            devices = [c.tun for c in clients]
            return {d: transfer(net, server.pid, devices, d, seconds) for d in ("up", "down")}
        finally:
            for client in clients:
                client.close()
            server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10, help="per direction")
    p.add_argument("--servers", default="ocserv,ocgate")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.many needs root (network namespaces)", file=sys.stderr)
        return 1
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    rows = {}
    for kind in names:
        print(f"# {kind}: {args.sessions} DTLS sessions, {args.seconds:g} s per direction",
              file=sys.stderr, flush=True)
        rows[kind] = measure(kind, args.sessions, args.seconds)
    print(f"{args.sessions} concurrent DTLS sessions, one TCP flow each"
          + "".join(f"{n:>12}" for n in names)
          + ("      ratio" if "ocserv" in rows and len(names) > 1 else ""))
    for direction in ("up", "down"):
        for key, label in (("mbps", "aggregate Mbit/s"), ("cpu_s_per_gb", "server CPU-s/GB"),
                           ("server_cpu_pct", "server CPU, % of a core")):
            line = f"{direction:<5}{label:<39}" + "".join(
                f"{rows[n][direction][key]:12.2f}" for n in names)
            if "ocserv" in rows:
                for n in names:
                    if n != "ocserv":
                        line += f"{rows[n][direction][key] / rows['ocserv'][direction][key]:11.2f}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
