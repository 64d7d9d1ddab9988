"""Issue 15: a worker that turns hostile ends only its own session.

The test plays a compromised worker on a live server. As root it takes copies of real
workers' IPC channels (``pidfd_getfd``), the one to main and the one to the sec-mod, and
sends them everything a hostile worker could: every registered message type with each
field given each wrong JSON type, missing and extra fields, unknown types, broken JSON,
deep nesting and oversized datagrams (tests/fuzz/ipc_variants.py). First on the worker of a
connected user, then on fresh workers (a TCP connection is enough to get one), one bad
datagram per channel per worker, since the first one ends that worker.

Afterwards main and the sec-mod are the same processes, ``occtl show status`` answers,
the other user's tunnel still carries pings, a new openconnect login works, every attacked
worker is gone, each logged exactly once with its pid, and no planted secret reached the log.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import socket
import time
from dataclasses import dataclass

import psutil
import pytest

from appliance.vpn import ipc
from tests.fuzz.ipc_variants import SECRET, variants
from tests.soak.nsock import connect_in
from tests.support.harness import ping

SYS_PIDFD_GETFD = 438
SO_SNDBUFFORCE = 32  # Linux; not in Python's socket module
_libc = ctypes.CDLL(None, use_errno=True)
BATCH = 24  # workers attacked at once (max-clients below leaves room for the users)
VARIANTS = variants(nested=False)


@pytest.fixture
def extra_conf() -> list[str]:
    return ["max-clients = 64"]


@pytest.fixture
def users() -> dict[str, str]:
    return {"alice": "alice-hostile-pw", "bob": "bob-hostile-pw"}


def pidfd_getfd(pidfd: int, fd: int) -> int:
    new = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    if new < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
    return new


def _peer_pid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[:4], "little")


@dataclass
class Stolen:
    """Copies of one worker's channels, held by the test."""

    pid: int
    to_main: socket.socket
    to_secmod: socket.socket

    def close(self) -> None:
        self.to_main.close()
        self.to_secmod.close()


def steal(pid: int, main_pid: int, secmod_pid: int) -> Stolen | None:
    """The worker's channel to main and its connection to the sec-mod, or None if it has
    not got both yet (or is gone). A channel counts only when the kernel says who is at
    the other end, so a descriptor inherited from main can never be mistaken for one."""
    try:
        if not re.search(r"^Uid:\s+[1-9]", open(f"/proc/{pid}/status").read(), re.M):
            return None  # still root: it has not finished setting up (main/server.py _fork_worker)
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    found: dict[int, socket.socket] = {}
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
                sock = socket.socket(fileno=pidfd_getfd(pidfd, int(name)))
                peer = _peer_pid(sock) if sock.family == socket.AF_UNIX and \
                    sock.type == socket.SOCK_SEQPACKET else 0
                if peer in (main_pid, secmod_pid) and peer not in found:
                    found[peer] = sock
                else:
                    sock.close()
    except OSError:
        pass
    finally:
        os.close(pidfd)
    if len(found) != 2:
        for sock in found.values():
            sock.close()
        return None
    return Stolen(pid, found[main_pid], found[secmod_pid])


def send(sock: socket.socket, data: bytes) -> None:
    if len(data) > 100_000:  # an oversized datagram needs room in the send buffer
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 * len(data))
    sock.send(data)


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True when the other end closed without answering (what a refused message gets)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(ipc.MAX_MESSAGE) == b""
    except ConnectionResetError:
        return True
    except OSError:
        return False


def status(server) -> dict:
    return json.loads(server.occtl("-j", "show", "status").stdout)


def workers(server) -> dict[str, int]:
    return {u["Username"]: int(u["ID"])
            for u in json.loads(server.occtl("-j", "show", "users").stdout)}


def fresh_workers(server, ns: str, count: int, main_pid: int, secmod_pid: int,
                  known: set[int]) -> tuple[list[Stolen], list[socket.socket]]:
    """``count`` new pre-auth workers (a bare TCP connection each: a worker is forked per
    connection) with stolen channels, and those connections."""
    conns = [connect_in(ns, server.net.server_ip, 443, timeout=5) for _ in range(count)]
    stolen: dict[int, Stolen] = {}
    deadline = time.monotonic() + 20
    while len(stolen) < count and time.monotonic() < deadline:
        for child in psutil.Process(main_pid).children():
            if child.pid not in known and child.pid not in stolen:
                got = steal(child.pid, main_pid, secmod_pid)
                if got is not None:
                    stolen[child.pid] = got
        time.sleep(0.005)
    known.update(stolen)
    assert len(stolen) == count, f"only {len(stolen)} of {count} workers appeared"
    return list(stolen.values()), conns


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.01)
    return False


def test_hostile_worker_ends_only_its_own_session(server, make_client, users, net):
    alice = make_client(name="alice")
    bob = make_client(new_link=True, name="bob")
    attacker = make_client(new_link=True, name="attacker")  # only its namespace is used
    assert alice.connect("alice", users["alice"], no_dtls=False)
    assert bob.connect("bob", users["bob"], no_dtls=False)
    assert bob.wait_dtls()
    before = status(server)
    main_pid, secmod_pid = before["Server PID"], before["Sec-mod PID"]
    live = workers(server)
    known = {secmod_pid, *live.values()}
    started = time.monotonic()

    # 1. the connected user's own worker, as reported: counters that are not numbers
    victim = steal(live["alice"], main_pid, secmod_pid)
    assert victim is not None, "cannot take alice's worker channels"
    send(victim.to_main, b'{"type":"WorkerStats","rx":"' + SECRET.encode() + b'","tx":0}')
    assert closed_by_peer(victim.to_main)
    send(victim.to_secmod, b'{"type":"SessionLogout","cookie":7}')
    assert closed_by_peer(victim.to_secmod)
    victim.close()
    assert gone(live["alice"])
    assert "alice" not in workers(server)
    assert workers(server).get("bob") == live["bob"]
    assert ping(bob.ns, net.inside_ip, count=2).ok

    # 2. every variant on main's channel and on the sec-mod's, one of each per fresh worker
    attacked = [victim.pid]
    refused_by = {"main": 0, "sec-mod": 0}
    for first in range(0, len(VARIANTS), BATCH):
        batch = VARIANTS[first:first + BATCH]
        got, tcp = fresh_workers(server, attacker.ns.name, len(batch), main_pid, secmod_pid,
                                 known)
        # worker i: variant i to main; once main has ended them all (so that each one's
        # end is main's own doing), variant i+1 to the sec-mod over the copy we still hold
        for i, stolen in enumerate(got):
            send(stolen.to_main, batch[i][1])
        for i, stolen in enumerate(got):
            assert closed_by_peer(stolen.to_main), f"main answered {batch[i][0]}"
            refused_by["main"] += 1
        for i, stolen in enumerate(got):
            send(stolen.to_secmod, batch[(i + 1) % len(batch)][1])
        for i, stolen in enumerate(got):
            label = batch[(i + 1) % len(batch)][0]
            assert closed_by_peer(stolen.to_secmod), f"the sec-mod answered {label}"
            refused_by["sec-mod"] += 1
            assert gone(stolen.pid), f"worker {stolen.pid} still runs"
            stolen.close()
            attacked.append(stolen.pid)
        for sock in tcp:
            sock.close()

    # 3. a bad message to the sec-mod alone: main ends that worker on the sec-mod's word
    sec_only = []
    got, tcp = fresh_workers(server, attacker.ns.name, 3, main_pid, secmod_pid, known)
    for stolen in got:
        send(stolen.to_secmod, b'{"type":"AuthInit","username":7,"group":null,'
                               b'"remote_ip":"198.51.100.7","user_agent":"x"}')
        assert closed_by_peer(stolen.to_secmod)
        assert closed_by_peer(stolen.to_main)  # main closed its end: it killed the worker
        assert gone(stolen.pid)
        sec_only.append(stolen.pid)
        stolen.close()
    for sock in tcp:
        sock.close()
    elapsed = time.monotonic() - started
    assert refused_by == {"main": len(VARIANTS), "sec-mod": len(VARIANTS)}

    # the server is whole
    server.assert_running()
    after = status(server)
    assert (after["Server PID"], after["Sec-mod PID"]) == (main_pid, secmod_pid)
    assert workers(server) == {"bob": live["bob"]}
    assert ping(bob.ns, net.inside_ip, count=3).ok
    again = make_client(name="alice-again")
    assert again.connect("alice", users["alice"], no_dtls=False)
    assert ping(again.ns, net.inside_ip, count=2).ok
    assert set(workers(server)) == {"alice", "bob"}

    # what the log says: each attacked worker once, with its pid; no secret, no traceback
    log = server.log
    for pid in attacked:
        assert len(re.findall(rf"worker {pid} sent a bad message to main \(", log)) == 1, pid
    for pid in sec_only:
        assert len(re.findall(rf"worker {pid} sent a bad message to the sec-mod", log)) == 1
    assert len(re.findall(r"sent a bad message", log)) == len(attacked) + len(sec_only)
    assert SECRET not in log
    assert "Traceback" not in log
    print(f"\n[e2e] {len(VARIANTS)} variants x 2 channels on {len(attacked)} workers "
          f"in {elapsed:.1f} s")
