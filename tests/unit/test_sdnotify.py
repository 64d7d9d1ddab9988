"""sd_notify: the datagrams systemd reads, over a real AF_UNIX socket."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.sdnotify import (
    MAX_MESSAGE,
    Notifier,
    SdNotifyError,
    encode,
    parse_address,
    watchdog_interval,
)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def fields_of(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


def test_ready_reaches_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("listening on 443")
    assert fields_of(sock.recv(4096)) == {"READY": "1", "STATUS": "listening on 443"}


def test_reload_carries_monotonic_time(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(path)
    assert n.reloading(monotonic_usec=123456)
    assert fields_of(sock.recv(4096)) == {"RELOADING": "1", "MONOTONIC_USEC": "123456"}
    assert n.reloading()
    got = fields_of(sock.recv(4096))
    assert got["RELOADING"] == "1" and int(got["MONOTONIC_USEC"]) > 0
    assert n.ready()
    assert sock.recv(4096) == b"READY=1"


def test_stopping_and_watchdog(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(path)
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("3 sessions")
    assert sock.recv(4096) == b"STATUS=3 sessions"


def test_abstract_namespace_socket() -> None:
    name = f"ocgate-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        n = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_without_systemd_everything_is_a_no_op() -> None:
    n = Notifier.from_environ({})
    assert not n.enabled
    assert not n.ready()
    assert not n.reloading()
    assert not n.stopping()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "gone.sock"))
    assert n.ready() is False


def test_unset_environment_hides_the_socket_from_children() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "OTHER": "x"}
    n = Notifier.from_environ(env, unset_environment=True)
    assert n.address == "/run/systemd/notify"
    assert env == {"OTHER": "x"}


def test_parse_address() -> None:
    assert parse_address("") is None
    assert parse_address("/run/systemd/notify") == "/run/systemd/notify"
    assert parse_address("@abc") == b"\0abc"
    assert parse_address("vsock:2:1234") is None
    assert parse_address("relative/path") is None


def test_encode_rejects_what_systemd_would_misread() -> None:
    with pytest.raises(SdNotifyError):
        encode({"STATUS": "\ud800"})
    with pytest.raises(SdNotifyError):
        encode({})
    with pytest.raises(SdNotifyError):
        encode({"STATUS": "two\nlines"})
    with pytest.raises(SdNotifyError):
        encode({"ready": "1"})
    with pytest.raises(SdNotifyError):
        encode({"A=B": "1"})
    with pytest.raises(SdNotifyError):
        encode({"STATUS": "x" * MAX_MESSAGE})


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "nonsense"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=20)
VALUES = st.text(max_size=60).filter(lambda v: "\n" not in v and "\0" not in v)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(NAMES, VALUES, min_size=1, max_size=6))
def test_encode_round_trips(fields: dict[str, str]) -> None:
    assert fields_of(encode(fields)) == fields


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.text(max_size=40), min_size=1, max_size=4))
def test_encode_hostile_input_raises_only_its_error(fields: dict[str, str]) -> None:
    try:
        data = encode(fields)
    except SdNotifyError:
        return
    assert fields_of(data) == fields
