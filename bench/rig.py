"""The bench's measuring rig, built on the e2e harness (tests/support): one server (ocserv or
OCGate) in its namespaces, real openconnect in a client namespace, iperf3 to the inside host.

What it measures for each direction and channel: iperf3's goodput, and the CPU time of every
process of the server (main, sec-mod, workers: the server's process and all its descendants,
from /proc) over the iperf3 run, per GB moved. The client and iperf3 share the machine, so
the figures are only comparable inside one run; ``bench.compare`` interleaves servers round by
round so that drifting load hits all alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.support import harness
from tests.support.netns import TestNet
from tests.support.workdir import workdir as new_workdir

IPERF_PORT = 5201
DIRECTIONS = ("up", "down")  # up: client -> inside host (iperf3), down: iperf3 -R


@dataclass(frozen=True)
class Variant:
    """One server set-up: ocserv or OCGate, plus what differs from the plain start."""

    name: str
    kind: str = "ocgate"  # "ocserv" | "ocgate"
    env: Mapping[str, str] = field(default_factory=dict)  # added to the server's environment
    extra_conf: Sequence[str] = ()  # more ocserv.conf lines
    prefix: Sequence[str] = ()  # e.g. ("taskset", "-c", "1")
    sysctls: Mapping[str, str] = field(default_factory=dict)  # set for the run, then restored


@dataclass
class Sample:
    """One iperf3 run through the tunnel."""

    mbps: float
    bytes: int
    seconds: float
    server_cpu_s: float
    cpu_by_process: dict[str, float]
    retransmits: int | None

    @property
    def cpu_s_per_gb(self) -> float:
        return self.server_cpu_s / (self.bytes / 1e9) if self.bytes else float("nan")


def server_pids(root: int) -> list[int]:
    """The server's process and every descendant (ocserv: main, sec-mod, workers; OCGate:
    main, sec-mod, workers and whatever else it forks)."""
    try:
        proc = psutil.Process(root)
        return [root, *(p.pid for p in proc.children(recursive=True))]
    except psutil.Error:
        return []


def cpu_snapshot(root: int) -> dict[int, tuple[str, float]]:
    """(name, user + system CPU seconds, all threads) of the server and its descendants."""
    out = {}
    for pid in server_pids(root):
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                times = proc.cpu_times()
                out[pid] = (proc.name(), times.user + times.system)
        except psutil.Error:  # gone in between
            continue
    return out


def cpu_delta(before: dict[int, tuple[str, float]],
              after: dict[int, tuple[str, float]]) -> tuple[float, dict[str, float]]:
    """Total CPU seconds between two snapshots and the split by process name. A process that
    started in between counts from zero; one that ended in between is lost (none do during a
    transfer: the session's worker lives through it)."""
    by_name: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        by_name[name] = by_name.get(name, 0.0) + seconds - before.get(pid, (name, 0.0))[1]
    return sum(by_name.values()), by_name


class BenchServer:
    """A running server of one :class:`Variant` with an iperf3 server on the inside host."""

    def __init__(self, variant: Variant, net: TestNet, workdir: Path) -> None:
        self.variant = variant
        self.net = net
        self.password = secrets.token_urlsafe(12)
        self.files = harness.make_server_files(workdir, net, users={"bench": self.password},
                                               extra_conf=list(variant.extra_conf))
        template = harness.server_command(variant.kind)
        if variant.prefix:
            template = shlex.join(variant.prefix) + " " + template
        self.server = harness.Server(net, self.files, template)
        self.iperf: subprocess.Popen[bytes] | None = None
        self._clients = 0

    def start(self) -> None:
        saved = dict(os.environ)
        os.environ.update(self.variant.env)
        try:
            self.server.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.iperf = self.net.server_ns.popen(
            ["iperf3", "-s", "-B", self.net.inside_ip, "-p", str(IPERF_PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.net.server_ns.tcp_listening(IPERF_PORT):
            if time.monotonic() > deadline or self.iperf.poll() is not None:
                raise harness.HarnessError("iperf3 server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.iperf is not None and self.iperf.poll() is None:
            self.iperf.terminate()
            self.iperf.wait(5)
        self.server.stop()

    @contextlib.contextmanager
    def session(self, mode: str) -> Iterator[tuple[harness.Client, float]]:
        """An openconnect session carried by ``mode`` ("dtls" or "tls"); yields the client and
        its connect time (start to tunnel up, seconds)."""
        self._clients += 1
        client = harness.Client(self.net, self.files, name=f"bench{self._clients}")
        t0 = time.monotonic()
        ok = client.connect("bench", self.password, no_dtls=mode == "tls",
                            extra_args=["--compression=none"], timeout=30)
        connect_s = time.monotonic() - t0
        try:
            if not ok:
                raise harness.HarnessError(f"{self.variant.name}: openconnect did not connect:\n"
                                           f"{harness.tail_lines(client.log)}")
            if mode == "dtls" and not client.wait_dtls(15):
                raise harness.HarnessError(f"{self.variant.name}: DTLS did not come up:\n"
                                           f"{harness.tail_lines(client.log)}")
            if mode == "dtls":
                time.sleep(0.5)  # openconnect moves traffic to DTLS right after the handshake
            yield client, connect_s
        finally:
            client.close()

    def transfer(self, direction: str, seconds: float, congestion: str = "cubic") -> Sample:
        """One iperf3 run from the client namespace to the inside host through the tunnel."""
        argv = ["iperf3", "-c", self.net.inside_ip, "-p", str(IPERF_PORT), "-t", str(seconds),
                "-J", "--connect-timeout", "5000", *(["-R"] if direction == "down" else []),
                *(["-C", congestion] if congestion else [])]
        assert self.server.pid is not None
        before = cpu_snapshot(self.server.pid)
        t0 = time.monotonic()
        proc = self.net.client_ns.run(argv, timeout=seconds + 30, check=False)
        elapsed = time.monotonic() - t0
        after = cpu_snapshot(self.server.pid)
        try:
            end = json.loads(proc.stdout)["end"]
            received = end["sum_received"]
        except (ValueError, KeyError) as exc:
            raise harness.HarnessError(f"iperf3 {direction} failed ({proc.returncode}): "
                                       f"{proc.stdout[-500:]} {proc.stderr[-500:]}") from exc
        cpu_s, by_comm = cpu_delta(before, after)
        return Sample(mbps=received["bits_per_second"] / 1e6, bytes=int(received["bytes"]),
                      seconds=elapsed, server_cpu_s=cpu_s, cpu_by_process=by_comm,
                      retransmits=end.get("sum_sent", {}).get("retransmits"))


@contextlib.contextmanager
def sysctls(values: Mapping[str, str]) -> Iterator[None]:
    """Host sysctls for one run (socket buffer defaults are not per namespace), restored."""
    paths = {k: Path("/proc/sys", k.replace(".", "/")) for k in values}
    saved = {k: p.read_text().strip() for k, p in paths.items()}
    try:
        for key, value in values.items():
            paths[key].write_text(value)
        yield
    finally:
        for key, value in saved.items():
            paths[key].write_text(value)


@contextlib.contextmanager
def running(variant: Variant) -> Iterator[BenchServer]:
    """Namespaces, files and a started server of ``variant``; all removed on exit."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(sysctls(variant.sysctls))
        workdir = stack.enter_context(new_workdir())
        net = stack.enter_context(TestNet())
        bench = BenchServer(variant, net, workdir)
        try:
            bench.start()
            yield bench
        except BaseException:
            print(f"# {variant.name} server log:\n{harness.tail_lines(bench.server.log, 40)}",
                  file=sys.stderr)
            raise
        finally:
            bench.stop()


def measure(variant: Variant, modes: Sequence[str], seconds: float,
            on_session: Any = None) -> dict[str, Any]:
    """One round of ``variant``: for each mode a fresh session, up then down.

    Returns ``{mode: {"connect_s": .., "up": Sample, "down": Sample}}``. ``on_session``
    (optional) is called as ``on_session(bench, mode, direction, run)`` where ``run()``
    performs the transfer: the profiler wraps it.
    """
    out: dict[str, Any] = {}
    with running(variant) as bench:
        for mode in modes:
            with bench.session(mode) as (_client, connect_s):
                row: dict[str, Any] = {"connect_s": connect_s}
                for direction in DIRECTIONS:
                    def run(direction: str = direction) -> Sample:
                        return bench.transfer(direction, seconds)
                    row[direction] = (on_session(bench, mode, direction, run)
                                      if on_session is not None else run())
                out[mode] = row
    return out
