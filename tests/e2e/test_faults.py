"""Issue #11: fault injection with the real openconnect client.

Each test breaks one thing on purpose (a worker or the sec-mod killed, a client that
vanishes, a full disk, a signal storm, idle connections, a restart) and checks that the
damage stays where it belongs.  Timeouts are configured short so that every test is
quick; docs/reliability.md describes what each one proves.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.vpn.config import load_config, write_config_atomic
from tests.soak import probe
from tests.soak.driver import restore_server_route
from tests.soak.nsock import connect_in
from tests.soak.probe import ping_all
from tests.support.harness import Client, Server
from tests.support.webui import build_ui, post, sign_in

DPD = 2  # seconds; a silent client is ended after 3 x dpd (worker/datapath.py)

#: ocserv.conf lines per test (later lines win over the harness's).
CONF: dict[str, list[str]] = {
    "test_vanished_client_is_ended_by_dpd": [f"dpd = {DPD}", f"mobile-dpd = {DPD}"],
    "test_slowloris_is_bounded_and_others_still_log_in": [
        "max-clients = 128", "max-ban-score = 80", "ban-points-connection = 1",
        "ban-time = 300"],
}


@pytest.fixture
def extra_conf(request: pytest.FixtureRequest, workdir: Path) -> list[str]:
    lines = list(CONF.get(request.function.__name__, []))
    script = workdir / "disconnect.sh"
    script.write_text(f'#!/bin/sh\necho "$USERNAME $REASON" >> {workdir}/disconnects\n')
    script.chmod(0o755)
    return [*lines, f"disconnect-script = {script}"]


def users_json(server: Server) -> list[dict]:
    return json.loads(server.occtl("-j", "show", "users").stdout)


def wait_for(check: Callable[[], object], timeout: float, step: float = 0.2) -> object:
    """Poll ``check`` until it returns something truthy; that value, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return None


def link_index(server: Server, device: str) -> int:
    """The interface index of a TUN in the server namespace (0 if there is none)."""
    out = server.net.server_ns.ip("-o", "link", "show", "dev", device, check=False).stdout
    match = re.match(r"(\d+):", out)
    return int(match.group(1)) if match else 0


def index_exists(server: Server, index: int) -> bool:
    out = server.net.server_ns.ip("-o", "link", "show").stdout
    return any(line.startswith(f"{index}:") for line in out.splitlines())


def disconnects(workdir: Path) -> list[str]:
    try:
        return (workdir / "disconnects").read_text().splitlines()
    except FileNotFoundError:
        return []


def two_clients(make_client, users) -> tuple[Client, Client]:  # noqa: ANN001
    alice = make_client(name="alice")
    bob = make_client(new_link=True, name="bob")
    assert alice.connect("alice", users["alice"])
    assert bob.connect("bob", users["bob"])
    return alice, bob


# ---------------------------------------------------------------- a worker dies


def test_killed_worker_ends_only_its_session(server, make_client, users, workdir):
    alice, bob = two_clients(make_client, users)
    rows = {row["Username"]: row for row in users_json(server)}
    victim = rows["alice"]
    address, old_index = alice.address(), link_index(server, victim["Device"])
    assert old_index
    os.kill(victim["ID"], signal.SIGKILL)
    # bob never notices
    assert ping_all(bob.ns, server.net.inside_ip, 3).ok
    # alice's old worker, TUN and session entry go; her lease waits for her cookie
    assert wait_for(lambda: not index_exists(server, old_index), 10), "TUN not removed"
    assert wait_for(lambda: victim["ID"] not in {r["ID"] for r in users_json(server)}, 10)
    assert wait_for(lambda: "alice disconnect" in disconnects(workdir), 10), (
        disconnects(workdir))
    # openconnect reconnects by itself with its cookie and gets the same address back
    assert wait_for(lambda: any(e.reason == "reconnect" for e in alice.events()), 30), (
        alice.log[-2000:])
    assert alice.running
    again = wait_for(lambda: {r["Username"]: r for r in users_json(server)}.get("alice"), 10)
    assert again and again["ID"] != victim["ID"] and again["IPv4"] == address
    assert ping_all(alice.ns, server.net.inside_ip, 3).ok
    assert ping_all(bob.ns, server.net.inside_ip, 2).ok
    assert probe.worker_pids(server, {probe.secmod_pid(server) or 0}) == sorted(
        r["ID"] for r in users_json(server))
    server.assert_running()


# ---------------------------------------------------------------- the sec-mod dies


def test_killed_secmod_is_replaced_and_tunnels_stay_up(server, make_client, users):
    alice, _ = two_clients(make_client, users)
    bob_cookie_client = make_client(new_link=True, name="late")
    first = probe.secmod_pid(server)
    assert first
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (pid := probe.secmod_pid(server)) not in (None, first) and pid,
                      10)
    assert second, f"no new sec-mod:\n{server.log[-2000:]}"
    assert "starting a new one" in server.log
    # the tunnels that were up stay up, and the new sec-mod serves new logins
    assert ping_all(alice.ns, server.net.inside_ip, 3).ok
    assert {r["Username"] for r in users_json(server)} == {"alice", "bob"}
    assert bob_cookie_client.connect("bob", users["bob"])
    assert ping_all(bob_cookie_client.ns, server.net.inside_ip, 2).ok
    # one that keeps dying: main gives up with an error status, never half alive
    current = second
    for _ in range(3):
        os.kill(current, signal.SIGKILL)
        nxt = wait_for(lambda c=current: (p := probe.secmod_pid(server)) not in (None, c)
                       and p, 10)
        if not nxt:
            break
        current = nxt
    assert server.proc is not None
    code = server.proc.wait(20)
    assert code != 0, server.log[-2000:]
    assert "stopping with an error so that the service manager restarts us" in server.log
    assert wait_for(lambda: not server.net.server_ns.pids(), 10), (
        f"processes left behind: {server.net.server_ns.pids()}")
    assert alice.wait_exit(20) is not None  # the tunnel was ended, not left dangling


# ---------------------------------------------------------------- a client vanishes


def test_vanished_client_is_ended_by_dpd(server, make_client, users, workdir):
    alice, bob = two_clients(make_client, users)
    device = {r["Username"]: r for r in users_json(server)}["alice"]["Device"]
    index = link_index(server, device)
    # the link goes first, so not even the FIN of the killed process gets through
    alice.ns.ip("link", "set", alice.link.client_if, "down")
    assert alice.pid is not None
    os.kill(alice.pid, signal.SIGKILL)
    vanished = time.monotonic()
    ended = wait_for(lambda: "alice" not in {r["Username"] for r in users_json(server)},
                     3 * DPD + 15, step=0.25)
    took = time.monotonic() - vanished
    print(f"\n[faults] vanished client ended by DPD after {took:.1f} s (dpd = {DPD})")
    assert ended, f"session still there after {took:.1f} s"
    assert took <= 3 * DPD + 6, f"DPD took {took:.1f} s for dpd = {DPD}"
    assert wait_for(lambda: "alice disconnect" in disconnects(workdir), 10)
    assert not index_exists(server, index)
    sessions = json.loads(server.occtl("-j", "show", "sessions", "all").stdout)
    assert "alice" in {s["Username"] for s in sessions}  # the cookie may still come back
    assert ping_all(bob.ns, server.net.inside_ip, 2).ok
    # the link comes back: alice logs in again and gets her address
    alice.ns.ip("link", "set", alice.link.client_if, "up")
    assert alice.connect("alice", users["alice"])
    server.assert_running()


# ---------------------------------------------------------------- disk full


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "256k") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "ocg-full", path],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def fill(directory: Path) -> None:
    """Use up every free block, so that the next write fails with ENOSPC."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def test_disk_full_config_write_keeps_the_old_file(workdir, server_files):
    with tiny_tmpfs(workdir / "full") as full:
        conf = full / "ocserv.conf"
        old = server_files.conf.read_text()
        conf.write_text(old)
        fill(full)
        new = old + "".join(f"# a comment line {i} that makes the file longer\n"
                            for i in range(200)) + "banner = changed\n"
        with pytest.raises(OSError) as caught:
            write_config_atomic(str(conf), new)
        assert caught.value.errno == errno.ENOSPC
        assert conf.read_text() == old
        assert sorted(p.name for p in full.iterdir()) == ["filler", "ocserv.conf"]
        assert load_config(str(conf)).banner == load_config(str(server_files.conf)).banner


def test_disk_full_web_ui_save_reports_and_keeps_the_old_file(workdir):
    with tiny_tmpfs(workdir / "state", size="4m") as root:
        ui = build_ui(root / "s")
        admin = ui.client()
        assert sign_in(admin).status_code == 303
        before = ui.layout.conf.read_text()
        raw = post(admin, "/settings/raw", {"text": before + "mtu = 1400\n"},
                   form_page="/settings/")
        assert raw.headers["Location"] == "/settings/review"
        review = admin.get("/settings/review").get_data(as_text=True)
        draft = re.search(r'name="draft" value="([^"]+)"', review)
        assert draft
        fill(root)
        applied = post(admin, "/settings/apply", {"draft": draft.group(1)},
                       form_page="/settings/")
        (root / "filler").unlink()
        assert applied.headers["Location"] == "/settings/review"
        page = admin.get("/settings/review").get_data(as_text=True)
        assert "Nothing was applied" in page and "No space left on device" in page
        assert ui.layout.conf.read_text() == before
        assert ("reload", None) not in ui.vpn.calls
        assert not [p for p in ui.layout.conf.parent.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- signal storm


def test_sighup_storm_reloads_and_keeps_sessions(server, make_client, users):
    alice, _ = two_clients(make_client, users)
    before = {r["Username"]: r["ID"] for r in users_json(server)}
    conf = server.files.conf
    conf.write_text(conf.read_text() + 'banner = "after the storm"\n')
    assert server.pid is not None
    for _ in range(100):
        os.kill(server.pid, signal.SIGHUP)
        time.sleep(0.01)
    time.sleep(1)
    server.assert_running()
    assert "configuration reloaded" in server.log
    assert {r["Username"]: r["ID"] for r in users_json(server)} == before
    assert ping_all(alice.ns, server.net.inside_ip, 3).ok
    late = make_client(new_link=True, name="late")
    assert late.connect("alice", users["alice"])
    assert late.env().get("CISCO_BANNER", "").strip() == "after the storm"


# ---------------------------------------------------------------- slowloris

IDLE_TCP = 250
HALF_TLS = 50
# a TLS record header announcing 512 bytes of ClientHello, then only the first few
HALF_HELLO = bytes.fromhex("1603010200") + bytes.fromhex("010001fc0303") + b"\0" * 16


def test_slowloris_is_bounded_and_others_still_log_in(server, make_client, users):
    attacker = make_client(new_link=True, name="attacker")
    held: list[socket.socket] = []
    try:
        for i in range(IDLE_TCP + HALF_TLS):
            try:
                sock = connect_in(attacker.ns.name, server.net.server_ip, 443, timeout=3)
            except OSError:
                continue  # refused once banned: that is the point
            if i >= IDLE_TCP:
                with contextlib.suppress(OSError):
                    sock.sendall(HALF_HELLO)
            held.append(sock)
        time.sleep(1)
        workers = probe.worker_pids(server, {probe.secmod_pid(server) or 0})
        # the ban score (1 per connection, 80 to ban) caps what one address can hold
        assert len(workers) <= 85, f"{len(workers)} workers for one address"
        main_fds = probe.sample_process(server.pid).fds  # type: ignore[arg-type]
        assert main_fds <= 85 + 30, f"main holds {main_fds} fds"
        bans = json.loads(server.occtl("-j", "show", "ip", "bans").stdout)
        assert attacker.link.client_ip in {b["IP"] for b in bans}
        # someone else logs in quickly while the attacker's connections hang
        alice = make_client(name="alice")
        started = time.monotonic()
        assert alice.connect("alice", users["alice"], timeout=30)
        took = time.monotonic() - started
        print(f"\n[faults] slowloris: {len(held)} connections held, {len(workers)} workers, "
              f"main {main_fds} fds; another user logged in in {took:.2f} s")
        assert took < 8, f"login took {took:.1f} s during the slowloris"
        assert ping_all(alice.ns, server.net.inside_ip, 2).ok
    finally:
        for sock in held:
            sock.close()
    # and the idle ones go away by themselves (handshake timeout) or now that they closed
    assert wait_for(lambda: len(probe.worker_pids(server, {probe.secmod_pid(server) or 0}))
                    <= 1, 40), "idle workers did not go away"
    server.assert_running()


# ---------------------------------------------------------------- server restart


def test_server_restart_clients_reconnect_or_exit_clearly(server, make_client, users):
    """openconnect keeps retrying with its cookie while the server is away; a new
    server process does not know that cookie, so the client ends with a clear message
    (it never sits half-connected).  With the graceful stop the server tells it first."""
    alice, bob = two_clients(make_client, users)
    assert server.stop(timeout=15) == 0
    assert alice.wait_exit(20) is not None and bob.wait_exit(20) is not None
    for client in (alice, bob):
        assert re.search(r"terminated by server|server shutdown|Server closed connection",
                         client.log, re.I), client.log[-1500:]
    server.start()
    for client in (alice, bob):
        restore_server_route(client.link)
    assert alice.connect("alice", users["alice"])
    assert bob.connect("bob", users["bob"])
    assert ping_all(alice.ns, server.net.inside_ip, 2).ok


def test_server_crash_clients_retry_with_cookie_then_exit_clearly(server, make_client,
                                                                  users):
    alice = make_client(name="alice")
    assert alice.connect("alice", users["alice"])
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)  # main, sec-mod and workers: a crash
    server.proc.wait(10)
    server.net.server_ns.kill_all(grace=0.5)
    time.sleep(1)
    server.start()
    code = alice.wait_exit(60)
    assert code is not None, f"openconnect still waiting:\n{alice.log[-1500:]}"
    assert code != 0
    assert re.search(r"cookie|rejected|401|Failed to reconnect", alice.log, re.I), (
        alice.log[-1500:])
