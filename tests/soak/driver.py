"""Soak: many real openconnect clients log in, move traffic, log out, again and again.

Every client has its own namespace and link (tests/support/netns.py), its own account and
its own thread.  One cycle = password login, ping, a small transfer checked by digest,
logout (SIGINT: openconnect sends BYE).  After the warm-up cycles of every client the
server is sampled at rest (the baseline), again half-way and after the last cycle; what
the sessions left behind (leases, TUN devices, workers, fds, memory) shows up as a
difference.

``python3 -m tests.soak.driver --clients 50 --cycles 20`` (``make soak``) prints the
summary table and exits non-zero when a check fails; tests/e2e/test_soak.py runs a
bounded version inside ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import random
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.soak import probe
from tests.soak.nsock import DigestSink, digest_roundtrip
from tests.support import harness
from tests.support.netns import Link, TestNet, sweep_stale
from tests.support.workdir import make_workdir, remove_workdir

log = logging.getLogger("ocgate.soak")

MAX_MEMORY_GROWTH = 0.10  # after warm-up; Python's allocator keeps some slack
SETTLE_TIMEOUT = 30.0  # for the server to end every session once the clients are gone


@dataclass
class SoakConfig:
    """Knobs of one run; the defaults are ``make soak``'s."""

    clients: int = 50
    cycles: int = 20
    transfer_bytes: int = 64 * 1024
    ping_count: int = 2
    stagger: float = 0.25  # seconds between the first logins of consecutive clients
    concurrent_logins: int = 6  # logins in flight at once: keeps 2 cores responsive
    # the first cycle ramps up (staggered starts), so the baseline is taken after the
    # second, the first one at full concurrency: caches and allocator arenas have then
    # grown to what this load needs, and what grows after that is what the soak is after
    warmup_cycles: int = 2
    dtls_every: int = 3  # every n-th client keeps DTLS on (0: TLS only)
    connect_timeout: float = 90.0
    workdir: Path | None = None
    keep: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.clients <= 64:
            raise ValueError("clients must be 1..64 (one /30 link each in a /24)")
        if not 1 <= self.warmup_cycles < self.cycles:
            raise ValueError("cycles must be more than warmup_cycles (>= 1)")


@dataclass
class Failure:
    client: str
    cycle: int
    step: str
    detail: str


@dataclass
class ClientTally:
    name: str
    cycles_done: int = 0
    addresses: set[str] = field(default_factory=set)
    connect_seconds: list[float] = field(default_factory=list)


@dataclass
class SoakReport:
    """Everything the run measured; :meth:`problems` decides pass or fail."""

    config: SoakConfig
    seconds: float
    tallies: list[ClientTally]
    failures: list[Failure]
    baseline: probe.ServerSample
    final: probe.ServerSample
    server_alive: bool
    midway: probe.ServerSample | None = None

    @property
    def pool_size(self) -> int:
        """Addresses the soak's pool can lease at once."""
        mask = ipaddress.IPv4Address(tight_pool_netmask(self.config.clients))
        return (~int(mask) & 0xFFFFFFFF) + 1 - 3

    @property
    def cycles_done(self) -> int:
        return sum(t.cycles_done for t in self.tallies)

    @staticmethod
    def growth(before: int, after: int) -> float:
        return (after - before) / before if before else 0.0

    def problems(self) -> list[str]:
        b, f = self.baseline, self.final
        out = []
        if not self.server_alive:
            out.append("the server died")
        if self.failures:
            out.append(f"{len(self.failures)} failed steps")
        if self.cycles_done != self.config.clients * self.config.cycles:
            out.append(f"only {self.cycles_done} of "
                       f"{self.config.clients * self.config.cycles} cycles completed")
        if f.users or f.sessions:
            out.append(f"leaked sessions: {f.users} users, {f.sessions} sessions in occtl")
        if f.tun_devices:
            out.append(f"leaked TUN devices: {f.tun_devices}")
        if f.workers:
            out.append(f"leftover worker processes: {f.workers}")
        if f.main.fds > b.main.fds:
            out.append(f"main fds grew {b.main.fds} -> {f.main.fds}")
        if b.secmod and f.secmod and f.secmod.fds > b.secmod.fds:
            out.append(f"sec-mod fds grew {b.secmod.fds} -> {f.secmod.fds}")
        for label, before, _mid, after in self._memory_rows():
            if self.growth(before, after) >= MAX_MEMORY_GROWTH:
                out.append(f"{label} grew {self.growth(before, after):.1%}")
        return out

    def _memory_rows(self) -> list[tuple[str, int, int | None, int]]:
        """(label, after warm-up, half-way or None, at the end) for RSS and USS."""
        b, m, f = self.baseline, self.midway, self.final
        rows: list[tuple[str, int, int | None, int]] = [
            ("main RSS", b.main.rss, m.main.rss if m else None, f.main.rss),
            ("main USS", b.main.uss, m.main.uss if m else None, f.main.uss)]
        if b.secmod and f.secmod:
            ms = m.secmod if m and m.secmod and m.secmod.pid == f.secmod.pid else None
            rows += [("sec-mod RSS", b.secmod.rss, ms.rss if ms else None, f.secmod.rss),
                     ("sec-mod USS", b.secmod.uss, ms.uss if ms else None, f.secmod.uss)]
        return rows

    def render(self) -> str:
        c, b, f = self.config, self.baseline, self.final
        moved = sum(1 for t in self.tallies if len(t.addresses) > 1)
        logins = sorted(s for t in self.tallies for s in t.connect_seconds)
        p50 = logins[len(logins) // 2] if logins else 0.0
        p95 = logins[int(len(logins) * 0.95)] if logins else 0.0
        rows: list[tuple[str, str, str]] = [
            ("clients x cycles", "", f"{c.clients} x {c.cycles} = {self.cycles_done} done"),
            ("wall time", "", f"{self.seconds:.0f} s"),
            ("login time p50 / p95", "", f"{p50:.2f} s / {p95:.2f} s"),
            ("failed steps", "", str(len(self.failures))),
            ("clients whose address moved", "", f"{moved} (pool of {self.pool_size})"),
            ("occtl users / sessions", f"{b.users} / {b.sessions}", f"{f.users} / {f.sessions}"),
            ("TUN devices (server ns)", str(len(b.tun_devices)), str(len(f.tun_devices))),
            ("worker processes", str(len(b.workers)), str(len(f.workers))),
            ("main fds", str(b.main.fds), str(f.main.fds)),
            ("sec-mod fds", _fds(b.secmod), _fds(f.secmod)),
        ]
        for label, before, mid, after in self._memory_rows():
            half = f"; half-way {self.growth(before, mid):+.1%}" if mid is not None else ""
            rows.append((label, _mib(before),
                         f"{_mib(after)} ({self.growth(before, after):+.1%}{half})"))
        width = max(len(r[0]) for r in rows)
        lines = [f"OCGate soak ({'PASS' if not self.problems() else 'FAIL'})",
                 f"{'':{width}}  {f'after cycle {c.warmup_cycles}':>14}  at the end"]
        lines += [f"{label:{width}}  {before:>14}  {after}" for label, before, after in rows]
        for problem in self.problems():
            lines.append(f"PROBLEM: {problem}")
        for failure in self.failures[:20]:
            lines.append(f"  {failure.client} cycle {failure.cycle} {failure.step}: "
                         f"{failure.detail}")
        return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _fds(sample: probe.ProcSample | None) -> str:
    return str(sample.fds) if sample else "-"


def tight_pool_netmask(clients: int) -> str:
    """The smallest pool that holds every client at once (network, broadcast and the
    server's own address taken): a lease that is not returned at logout soon makes
    logins fail for want of an address, which the soak counts."""
    size = 4
    while size - 3 < clients:
        size *= 2
    return str(ipaddress.IPv4Network(f"0.0.0.0/{32 - size.bit_length() + 1}").netmask)


class SoakRun:
    """One server, ``clients`` namespaces, one thread per client."""

    def __init__(self, cfg: SoakConfig, net: TestNet, workdir: Path) -> None:
        self.cfg = cfg
        self.net = net
        self.users = {f"soak{i:02d}": "s-" + secrets.token_urlsafe(9)
                      for i in range(cfg.clients)}
        self.files = harness.make_server_files(
            workdir, net, users=self.users,
            extra_conf=["max-clients = 0", "auth-timeout = 60", "dpd = 30",
                        f"ipv4-netmask = {tight_pool_netmask(cfg.clients)}"])
        self.server = harness.Server(net, self.files)
        self.login_gate = threading.Semaphore(cfg.concurrent_logins)
        self.lock = threading.Lock()
        self.failures: list[Failure] = []
        # all clients finish the warm-up cycle, the server is sampled, then all go on
        self.warmed = threading.Barrier(cfg.clients + 1)
        self.resume = threading.Barrier(cfg.clients + 1)
        # idle samples after these cycles: the warm-up and half-way, to tell a leak (grows
        # in both halves) from caches and allocator arenas filling up (first half only)
        self.pauses = sorted({cfg.warmup_cycles, max(cfg.warmup_cycles, cfg.cycles // 2)})
        self.sink: DigestSink | None = None

    def fail(self, client: str, cycle: int, step: str, detail: str) -> None:
        log.warning("soak: %s cycle %d %s failed: %s", client, cycle, step, detail)
        with self.lock:
            self.failures.append(Failure(client, cycle, step, detail))

    def execute(self) -> SoakReport:
        started = time.monotonic()
        while len(self.net.links) < self.cfg.clients:
            self.net.add_client()
        self.server.start(timeout=60)
        self.sink = DigestSink(self.net.server_ns.name, self.net.inside_ip)
        try:
            clients = [harness.Client(self.net, self.files, link=link, name=f"soak{i:02d}")
                       for i, link in enumerate(self.net.links)]
            tallies = [ClientTally(c.name) for c in clients]
            threads = [threading.Thread(target=self._client_loop, args=(i, c, t),
                                        name=c.name, daemon=True)
                       for i, (c, t) in enumerate(zip(clients, tallies, strict=True))]
            for thread in threads:
                thread.start()
            samples = []
            for _ in self.pauses:
                samples.append(self._at_barrier(self.warmed, self._settled_sample))
                log.info("soak: paused; main %d fds, sec-mod %s fds",
                         samples[-1].main.fds, _fds(samples[-1].secmod))
                self._at_barrier(self.resume, lambda: None)
            baseline, midway = samples[0], samples[-1]
            for thread in threads:
                thread.join()
            for client in clients:
                client.close()
            final = self._settled_sample()
            alive = self.server.running
        finally:
            self.sink.close()
            self.server.stop(timeout=15)
        return SoakReport(self.cfg, time.monotonic() - started, tallies, self.failures,
                          baseline, final, alive, midway)

    def _at_barrier(self, barrier: threading.Barrier,
                    action: Callable[[], probe.ServerSample | None]):
        """Wait for every client thread, then act; a broken barrier must not hang the run."""
        timeout = self.cfg.clients * (self.cfg.connect_timeout + 30)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout)
        try:
            return action()
        except BaseException:
            barrier.abort()
            raise

    def _settled_sample(self) -> probe.ServerSample:
        """A sample once every session has ended on the server (or SETTLE_TIMEOUT passed).

        fds are taken when two consecutive samples agree, so that an occtl connection
        still being closed is not mistaken for a leak.
        """
        deadline = time.monotonic() + SETTLE_TIMEOUT
        previous: probe.ServerSample | None = None
        while True:
            sample = probe.sample_server(self.server)
            quiet = not (sample.users or sample.sessions or sample.workers
                         or sample.tun_devices)
            steady = previous is not None and (previous.main.fds, _fds(previous.secmod)) == (
                sample.main.fds, _fds(sample.secmod))
            if (quiet and steady) or time.monotonic() > deadline:
                return sample
            previous = sample
            time.sleep(0.5)

    def _client_loop(self, index: int, client: harness.Client, tally: ClientTally) -> None:
        time.sleep(index * self.cfg.stagger)
        for cycle in range(1, self.cfg.cycles + 1):
            try:
                self._cycle(index, client, tally, cycle)
            except Exception as exc:  # noqa: BLE001 - a soak counts failures, it goes on
                self.fail(client.name, cycle, "cycle", f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(Exception):
                    client.close()
            if cycle in self.pauses:
                self._at_barrier(self.warmed, lambda: None)
                self._at_barrier(self.resume, lambda: None)
            time.sleep(random.uniform(0.0, 0.5))  # no lock-step reconnects

    def _cycle(self, index: int, client: harness.Client, tally: ClientTally,
               cycle: int) -> None:
        dtls = bool(self.cfg.dtls_every) and index % self.cfg.dtls_every == 0
        restore_server_route(client.link)
        with self.login_gate:
            began = time.monotonic()
            up = client.connect(client.name, self.users[client.name], no_dtls=not dtls,
                                timeout=self.cfg.connect_timeout)
            elapsed = time.monotonic() - began
        if not up:
            self.fail(client.name, cycle, "connect",
                      f"openconnect exited {client.returncode}: "
                      f"{harness.tail_lines(client.log, 3)}")
            return
        tally.connect_seconds.append(elapsed)
        tally.addresses.add(client.address())
        result = probe.ping_all(client.ns, self.net.inside_ip, count=self.cfg.ping_count)
        if not result.ok:
            self.fail(client.name, cycle, "ping", f"{result.received}/{result.sent} replies")
        assert self.sink is not None
        if not digest_roundtrip(client.ns.name, self.sink.address, self.cfg.transfer_bytes):
            self.fail(client.name, cycle, "transfer", "digest mismatch")
        code = client.disconnect(timeout=20)
        if code < 0:
            self.fail(client.name, cycle, "disconnect", f"openconnect needed signal {-code}")
            return
        tally.cycles_done += 1


def restore_server_route(link: Link) -> None:
    """vpnc-script's disconnect deletes the host route to the gateway it added on connect,
    and on an extra link that is the very /32 route netns.py set up to reach the server:
    put it back before each login (the first link reaches the server on-link)."""
    if link.server_ip != link.gateway_ip:
        link.ns.ip("route", "replace", f"{link.server_ip}/32", "via", link.gateway_ip,
                   "dev", link.client_if)


def run_soak(cfg: SoakConfig) -> SoakReport:
    """Build the namespaces, run, tear everything down; the report survives the teardown."""
    workdir = cfg.workdir or make_workdir()
    workdir.chmod(0o755)
    keep = cfg.keep
    try:
        with TestNet() as net:
            report = SoakRun(cfg, net, workdir).execute()
        keep = keep or bool(report.problems())  # the logs are what explains a failure
    finally:
        remove_workdir(workdir, keep=keep, tag="soak")
    return report


def _sigterm_as_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so that the namespaces are removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.soak.driver",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=SoakConfig.clients)
    parser.add_argument("--cycles", type=int, default=SoakConfig.cycles)
    parser.add_argument("--transfer-bytes", type=int, default=SoakConfig.transfer_bytes)
    parser.add_argument("--concurrent-logins", type=int,
                        default=SoakConfig.concurrent_logins)
    parser.add_argument("--warmup-cycles", type=int, default=SoakConfig.warmup_cycles)
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (server log, client logs)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print("the soak needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    sweep_stale()
    cfg = SoakConfig(clients=args.clients, cycles=args.cycles,
                     transfer_bytes=args.transfer_bytes,
                     concurrent_logins=args.concurrent_logins,
                     warmup_cycles=args.warmup_cycles, keep=args.keep)
    report = run_soak(cfg)
    print(report.render())
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
