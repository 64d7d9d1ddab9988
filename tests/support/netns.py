"""Throw-away network namespaces for end-to-end VPN tests.

Every address the tests use lives inside namespaces created here; the host's
own interfaces are never touched (the host sits on 192.0.2.0/24, so any stray
route there would break the machine's connectivity).  Topology of a
:class:`TestNet`::

    client ns  ocgc0 198.18.X.2/30 <--veth--> ocgs0 198.18.X.1/30  server ns
    (2nd)      ocgc1 198.18.X.6/30 <--veth--> ocgs1 198.18.X.5/30  (same server ns)
                                                lo: 198.51.100.1/32 ("inside" host)

The veth pairs are created *inside* the server namespace with the peer moved
straight into the client namespace, so nothing ever appears in the host
namespace, not even for a moment.  Extra client namespaces reach the server at
the primary ``server_ip`` through a /32 host route, so every client uses the
same URL.  No namespace has a default route.

Names are ``ocg-<role><pid>-<random>``: the pid lets :func:`sweep_stale` tell a
leftover of a killed run from a namespace of a run that is still going on.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psutil

log = logging.getLogger(__name__)

PREFIX = "ocg-"
NETNS_RUN_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
_NAME_RE = re.compile(rf"^{PREFIX}[a-z]+(\d+)-[0-9a-f]+$")

#: 198.18.0.0/15 (RFC 2544 benchmarking) holds 512 /24s; each TestNet takes one.
LINK_SUPERNET = ipaddress.ip_network("198.18.0.0/15")
INSIDE_IP = "198.51.100.1"
INSIDE_ROUTE = "198.51.100.0/24"
INSIDE_DNS = "198.51.100.53"
VPN_POOL = "203.0.113.0/24"
#: IPv6 (TestNet(ipv6=True) only): documentation prefix 2001:db8::/32, never routed anywhere.
INSIDE_IP6 = "2001:db8:5::1"
INSIDE_ROUTE6 = "2001:db8:5::/48"
LINK6_PREFIX = "2001:db8:1"  # + ":<block*64+index>::/64" per client link

#: Namespaces this process created and has not deleted yet (for the atexit hook).
_LIVE: dict[str, Netns] = {}


class NetnsError(RuntimeError):
    """A namespace could not be created, used or removed."""


class CommandError(NetnsError):
    """A command run in a namespace failed; carries its output for the test report."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"{' '.join(self.cmd)} exited with {returncode}: {stderr.strip() or stdout.strip()}"
        )


def _run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def unique_name(role: str) -> str:
    """Namespace name carrying our pid, so a concurrent run's namespaces are never swept."""
    if not role.isalpha() or not role.islower():
        raise ValueError(f"role must be lower-case letters, got {role!r}")
    return f"{PREFIX}{role}{os.getpid()}-{secrets.token_hex(3)}"


class Netns:
    """One named network namespace (``ip netns``) and the processes run inside it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    # ------------------------------------------------------------ life cycle
    @classmethod
    def create(cls, role: str = "x", *, private_resolv_conf: bool = False) -> Netns:
        """Create a fresh namespace with ``lo`` up.

        ``private_resolv_conf`` places /etc/netns/<name>/resolv.conf, which
        ``ip netns exec`` bind-mounts over /etc/resolv.conf: vpnc-script can
        then never rewrite the host's resolver configuration.
        """
        ns = cls(unique_name(role))
        _run(["ip", "netns", "add", ns.name])
        _LIVE[ns.name] = ns
        try:
            ns.ip("link", "set", "lo", "up")
            if private_resolv_conf:
                ns._write_resolv_conf()
        except BaseException:
            ns.delete()
            raise
        log.debug("created namespace %s", ns.name)
        return ns

    def _write_resolv_conf(self) -> None:
        # Another test may rmdir an empty /etc/netns between our mkdir and the
        # write; retrying closes that race.
        for _ in range(5):
            try:
                self.etc_dir.mkdir(parents=True, exist_ok=True)
                (self.etc_dir / "resolv.conf").write_text(f"# private resolv.conf of {self.name}\n")
                return
            except FileNotFoundError:
                continue
        raise NetnsError(f"could not create {self.etc_dir}")

    @property
    def etc_dir(self) -> Path:
        return ETC_NETNS / self.name

    @property
    def exists(self) -> bool:
        return (NETNS_RUN_DIR / self.name).exists()

    def delete(self, grace: float = 2.0) -> None:
        """Stop everything inside, then remove the namespace and its /etc/netns dir. Idempotent."""
        try:
            if self.exists:
                self.kill_all(grace)
                proc = _run(["ip", "netns", "del", self.name], check=False)
                if proc.returncode != 0 and self.exists:
                    log.warning("ip netns del %s: %s", self.name, proc.stderr.strip())
            if self.etc_dir.exists():
                shutil.rmtree(self.etc_dir, ignore_errors=True)
                with contextlib.suppress(OSError):
                    ETC_NETNS.rmdir()  # only succeeds when no other namespace uses it
        finally:
            _LIVE.pop(self.name, None)

    # ------------------------------------------------------------ processes
    def exec_argv(self, cmd: Sequence[str]) -> list[str]:
        """argv that runs ``cmd`` in this namespace (``ip netns exec`` execs, keeping the pid)."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        """Run to completion with text output captured; raise :class:`CommandError` on failure.

        Extra keyword arguments (``env``, ``cwd``) go to :func:`subprocess.run`.
        """
        return _run(self.exec_argv(cmd), check=check, timeout=timeout, input=input, **kwargs)

    def popen(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` in the background.

        A new session keeps the test runner's terminal signals (Ctrl-C) from
        hitting the process directly; the harness decides which signal it gets.
        """
        kwargs.setdefault("start_new_session", True)
        return subprocess.Popen(self.exec_argv(cmd), **kwargs)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n <ns> ...``: configure the namespace without starting a process in it."""
        return _run(["ip", "-n", self.name, *args], check=check)

    def pids(self) -> list[int]:
        proc = _run(["ip", "netns", "pids", self.name], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    def kill_all(self, grace: float = 2.0) -> list[int]:
        """SIGTERM every process in the namespace, SIGKILL what is left after ``grace`` s.

        Every process in an ``ocg-`` namespace was started by the test that
        owns it, so this never touches anything else on the host.
        """
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def enable_ipv6(self, *interfaces: str) -> None:
        """Make sure IPv6 is on in the namespace (and on ``interfaces``), whatever the host's
        defaults are; addresses are then added with ``nodad`` so they work at once."""
        keys = ["all", "default", *interfaces]
        self.run(["sysctl", "-q", "-w", *(f"net.ipv6.conf.{k}.disable_ipv6=0" for k in keys)])

    # ------------------------------------------------------------ inspection
    def routes(self) -> list[str]:
        return self.ip("-4", "route", "show").stdout.splitlines()

    def tcp_listening(self, port: int) -> bool:
        """True if something in the namespace listens on TCP ``port`` (any address)."""
        return bool(self.run(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip())


@dataclass
class Link:
    """One client namespace wired to the server namespace by its own veth pair."""

    index: int
    ns: Netns
    client_ip: str
    gateway_ip: str  # the server end of this veth (== server_ip for the first link)
    server_ip: str  # the address clients connect to (always the first link's server end)
    client_if: str
    server_if: str
    prefixlen: int = 30
    client_ip6: str = ""  # TestNet(ipv6=True): this link's IPv6 addresses (/64)
    gateway_ip6: str = ""
    server_ip6: str = ""  # the IPv6 address clients connect to (the first link's server end)


def _alloc_block() -> int:
    """A /24 of 198.18.0.0/15 for one TestNet.

    Namespaces are isolated, so two tests reusing the same numbers cannot
    collide; a random block merely makes logs of concurrent tests easier to tell apart.
    """
    return secrets.randbelow(LINK_SUPERNET.num_addresses // 256)


@dataclass
class TestNet:
    """Server namespace + client namespace(s) + the inside host; a context manager.

    ``with TestNet() as net:`` builds everything; leaving the block (or calling
    :meth:`close`) removes it even when the test failed half-way.
    """

    __test__ = False  # not a pytest test class despite the name

    block: int = field(default_factory=_alloc_block)
    server_ns: Netns = field(init=False)
    links: list[Link] = field(init=False, default_factory=list)
    inside_ip: str = INSIDE_IP
    route: str = INSIDE_ROUTE
    dns: str = INSIDE_DNS
    pool: str = VPN_POOL
    ipv6: bool = False  # also IPv6 on the links and an inside IPv6 host (INSIDE_IP6)
    inside_ip6: str = INSIDE_IP6
    route6: str = INSIDE_ROUTE6
    _started: bool = field(init=False, default=False, repr=False)
    _closed: bool = field(init=False, default=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.block < LINK_SUPERNET.num_addresses // 256:
            raise ValueError(f"block {self.block} outside 198.18.0.0/15")

    # ------------------------------------------------------------ set-up / tear-down
    def __enter__(self) -> Self:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setup(self) -> Self:
        if self._started:
            return self
        self._started = True
        try:
            self.server_ns = Netns.create("s")
            # No dummy link type on this kernel: the inside host is an address on lo.
            self.server_ns.ip("addr", "add", f"{self.inside_ip}/32", "dev", "lo")
            if self.ipv6:
                self.server_ns.enable_ipv6("lo")
                self.server_ns.ip("addr", "add", f"{self.inside_ip6}/128", "dev", "lo", "nodad")
            self.add_client()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Delete the client namespaces first (their clients say goodbye), then the server."""
        if self._closed:
            return
        self._closed = True
        for link in reversed(self.links):
            link.ns.delete()
        server = getattr(self, "server_ns", None)
        if server is not None:
            server.delete()

    # ------------------------------------------------------------ addressing
    def _link_addresses(self, index: int) -> tuple[str, str]:
        if not 0 <= index < 64:
            raise NetnsError("at most 64 client links per TestNet")
        base = LINK_SUPERNET.network_address + self.block * 256 + index * 4
        return str(base + 1), str(base + 2)

    def add_client(self) -> Link:
        """Add a client namespace with its own /30 to the server namespace.

        For two-client and session take-over tests: each client has its own
        link but reaches the server at the same ``server_ip``.
        """
        index = len(self.links)
        gateway, client_ip = self._link_addresses(index)
        server_if, client_if = f"ocgs{index}", f"ocgc{index}"
        ns = Netns.create("c", private_resolv_conf=True)
        server_ip = self.links[0].server_ip if self.links else gateway
        link = Link(index, ns, client_ip, gateway, server_ip, client_if, server_if)
        self.links.append(link)
        srv = self.server_ns
        srv.ip(
            "link", "add", server_if, "type", "veth", "peer", "name", client_if, "netns", ns.name
        )
        srv.ip("addr", "add", f"{gateway}/30", "dev", server_if)
        ns.ip("addr", "add", f"{client_ip}/30", "dev", client_if)
        srv.ip("link", "set", server_if, "up")
        ns.ip("link", "set", client_if, "up")
        if server_ip != gateway:
            ns.ip("route", "add", f"{server_ip}/32", "via", gateway, "dev", client_if)
        if self.ipv6:
            self._add_link_ipv6(link)
        return link

    def _add_link_ipv6(self, link: Link) -> None:
        """IPv6 on a link: ``<LINK6_PREFIX>:<n>::1/64`` server end, ``::2`` client end."""
        subnet = f"{LINK6_PREFIX}:{self.block * 64 + link.index:x}"
        link.gateway_ip6, link.client_ip6 = f"{subnet}::1", f"{subnet}::2"
        link.server_ip6 = self.links[0].server_ip6 or link.gateway_ip6
        self.server_ns.enable_ipv6(link.server_if)
        link.ns.enable_ipv6(link.client_if)
        self.server_ns.ip("addr", "add", f"{link.gateway_ip6}/64", "dev", link.server_if, "nodad")
        link.ns.ip("addr", "add", f"{link.client_ip6}/64", "dev", link.client_if, "nodad")
        if link.server_ip6 != link.gateway_ip6:
            link.ns.ip("-6", "route", "add", f"{link.server_ip6}/128", "via", link.gateway_ip6,
                       "dev", link.client_if)

    @property
    def primary(self) -> Link:
        return self.links[0]

    @property
    def client_ns(self) -> Netns:
        return self.links[0].ns

    @property
    def server_ip(self) -> str:
        return self.links[0].server_ip

    @property
    def client_ip(self) -> str:
        return self.links[0].client_ip

    @property
    def namespaces(self) -> list[Netns]:
        return [self.server_ns, *(link.ns for link in self.links)]

    def has_default_route(self) -> bool:
        return any(line.startswith("default") for ns in self.namespaces for line in ns.routes())


# ---------------------------------------------------------------- leftovers


def _netns_created_at(name: str) -> float:
    try:
        return (NETNS_RUN_DIR / name).stat().st_mtime
    except OSError:
        return 0.0


def _owner_alive(pid: int, created_at: float) -> bool:
    """The creating process is still running (and is not a recycled pid)."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        return False
    # A process younger than the namespace is some later, unrelated process
    # that happens to have been given the same pid.
    return started <= created_at + 1.0 and _alive(pid)


def list_namespaces() -> list[str]:
    proc = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def sweep_stale() -> list[str]:
    """Delete ``ocg-`` namespaces (and /etc/netns dirs) whose creating process is gone.

    Namespaces of runs that are still alive (other test sessions on the same
    host) are left alone, as is anything that does not follow our naming.
    """
    removed = []
    for name in list_namespaces():
        match = _NAME_RE.match(name)
        if not match or _owner_alive(int(match.group(1)), _netns_created_at(name)):
            continue
        log.warning("removing stale namespace %s left by a previous run", name)
        Netns(name).delete()
        removed.append(name)
    if ETC_NETNS.is_dir():
        for entry in ETC_NETNS.iterdir():
            match = _NAME_RE.match(entry.name)
            if (
                match
                and not (NETNS_RUN_DIR / entry.name).exists()
                and not _owner_alive(int(match.group(1)), entry.stat().st_mtime)
            ):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
        with contextlib.suppress(OSError):
            ETC_NETNS.rmdir()
    return removed


def delete_all_created() -> None:
    """Last-resort cleanup at interpreter exit for anything a crashed fixture left."""
    for ns in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            ns.delete(grace=1.0)


atexit.register(delete_all_created)
