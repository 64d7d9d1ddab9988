"""Issue #4: workers are sandboxed (no new privileges, resource limits, seccomp allow-list).

The harness config has ``isolate-workers = true``, so every VPN e2e suite already runs its
workers under the filter; here we look at a live worker from the outside, and check that a
worker the filter kills (the kernel's SIGSYS, simulated with os.kill: there is deliberately no
way to make a worker run a forbidden syscall on request) dies alone and is logged by main.
The filter's own kills are proven in tests/unit/test_sandbox.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from tests.support.harness import ping, transfer

MB = 1_000_000


def _status(pid: int) -> dict[str, str]:
    text = open(f"/proc/{pid}/status").read()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines())}


def _limits(pid: int) -> dict[str, list[str]]:
    lines = open(f"/proc/{pid}/limits").read().splitlines()[1:]
    return {line[:26].strip(): line[26:].split()[:2] for line in lines}


def _workers(server) -> dict[str, int]:
    """username -> worker pid, as occtl reports them."""
    users = json.loads(server.occtl("-j", "show", "users").stdout)
    return {u["Username"]: int(u["ID"]) for u in users}


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


TLS13 = ['tls-priorities = "NORMAL:%SERVER_PRECEDENCE:-VERS-TLS1.0:-VERS-TLS1.1"']


@pytest.mark.parametrize("extra_conf", [[], TLS13], ids=["tls1.2", "tls1.3"])
def test_live_worker_is_sandboxed(server, make_client, users, net, extra_conf):
    """Traffic on both channels under the filter (TLS 1.3 is off in the harness' default
    priorities, so its record layer gets its own run here), then the worker seen from /proc."""
    client = make_client()
    assert client.connect("alice", users["alice"], no_dtls=True)
    assert ping(client.ns, net.inside_ip, count=3).ok
    for direction in ("up", "down"):
        result = transfer(net, 5 * MB, direction)
        assert result.sha_sent == result.sha_received
    user = json.loads(server.occtl("-j", "show", "users").stdout)[0]
    assert ("TLS1.3" in user["TLS ciphersuite"]) == bool(extra_conf), user["TLS ciphersuite"]
    client.disconnect()
    assert client.connect("alice", users["alice"], no_dtls=False)
    assert client.wait_dtls()
    assert ping(client.ns, net.inside_ip, count=3).ok
    result = transfer(net, 5 * MB, "down")
    assert result.sha_sent == result.sha_received
    worker = _workers(server)["alice"]
    status = _status(worker)
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # SECCOMP_MODE_FILTER
    assert status["Seccomp_filters"] == "1"
    assert status["Uid"].split()[0] != "0"
    limits = _limits(worker)
    assert limits["Max processes"] == ["0", "0"]
    assert limits["Max open files"] == ["64", "64"]
    assert limits["Max core file size"] == ["0", "0"]
    # main and the security module are not confined (they fork, open files, bind)
    info = json.loads(server.occtl("-j", "show", "status").stdout)
    for pid in (info["Server PID"], info["Sec-mod PID"]):
        assert _status(pid)["Seccomp"] == "0"
    assert "seccomp filter" not in server.log and "killed by signal" not in server.log


def test_worker_killed_by_the_filter_dies_alone_and_is_logged(server, make_client, users, net):
    victim = make_client(name="victim")
    other = make_client(new_link=True, name="other")
    assert victim.connect("alice", users["alice"], no_dtls=False)
    assert other.connect("bob", users["bob"], no_dtls=False)
    assert other.wait_dtls()
    workers = _workers(server)
    doomed, survivor = workers["alice"], workers["bob"]
    os.kill(doomed, signal.SIGSYS)  # what the kernel does on a forbidden syscall
    line = f"worker {doomed} killed by the seccomp filter (syscall not allowed)"
    assert _wait_for(lambda: line in server.log), server.log[-3000:]
    assert not os.path.exists(f"/proc/{doomed}")  # reaped
    server.assert_running()
    assert _workers(server).get("bob") == survivor
    assert ping(other.ns, net.inside_ip, count=3).ok
    assert re.search(rf"ERROR: {re.escape(line)}", server.log)
    # the victim's session was torn down like any lost connection, not left half-open
    assert _wait_for(lambda: _workers(server).get("alice") != doomed)


@pytest.fixture
def users() -> dict[str, str]:
    return {"alice": "alice-sandbox-pw", "bob": "bob-sandbox-pw"}
