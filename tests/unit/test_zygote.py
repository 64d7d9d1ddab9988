"""The zygote (appliance/vpn/main/zygote.py): it forks workers that are main's children, so
main's waitpid and kill-by-pid go on working unchanged, and main falls back when it is gone."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from appliance.vpn.main import zygote
from appliance.vpn.main.zygote import Zygote, fork_sibling


def test_fork_sibling_makes_a_child_of_the_callers_parent() -> None:
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            pid = fork_sibling()
            if pid == 0:
                os.write(w, json.dumps({"ppid": os.getppid()}).encode() + b"\n")
                os._exit(5)
            os.write(w, json.dumps({"pid": pid}).encode() + b"\n")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    assert os.waitstatus_to_exitcode(os.waitpid(middle, 0)[1]) == 0
    with os.fdopen(r) as f:
        reports = {k: v for line in f for k, v in json.loads(line).items()}
    # the grandchild is ours: we, not the middle process, reap it and see its status
    done, status = os.waitpid(reports["pid"], 0)
    assert done == reports["pid"] and os.waitstatus_to_exitcode(status) == 5
    assert reports["ppid"] == os.getpid()


def _body(sock: socket.socket, chan: socket.socket, peer: list) -> None:
    name = open("/proc/self/comm").read().strip()
    sock.sendall(json.dumps({"peer": peer, "ppid": os.getppid(), "name": name}).encode())
    chan.send(b"hello main")
    os._exit(7)


def test_zygote_spawns_workers_that_main_reaps() -> None:
    ours_name = open("/proc/self/comm").read().strip()
    z = Zygote.start(lambda: None, _body)
    assert z is not None
    deadline = time.monotonic() + 5
    while open(f"/proc/{z.pid}/comm").read().strip() != "ocgate-zygote":
        assert time.monotonic() < deadline, "the zygote did not name itself"
        time.sleep(0.01)
    try:
        for i in range(3):
            ours, theirs = socket.socketpair()
            parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pid = z.spawn(theirs, child, ["198.51.100.7", 4000 + i, "198.18.0.1", 443])
            theirs.close()
            child.close()
            assert pid is not None and pid != z.pid
            done, status = os.waitpid(pid, 0)  # main's own child
            assert os.waitstatus_to_exitcode(status) == 7
            report = json.loads(ours.recv(4096))
            assert report == {"peer": ["198.51.100.7", 4000 + i, "198.18.0.1", 443],
                              "ppid": os.getpid(), "name": ours_name}
            assert parent.recv(64) == b"hello main"
            ours.close()
            parent.close()
    finally:
        z.stop()
    assert not os.path.exists(f"/proc/{z.pid}")  # reaped by stop()


def test_a_dead_zygote_makes_spawn_fall_back() -> None:
    z = Zygote.start(lambda: None, _body)
    assert z is not None
    os.kill(z.pid, 9)
    os.waitpid(z.pid, 0)
    ours, theirs = socket.socketpair()
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        assert z.spawn(theirs, child, ["198.51.100.7", 1, "198.18.0.1", 443]) is None
    finally:
        for s in (ours, theirs, parent, child, z.chan):
            s.close()


def test_no_clone_number_means_no_zygote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zygote, "SYS_CLONE", None)
    assert Zygote.start(lambda: None, _body) is None
