"""chroot-dir: workers confined to a directory, as ocserv does it (issue 15).

Debian's stock ocserv.conf sets ``chroot-dir = /var/lib/ocserv``, so a drop-in must honour
it rather than refuse it. The harness config keeps ``isolate-workers = true``, so the
chrooted worker runs under the seccomp filter as well.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.support.harness import ping, transfer

MB = 1_000_000


def _workers(server) -> dict[str, int]:
    users = json.loads(server.occtl("-j", "show", "users").stdout)
    return {u["Username"]: int(u["ID"]) for u in users}


@pytest.fixture
def extra_conf(workdir):
    """An empty directory as chroot-dir (Debian's stock ocserv.conf sets one)."""
    jail = workdir / "jail"
    jail.mkdir()
    return [f"chroot-dir = {jail}", "compression = true"]


def test_chrooted_worker_serves_both_channels(server, make_client, users, net, workdir):
    """With chroot-dir the worker's root is that (empty) directory, and it still logs in,
    moves compressed traffic over DTLS and TLS,, and serves a second login: nothing it does
    after the fork needs a file."""
    client = make_client()
    assert client.connect("alice", users["alice"], no_dtls=False)
    assert client.wait_dtls()
    worker = _workers(server)["alice"]
    assert os.readlink(f"/proc/{worker}/root") == str(workdir / "jail")
    assert os.readlink(f"/proc/{worker}/cwd") == str(workdir / "jail")
    assert ping(client.ns, net.inside_ip, count=3).ok
    for direction in ("up", "down"):
        result = transfer(net, 5 * MB, direction)
        assert result.sha_sent == result.sha_received
    client.disconnect()
    assert client.connect("alice", users["alice"], no_dtls=True)
    assert os.readlink(f"/proc/{_workers(server)['alice']}/root") == str(workdir / "jail")
    result = transfer(net, 2 * MB, "down")
    assert result.sha_sent == result.sha_received
    assert "worker failed" not in server.log
    assert not list((workdir / "jail").iterdir())
