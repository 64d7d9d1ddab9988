"""ocserv's command line as init scripts use it (issue 17), run against ocserv and OCGate.

An init script starts the server without ``-f`` and with ``-p FILE``, then signals the pid
in that file. Each test does the same to Debian's ocserv and to OCGate, so what is expected
is what ocserv does: the launched command returns, the pid file names the detached server,
which serves openconnect, reloads on SIGHUP and removes its pid file when stopped.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.harness import HTTPS_PORT, REPO_ROOT, Client, _listening, make_server_files, ping
from tests.support.netns import TestNet

FOREGROUND = {
    "ocserv": "ocserv -f -d 1 -c {conf}",
    "ocgate": "{python} -m appliance.vpn -f -c {conf}",
}
OCCTL = {"ocserv": "occtl -s {sock}", "ocgate": "{python} -m appliance.vpn.occtl -n -s {sock}"}
BACKGROUND = {
    "ocserv": "ocserv -c {conf}",
    "ocgate": "{python} -m appliance.vpn -c {conf}",
}
VERSION_LINE = {"ocserv": "ocserv 1.1.6", "ocgate": "ocgate-server "}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def _wait(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _foreground(kind: str, net: TestNet, conf, cwd, log_path, prefix=()) -> subprocess.Popen:
    """The server in the foreground in ``net``'s server namespace, started from ``cwd``;
    returns once it listens (the test fails with its log if it exits first)."""
    argv = [*prefix, *shlex.split(FOREGROUND[kind].format(conf=conf, python=sys.executable))]
    with open(log_path, "wb") as out:
        proc = net.server_ns.popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=cwd, env=_env())
    _wait("the listener", lambda: proc.poll() is not None or _listening(proc.pid, HTTPS_PORT),
          30)
    if proc.poll() is not None:
        raise AssertionError(f"server exited: {open(log_path, errors='replace').read()}")
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("NOTIFY_SOCKET", None)
    return env


@pytest.mark.parametrize("kind", ["ocserv", "ocgate"])
def test_version_flags(kind: str) -> None:
    for flag in ("-v", "--version"):
        argv = ["ocserv", flag] if kind == "ocserv" else [sys.executable, "-m", "appliance.vpn",
                                                          flag]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=_env(),
                              cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith(VERSION_LINE[kind]), done.stderr  # ocserv: on stderr


@pytest.mark.parametrize("kind", ["ocserv", "ocgate"])
def test_check_mode_refuses_a_config_without_certificate(kind: str, tmp_path: Path) -> None:
    """``-t`` on a file with no server-cert/server-key: ocserv says it cannot start."""
    (tmp_path / "passwd").write_text("")
    conf = tmp_path / "ocserv.conf"
    conf.write_text(f'auth = "plain[passwd={tmp_path}/passwd]"\ntcp-port = 4443\n'
                    f"ipv4-network = 203.0.113.0/24\nsocket-file = {tmp_path}/sock\n")
    argv = ["ocserv"] if kind == "ocserv" else [sys.executable, "-m", "appliance.vpn"]
    done = subprocess.run([*argv, "-t", "-c", str(conf)], capture_output=True, text=True,
                          timeout=30, env=_env(), cwd=REPO_ROOT)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "'server-cert' and 'server-key'" in done.stderr, done.stderr


@pytest.mark.parametrize("no_chdir", [False, True], ids=["chdir", "no-chdir"])
@pytest.mark.parametrize("kind", ["ocserv", "ocgate"])
def test_background_with_pid_file(kind, no_chdir, net, server_files, make_client, users,
                                  workdir) -> None:
    pid_file = workdir / "from-the-command-line.pid"
    argv = shlex.split(BACKGROUND[kind].format(conf=server_files.conf, python=sys.executable))
    argv += ["--pid-file" if no_chdir else "-p", str(pid_file)]
    if no_chdir:
        argv.append("--no-chdir")
    launcher = net.server_ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, cwd=workdir, env=_env())
    # the launcher's pipes reach EOF: the detached server holds no terminal or pipe of ours
    out, err = launcher.communicate(timeout=90)
    assert launcher.returncode == 0, (out, err)
    _wait("the pid file", lambda: pid_file.exists() and pid_file.read_text().strip(), 30)
    pid = int(pid_file.read_text())
    try:
        assert pid != launcher.pid and _alive(pid)
        assert os.getsid(pid) != os.getsid(0), "the server left our session"
        assert os.readlink(f"/proc/{pid}/cwd") == (str(workdir) if no_chdir else "/")
        assert not server_files.pid_file.exists(), "-p replaces the configured pid-file"
        _wait("the listener", lambda: _listening(pid, HTTPS_PORT), 30)
        client = make_client()
        assert client.connect("alice", users["alice"])
        assert ping(client.ns, net.inside_ip, count=3).ok
        os.kill(pid, signal.SIGHUP)  # what `service ocserv reload` does
        time.sleep(1.0)
        assert _alive(pid)
        assert ping(client.ns, net.inside_ip, count=2).ok, "a reload keeps the session"
        client.disconnect()
        os.kill(pid, signal.SIGTERM)
        _wait("the server to exit", lambda: not _alive(pid), 20)
        _wait("the pid file to go", lambda: not pid_file.exists(), 5)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_background_start_failure_is_the_exit_status(net, server_files, workdir) -> None:
    """A server that cannot start (port taken) makes the launched command fail, so an init
    script sees the failure; ocserv returns 0 and dies later, we wait for READY."""
    blocker = net.server_ns.popen(
        [sys.executable, "-c",
         "import socket,sys,time\n"
         f"s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('0.0.0.0', {HTTPS_PORT})); s.listen(); print('up', flush=True)\n"
         "time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert blocker.stdout is not None and blocker.stdout.readline().strip() == "up"
        pid_file = workdir / "never.pid"
        argv = shlex.split(BACKGROUND["ocgate"].format(conf=server_files.conf,
                                                       python=sys.executable))
        launcher = net.server_ns.popen([*argv, "-p", str(pid_file)], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                       cwd=workdir, env=_env())
        out, err = launcher.communicate(timeout=90)
        assert launcher.returncode == 1, (out, err)
        assert b"exited during start-up" in err
        assert not pid_file.exists()
    finally:
        blocker.kill()
        blocker.wait(5)


#: Runs a command with setsockopt(SO_REUSEPORT) refused, as in a container whose seccomp
#: profile forbids it.
NO_REUSEPORT = """
import errno, os, socket, sys
import pyseccomp as sc
f = sc.SyscallFilter(sc.ALLOW)
f.add_rule(sc.ERRNO(errno.EPERM), "setsockopt", sc.Arg(1, sc.EQ, socket.SOL_SOCKET),
           sc.Arg(2, sc.EQ, socket.SO_REUSEPORT))
f.load()
os.execvp(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.parametrize("kind", ["ocserv", "ocgate"])
def test_refused_reuseport_does_not_stop_the_server(kind, net, server_files, make_client,
                                                    users, workdir) -> None:
    wrapper = workdir / "no-reuseport.py"
    wrapper.write_text(NO_REUSEPORT)
    log_path = workdir / "server.log"
    server = _foreground(kind, net, server_files.conf, REPO_ROOT, log_path,
                         prefix=[sys.executable, str(wrapper)])
    try:
        client = make_client()
        assert client.connect("alice", users["alice"], no_dtls=False)
        assert ping(client.ns, net.inside_ip, count=3).ok
        client.disconnect()
        assert server.poll() is None, log_path.read_text(errors="replace")
        if kind == "ocgate":
            assert "socket option SO_REUSEPORT refused" in log_path.read_text()
    finally:
        _stop(server)


def _with_sockets(conf, socket_file: str, occtl_socket: str) -> None:
    lines = [line for line in conf.read_text().splitlines()
             if not line.startswith(("socket-file", "occtl-socket-file"))]
    conf.write_text("\n".join([*lines, f"socket-file = {socket_file}",
                               f"occtl-socket-file = {occtl_socket}"]) + "\n")


@pytest.mark.parametrize("kind", ["ocserv", "ocgate"])
def test_shared_socket_file_and_a_deep_working_directory(kind, net, server_files, users,
                                                         make_client, workdir) -> None:
    """Two servers started with the same relative socket-file from the same (deep) folder
    both keep serving logins, and occtl reaches each through its relative path."""
    deep = workdir.joinpath(*["a-rather-long-folder-name"] * 5)
    deep.mkdir(parents=True)
    os.chmod(workdir, 0o755)
    assert len(str(deep / "vpn.socket")) > 108, "deeper than AF_UNIX's sun_path"
    _with_sockets(server_files.conf, "vpn.socket", "occtl-a.socket")
    procs = []
    with TestNet() as net_b:
        files_b = make_server_files(workdir / "b", net_b, users=users)
        _with_sockets(files_b.conf, "vpn.socket", "occtl-b.socket")
        try:
            procs.append(_foreground(kind, net, server_files.conf, deep, workdir / "a.log"))
            procs.append(_foreground(kind, net_b, files_b.conf, deep, workdir / "b.log"))
            # a login on the first after the second started: its sec-mod socket survived
            clients = [make_client(), Client(net_b, files_b, link=net_b.primary, name="b")]
            try:
                for client, n in zip(clients, (net, net_b), strict=True):
                    assert client.connect("alice", users["alice"])
                    assert ping(client.ns, n.inside_ip, count=2).ok
                for n, sock in ((net, "occtl-a.socket"), (net_b, "occtl-b.socket")):
                    argv = shlex.split(OCCTL[kind].format(sock=sock, python=sys.executable))
                    done = n.server_ns.run([*argv, "show", "users"], check=False, timeout=15,
                                           cwd=deep, env=_env())
                    assert done.returncode == 0 and "alice" in done.stdout, done
            finally:
                clients[1].close()
        finally:
            for proc in procs:
                _stop(proc)
