"""connect/disconnect scripts: ocserv's environment, deadlines, failures."""

from __future__ import annotations

import os
import selectors
import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from appliance.vpn.main.scripts import ScriptError, ScriptJob, format_route, script_env


def make_script(tmp_path: Path, body: str, name: str = "hook.sh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def connect_env(**overrides: object) -> dict[str, str]:
    args: dict[str, object] = dict(
        reason="connect",
        username="alice",
        groupname="staff",
        hostname="vm",
        device="vpns0",
        user_agent="Open AnyConnect VPN Agent v9.01-3",
        device_type=None,
        platform=None,
        ip_real="198.18.0.102",
        ip_real_local="198.18.0.101",
        ip_local=IPv4Address("203.0.113.1"),
        ip_remote=IPv4Address("203.0.113.50"),
        worker_id=4242,
        routes=[IPv4Network("198.51.100.0/24"), IPv6Network("2001:db8::/32")],
        no_routes=["192.168.0.0/16"],
        dns=[IPv4Address("198.51.100.53"), IPv6Address("2001:db8::53")],
    )
    args.update(overrides)
    return script_env(**args)  # type: ignore[arg-type]


def test_env_matches_ocserv() -> None:
    env = connect_env()
    assert env == {
        "ID": "4242",
        "IP_REAL": "198.18.0.102",
        "IP_REAL_LOCAL": "198.18.0.101",
        "IP_LOCAL": "203.0.113.1",
        "IP_REMOTE": "203.0.113.50",
        "VHOST": "default",
        "USERNAME": "alice",
        "GROUPNAME": "staff",
        "HOSTNAME": "vm",
        "REMOTE_HOSTNAME": "vm",
        "DEVICE": "vpns0",
        "USER_AGENT": "Open AnyConnect VPN Agent v9.01-3",
        "DEVICE_TYPE": "",
        "DEVICE_PLATFORM": "",
        "REASON": "connect",
        "OCSERV_ROUTES": "198.51.100.0/255.255.255.0 2001:db8::/32 ",
        "OCSERV_ROUTES4": "198.51.100.0/255.255.255.0 ",
        "OCSERV_ROUTES6": "2001:db8::/32 ",
        "OCSERV_NO_ROUTES": "192.168.0.0/255.255.0.0 ",
        "OCSERV_NO_ROUTES4": "192.168.0.0/255.255.0.0 ",
        "OCSERV_DNS": "198.51.100.53 2001:db8::53 ",
        "OCSERV_DNS4": "198.51.100.53 ",
        "OCSERV_DNS6": "2001:db8::53 ",
    }


def test_env_disconnect_ipv6_and_options() -> None:
    env = connect_env(
        reason="disconnect",
        stats=(1000, 2000, 33),
        ip_local=None,
        ip_remote=None,
        ipv6_local=IPv6Address("fd00::1"),
        ipv6_remote=IPv6Address("fd00::1:2"),
        ipv6_prefix=64,
        routes=[],
        no_routes=[],
        dns=[],
        restrict_to_routes=True,
        vhost="vpn.example",
        allow_ports="tcp 22 udp 53 ",
        next_script="/etc/ocserv/user-hook",
    )
    assert env["REASON"] == "disconnect"
    assert (env["STATS_BYTES_IN"], env["STATS_BYTES_OUT"], env["STATS_DURATION"]) == (
        "1000", "2000", "33")
    assert "IP_LOCAL" not in env and "IP_REMOTE" not in env
    ipv6 = (env["IPV6_LOCAL"], env["IPV6_REMOTE"], env["IPV6_PREFIX"])
    assert ipv6 == ("fd00::1", "fd00::1:2", "64")
    assert not any(k.startswith(("OCSERV_ROUTES", "OCSERV_DNS")) for k in env)
    assert env["OCSERV_RESTRICT_TO_ROUTES"] == "1"
    assert env["VHOST"] == "vpn.example"
    assert env["OCSERV_ALLOW_PORTS"] == "tcp 22 udp 53 "
    assert env["OCSERV_NEXT_SCRIPT"] == "/etc/ocserv/user-hook"
    assert "STATS_BYTES_IN" not in connect_env(stats=(1, 2, 3))  # connect: never stats


def test_env_rejects_bad_values() -> None:
    with pytest.raises(ScriptError):
        connect_env(reason="up")
    with pytest.raises(ScriptError):
        connect_env(hostname="a\0b")
    with pytest.raises(ScriptError):
        connect_env(routes=["not-a-route"])
    assert format_route("10.0.0.0/8") == "10.0.0.0/255.0.0.0"


def test_script_sees_env_and_no_stdin(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "env.txt"
    path = make_script(tmp_path, f'env > "{out}"; cat > "{out}.stdin"; echo to-stdout\nexit 0\n')
    job = ScriptJob(path, connect_env(), timeout=10)
    assert job.wait() == 0
    job.close()
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert lines["USERNAME"] == "alice" and lines["REASON"] == "connect"
    assert lines["OCSERV_ROUTES4"] == "198.51.100.0/255.255.255.0 "
    assert lines["IP_REMOTE"] == "203.0.113.50"
    assert "PATH" in lines  # inherited, as ocserv's children inherit main's environment
    assert (tmp_path / "env.txt.stdin").read_text() == ""
    captured = capfd.readouterr()
    assert "to-stdout" in captured.err and "to-stdout" not in captured.out


def test_env_not_inherited_on_request(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    os.environ["OCG_TEST_SECRET_VAR"] = "1"
    try:
        path = make_script(tmp_path, f'env > "{out}"\n')
        job = ScriptJob(path, {"REASON": "connect"}, timeout=10, inherit_env=False)
        assert job.wait() == 0
        job.close()
    finally:
        del os.environ["OCG_TEST_SECRET_VAR"]
    text = out.read_text()
    assert "OCG_TEST_SECRET_VAR" not in text and "REASON=connect" in text


def test_nonzero_exit_is_propagated(tmp_path: Path) -> None:
    with ScriptJob(make_script(tmp_path, "exit 3\n"), {}, timeout=10) as job:
        assert job.wait() == 3
        assert job.poll(time.monotonic()) == 3 and job.result == 3


def test_missing_and_non_executable_scripts(tmp_path: Path) -> None:
    with ScriptJob(str(tmp_path / "nope"), {}, timeout=5) as job:
        assert job.poll(time.monotonic()) == 127
        assert job.fileno() >= 0
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\nexit 0\n")
    plain.chmod(0o644)
    with ScriptJob(str(plain), {}, timeout=5) as job:
        assert job.wait(1) == 126
    with ScriptJob(str(tmp_path), {}, timeout=5) as job:  # a directory
        assert job.wait(1) not in (0, None)


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_timeout_kills_script_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    path = make_script(tmp_path, f'sleep 100 &\necho $! > "{pidfile}"\nsleep 100\n')
    start = time.monotonic()
    job = ScriptJob(path, {}, timeout=0.5, now=start)
    sel = selectors.DefaultSelector()
    sel.register(job, selectors.EVENT_READ)
    result = None
    while result is None:
        sel.select(timeout=0.1)
        result = job.poll(time.monotonic())
    elapsed = time.monotonic() - start
    sel.unregister(job)
    job.close()
    assert result == -9
    assert 0.4 < elapsed < 2.0
    child = int(pidfile.read_text())
    for _ in range(50):
        if not pid_alive(child):
            break
        time.sleep(0.02)
    assert not pid_alive(child)


def test_selector_wakes_on_exit(tmp_path: Path) -> None:
    job = ScriptJob(make_script(tmp_path, "sleep 0.2\nexit 7\n"), {}, timeout=10)
    assert job.poll(time.monotonic()) is None
    sel = selectors.DefaultSelector()
    sel.register(job, selectors.EVENT_READ)
    assert sel.select(timeout=5), "pidfd never became readable"
    assert job.poll(time.monotonic()) == 7
    sel.unregister(job)
    job.close()


def test_wait_with_short_timeout_returns_none(tmp_path: Path) -> None:
    with ScriptJob(make_script(tmp_path, "sleep 5\n"), {}, timeout=30) as job:
        assert job.wait(0.1) is None
        assert job.poll(job.deadline) == -9  # the caller's clock says the deadline passed
