"""Main and the sec-mod, in-process, against everything a hostile worker could send
(issue 15): each bad datagram ends that worker (main kills it, the sec-mod drops it and
tells main), and the next worker is served as if nothing happened. The same variants run
against a live server in tests/e2e/test_hostile_worker.py."""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import pki
from appliance.vpn import ipc
from appliance.vpn.config import parse_config
from appliance.vpn.main import server as main_mod
from appliance.vpn.main.server import Conn, Main
from appliance.vpn.passwd import hash_password
from appliance.vpn.secmod.login import AuthState
from appliance.vpn.secmod.server import SecMod
from tests.fuzz.ipc_variants import SECRET, sample_named, variants

VARIANTS = variants(nested=True)
APP_ID = "ab" * 32


@pytest.fixture(scope="module")
def conf_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("hostile")
    ca_key, ca = pki.make_ca("hostile-ipc test CA", days=2)
    key, cert = pki.make_server_cert(ca_key, ca, names=["vpn.test"], addresses=[], days=2)
    pki.write_key(d / "key.pem", key)
    pki.write_cert(d / "cert.pem", cert)
    (d / "pw").write_text(f"alice::{hash_password('alice-pw')}\n")
    return (f'auth = "plain[passwd={d}/pw]"\nipv4-network = 203.0.113.0/24\n'
            f"server-cert = {d}/cert.pem\nserver-key = {d}/key.pem\nmax-ban-score = 50\n")


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    return a, b


# --- the sec-mod ---------------------------------------------------------------------------


@pytest.fixture
def secmod(conf_text: str, tmp_path: Path) -> Iterator[tuple[SecMod, socket.socket]]:
    main_a, main_b = _pair()
    events_a, events_b = _pair()
    sm = SecMod(parse_config(conf_text), str(tmp_path / "sec.sock"), main_a, events_a)
    events_b.settimeout(2)
    yield sm, events_b
    for sock in (main_a, main_b, events_a, events_b, sm.listener):
        sock.close()


def _worker(sm: SecMod, pid: int) -> tuple[socket.socket, socket.socket]:
    ours, theirs = _pair()
    sm.workers[theirs] = AuthState(pid=pid)
    sm.sel.register(theirs, selectors.EVENT_READ, sm._from_worker)
    return ours, theirs


def test_secmod_drops_each_bad_worker_and_tells_main(secmod: Any, caplog: Any) -> None:
    sm, events = secmod
    caplog.set_level(logging.DEBUG)
    for n, (label, data) in enumerate(VARIANTS):
        ours, theirs = _worker(sm, 1000 + n)
        ours.send(data)
        sm._from_worker(theirs)  # must not raise
        assert theirs not in sm.workers and theirs.fileno() == -1, label
        note, _ = ipc.recv(events, accept=ipc.SECMOD_EVENTS)
        assert note == ipc.BadWorker(1000 + n, note.reason), label
        assert SECRET not in note.reason
        assert ours.recv(100) == b""  # no answer, just the end
        ours.close()
    assert SECRET not in caplog.text and "Traceback" not in caplog.text
    # and the next worker is served
    ours, theirs = _worker(sm, 99)
    ipc.send(ours, ipc.AuthInit("", None, "198.51.100.7", "openconnect"))
    sm._from_worker(theirs)
    reply, _ = ipc.recv(ours)
    assert isinstance(reply, ipc.AuthReply) and (reply.status, reply.form) == ("continue",
                                                                                 "login")


def test_secmod_refuses_a_handshake_on_something_that_is_no_tcp_socket(secmod: Any) -> None:
    sm, _events = secmod
    r, w = os.pipe()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n, fd in enumerate((r, udp.fileno())):
            ours, theirs = _worker(sm, 2000 + n)
            ipc.send(ours, ipc.TlsHandshake("198.51.100.7"), [fd])
            sm._from_worker(theirs)
            reply, _ = ipc.recv(ours)
            assert reply == ipc.TlsResult(ok=False, reason="no usable socket")
            assert not sm.handshakes
            ours.close()
    finally:
        os.close(r)
        os.close(w)
        udp.close()


def test_ban_points_carry_the_workers_pid(secmod: Any) -> None:
    sm, events = secmod
    ours, theirs = _worker(sm, 3000)
    ipc.send(ours, ipc.AuthInit("alice", None, "198.51.100.99", "openconnect"))
    sm._from_worker(theirs)
    ipc.recv(ours)
    ipc.send(ours, ipc.AuthCont("wrong"))
    sm._from_worker(theirs)
    note, _ = ipc.recv(events)
    assert isinstance(note, ipc.BanPoints) and note.pid == 3000


# --- main ----------------------------------------------------------------------------------


@pytest.fixture
def main(conf_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Main without its loop; os.kill only records (the pids here are made up)."""
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(main_mod.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    m = Main(parse_config(conf_text), str(tmp_path / "ocserv.conf"))
    m.killed = killed  # type: ignore[attr-defined]
    yield m
    m.sel.close()


def _conn(m: Main, pid: int, state: str = "auth") -> tuple[socket.socket, Conn]:
    ours, theirs = _pair()
    conn = Conn(pid=pid, chan=theirs, remote_ip="198.51.100.7", local_ip="198.51.100.1",
                state=state)
    if state == "connected":
        conn.sid, conn.username = "cd" * 16, "alice"
    m.conns[pid] = conn
    m.by_chan[theirs.fileno()] = conn
    m.sel.register(theirs, selectors.EVENT_READ, m._from_worker)
    return ours, conn


def _ended(m: Main, conn: Conn) -> bool:
    return conn.bad and conn.state == "closing" and conn.chan.fileno() == -1 and \
        (conn.pid, signal.SIGKILL) in m.killed


@pytest.mark.parametrize("state", ["auth", "connected"])
def test_main_ends_each_bad_worker_and_nothing_else(main: Main, state: str,
                                                    caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    bystander_sock, bystander = _conn(main, 1, "connected")
    for n, (label, data) in enumerate(VARIANTS):
        ours, conn = _conn(main, 1000 + n, state)
        ours.send(data)
        main._from_worker(conn.chan)  # must not raise
        assert _ended(main, conn), label
        assert ours.recv(100) == b"", label
        ours.close()
    assert bystander.state == "connected" and not bystander.bad
    lines = [r.getMessage() for r in caplog.records if "sent a bad message" in r.getMessage()]
    assert len(lines) == len(VARIANTS)
    assert all(line.startswith("worker 1") and "to main (" in line for line in lines)
    assert SECRET not in caplog.text and "Traceback" not in caplog.text
    if state == "connected":  # ended as the server's doing: counted once each
        assert main.mgmt.stats.sessions_handled == len(VARIANTS)
    bystander_sock.close()


def test_main_checks_what_the_types_cannot_say(main: Main) -> None:
    # counters before a grant, a second CONNECT, another session's DTLS App-ID
    ours, conn = _conn(main, 10, "auth")
    ipc.send(ours, ipc.WorkerStats(1, 2))
    main._from_worker(conn.chan)
    assert _ended(main, conn)
    ours, conn = _conn(main, 11, "connected")
    request = ipc.ConnectRequest(**{k: v for k, v in sample_named("ConnectRequest").items()
                                    if k != "type"})
    ipc.send(ours, request)
    main._from_worker(conn.chan)
    assert _ended(main, conn)
    holder_sock, holder = _conn(main, 12, "connected")
    holder.app_id = bytes.fromhex(APP_ID)
    main.sessions.by_app_id[holder.app_id] = holder
    for pid, app_id in ((13, APP_ID), (14, "ab" * 8)):
        ours, conn = _conn(main, pid, "auth")
        ipc.send(ours, ipc.ConnectRequest(**{**request.__dict__, "dtls_app_id": app_id}))
        main._from_worker(conn.chan)
        assert _ended(main, conn)
    assert main.sessions.by_app_id[holder.app_id] is holder and not holder.bad
    holder_sock.close()


def test_main_takes_good_counters_and_charges_ban_points_to_what_it_knows(main: Main) -> None:
    ours, conn = _conn(main, 20, "connected")
    ipc.send(ours, ipc.WorkerStats(100, 200, compressed_rx=3, final=True, reason="user"))
    main._from_worker(conn.chan)
    assert (conn.rx, conn.tx, conn.compressed, conn.reason) == (100, 200, (3, 0), "user")
    assert not conn.bad
    main._on_secmod_event(ipc.BanPoints("198.51.100.99", 60, "wrong password", pid=20))
    assert [ip for ip, _score, _until in main.bans.points(0.0)] == ["198.51.100.7"]
    main._on_secmod_event(ipc.BanPoints("198.51.100.98", 60, "wrong password", pid=404))
    assert len(main.bans.points(0.0)) == 1  # a worker main does not know: nobody charged
    main._on_secmod_event(ipc.BadWorker(20, "AuthInit: 'username' has the wrong type"))
    assert _ended(main, conn)


def test_a_taken_over_session_and_a_reaped_pid_are_left_alone(main: Main,
                                                               monkeypatch: Any) -> None:
    released: list[str] = []
    monkeypatch.setattr(main.sessions, "_release", released.append)
    old_sock, old = _conn(main, 40, "connected")
    new_sock, new = _conn(main, 41, "connected")  # the same session, newer connection
    old_sock.send(b'{"type":"WorkerStats","rx":"x","tx":0}')
    main._from_worker(old.chan)
    assert _ended(main, old) and old.end_reason == "temporary" and released == []
    assert new.state == "connected"
    # the worker's last words read after its reap: its pid may be another process's now
    gone_sock, gone = _conn(main, 42, "auth")
    del main.conns[42]
    gone_sock.send(b'{"type":"Nope"}')
    main._from_worker(gone.chan)
    assert gone.bad and (42, signal.SIGKILL) not in main.killed  # type: ignore[attr-defined]
    for sock in (old_sock, new_sock, gone_sock):
        sock.close()


def test_a_handler_that_fails_ends_that_worker_and_quotes_nothing(main: Main, secmod: Any,
                                                                  monkeypatch: Any,
                                                                  caplog: Any) -> None:
    def boom(*_args: object) -> None:
        raise ValueError(f"the cookie was {SECRET}")

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(main.sessions, "connect", boom)
    ours, conn = _conn(main, 50, "auth")
    request = {k: v for k, v in sample_named("ConnectRequest").items() if k != "type"}
    ipc.send(ours, ipc.ConnectRequest(**request))
    main._from_worker(conn.chan)
    assert _ended(main, conn)
    assert "handling ConnectRequest from worker 50 failed (ValueError)" in caplog.text
    sm, events = secmod
    monkeypatch.setattr(sm.login, "auth_init", boom)
    w_ours, w_theirs = _worker(sm, 51)
    ipc.send(w_ours, ipc.AuthInit("alice", None, "198.51.100.7", "openconnect"))
    sm._from_worker(w_theirs)
    assert "handling AuthInit from worker 51 failed (ValueError)" in caplog.text
    assert ipc.recv(events)[0] == ipc.BadWorker(51, "its request could not be handled")
    assert SECRET not in caplog.text
    ours.close()
    w_ours.close()
