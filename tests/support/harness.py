"""End-to-end harness: a VPN server in one namespace, real ``openconnect`` in another.

The same tests run against Debian's ocserv (to prove the harness and to pin
down reference behaviour) and against OCGate; which one is chosen by the
server command template (:func:`server_command`, env ``OCGATE_E2E_SERVER``).

Typical use inside a test (fixtures from ``conftest.py``)::

    def test_login(net, server, client, server_files):
        assert client.connect("alice", server_files.users["alice"])
        assert client.env()["INTERNAL_IP4_ADDRESS"].startswith("203.0.113.")
        assert ping(net.client_ns, net.inside_ip).ok

Run as ``python3 -m tests.support.harness xfer ...`` this module is also the tiny
TCP sender/receiver that :func:`transfer` starts inside the namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import secrets
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import psutil
from passlib.hash import sha256_crypt

from appliance import pki
from tests.support.netns import Link, Netns, TestNet

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
VPNC_SCRIPT = Path("/usr/share/vpnc-scripts/vpnc-script")
HTTPS_PORT = 443
ENV_SERVER = "OCGATE_E2E_SERVER"
ENV_OCCTL = "OCGATE_E2E_OCCTL"

#: Named server command templates. ``{conf}`` = config path, ``{dir}`` = work dir,
#: ``{port}`` = TCP port, ``{python}`` = this interpreter.
SERVER_COMMANDS: dict[str, str] = {
    "ocserv": "ocserv -f -d 1 -c {conf}",
    "ocgate": "{python} -m appliance.vpn -f -c {conf}",
}
DEFAULT_SERVER = "ocgate"
DEFAULT_OCCTL = "occtl -s {sock}"
OCGATE_OCCTL = "{python} -m appliance.vpn.occtl -n -s {sock}"

DEFAULT_BANNER = "OCGate end-to-end test server"
DEFAULT_DOMAIN = "e2e.test"
#: ocserv's sample priorities without TLS 1.3, as cisco-client-compat does (docs/protocol.md §10.4).
TLS_PRIORITIES = (
    "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1:-VERS-TLS1.3"
)
#: The variables the vpnc-script wrapper records (everything the server pushed).
_ENV_NAMES = (
    r"(reason|VPNGATEWAY|VPNPID|TUNDEV|LOG_LEVEL|IDLE_TIMEOUT"
    r"|INTERNAL_[A-Za-z0-9_]+|CISCO_[A-Za-z0-9_]+)"
)
ENV_KEYS = re.compile(rf"^{_ENV_NAMES}$")


class HarnessError(RuntimeError):
    """The test environment (not the server under test) did something unexpected."""


class ServerStartError(HarnessError):
    """The server under test did not come up; the message carries its log."""


class ClientError(HarnessError):
    """openconnect failed where the test expected success; the message carries its log."""


def tail_lines(text: str, lines: int = 40) -> str:
    """The end of a log: enough to diagnose, short enough for an assertion message."""
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------- server files


@dataclass
class ServerFiles:
    """Everything one server instance reads, all inside ``dir``."""

    dir: Path
    conf: Path
    cert: Path
    key: Path
    ca: Path
    ca_key: Path
    passwd: Path
    pin: str  # pin-sha256:... of the server key, for openconnect --servercert
    sha1: str  # upper-case SHA-1 of the certificate (ocserv's webvpnc sh:)
    device: str  # tun name prefix in the server namespace
    users: dict[str, str]  # username -> password
    socket_file: Path
    occtl_socket: Path
    pid_file: Path
    conf_lines: list[str] = field(default_factory=list)


def _check_traversable(directory: Path) -> None:
    """Workers drop to ``nobody``; they must be able to walk into ``directory``."""
    for part in [directory, *directory.parents]:
        if not part.stat().st_mode & stat.S_IXOTH:
            raise HarnessError(
                f"{part} is not searchable by other users (mode "
                f"{stat.filemode(part.stat().st_mode)}); the server's unprivileged "
                "workers could not reach their sockets. Use a directory under /tmp "
                "with mode 0755."
            )


def _write(path: Path, text: str, mode: int) -> None:
    """Create with ``mode`` from the start: the password file is never world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(text)


def write_passwd(
    path: Path, users: Mapping[str, str], groups: Mapping[str, str] | None = None
) -> None:
    """ocpasswd-format file (``user:group:$5$...``), rounds 5000 like ocpasswd itself."""
    hasher = sha256_crypt.using(rounds=5000)
    lines = []
    for user, password in users.items():
        if not user or any(c in user for c in ":\n\r") or "\n" in password:
            raise HarnessError(f"username {user!r} cannot go into an ocpasswd file")
        group = (groups or {}).get(user, "*")
        lines.append(f"{user}:{group}:{hasher.hash(password)}\n")
    _write(path, "".join(lines), 0o600)


def make_server_files(
    tmpdir: Path,
    net: TestNet,
    *,
    users: Mapping[str, str],
    extra_conf: Sequence[str] = (),
    key_type: str = "ec",
    isolate_workers: bool = True,
    udp: bool = True,
    compression: bool = False,
    banner: str = DEFAULT_BANNER,
    default_domain: str = DEFAULT_DOMAIN,
    connect_script: Path | None = None,
    disconnect_script: Path | None = None,
) -> ServerFiles:
    """Write CA, server certificate, password file and an ocserv.conf into ``tmpdir``.

    The option set is the one the vpnrig used against ocserv 1.1.6, so every
    name is valid for 1.1.6 as well as for newer ocserv releases.  Bans and
    rate limits are off because tests log in many times in quick succession
    and fail logins on purpose.  ``compression`` defaults to off so that a
    server without LZ4/LZS support still passes the basic tests.
    """
    tmpdir = Path(tmpdir).resolve()
    tmpdir.mkdir(parents=True, exist_ok=True)
    tmpdir.chmod(0o755)
    _check_traversable(tmpdir)

    ca_key, ca = pki.make_ca("OCGate e2e throwaway CA", days=2)
    key, cert = pki.make_server_cert(
        ca_key, ca, names=["vpn.e2e.test"], addresses=[net.server_ip], key_type=key_type, days=2
    )
    files = ServerFiles(
        dir=tmpdir,
        conf=tmpdir / "ocserv.conf",
        cert=tmpdir / "server-cert.pem",
        key=tmpdir / "server-key.pem",
        ca=tmpdir / "ca-cert.pem",
        ca_key=tmpdir / "ca-key.pem",
        passwd=tmpdir / "ocpasswd",
        pin=pki.pin_sha256(cert),
        sha1=pki.sha1_fingerprint_hex(cert),
        device=f"ocgt{net.block}",
        users=dict(users),
        socket_file=tmpdir / "ocserv.sock",
        occtl_socket=tmpdir / "occtl.sock",
        pid_file=tmpdir / "ocserv.pid",
    )
    pki.write_key(files.ca_key, ca_key)
    pki.write_cert(files.ca, ca)
    pki.write_key(files.key, key)
    pki.write_cert(files.cert, cert)
    write_passwd(files.passwd, users)

    pool = net.pool.split("/")[0]
    lines = [
        "# ocserv.conf for one end-to-end test (written by tests/support/harness.py)",
        f'auth = "plain[passwd={files.passwd}]"',
        f"tcp-port = {HTTPS_PORT}",
        *([f"udp-port = {HTTPS_PORT}"] if udp else []),
        "run-as-user = nobody",
        "run-as-group = nogroup",
        f"socket-file = {files.socket_file}",
        f"occtl-socket-file = {files.occtl_socket}",
        "use-occtl = true",
        f"pid-file = {files.pid_file}",
        f"server-cert = {files.cert}",
        f"server-key = {files.key}",
        f"isolate-workers = {str(isolate_workers).lower()}",
        f'banner = "{banner}"',
        "max-clients = 16",
        "max-same-clients = 0",
        "rate-limit-ms = 0",
        "max-ban-score = 0",
        "min-reauth-time = 0",
        "auth-timeout = 240",
        "cookie-timeout = 300",
        "deny-roaming = false",
        "keepalive = 32400",
        "dpd = 90",
        "mobile-dpd = 1800",
        "switch-to-tcp-timeout = 25",
        "try-mtu-discovery = false",
        f'tls-priorities = "{TLS_PRIORITIES}"',
        "rekey-time = 172800",
        "rekey-method = ssl",
        f"device = {files.device}",
        "predictable-ips = true",
        f"default-domain = {default_domain}",
        f"ipv4-network = {pool}",
        "ipv4-netmask = 255.255.255.0",
        f"dns = {net.dns}",
        "ping-leases = false",
        f"route = {net.route}",
        "cisco-client-compat = true",
        "dtls-legacy = true",
        f"compression = {str(compression).lower()}",
        "no-compress-limit = 256",
        *([f"connect-script = {connect_script}"] if connect_script else []),
        *([f"disconnect-script = {disconnect_script}"] if disconnect_script else []),
        *extra_conf,
    ]
    files.conf_lines = lines
    _write(files.conf, "\n".join(lines) + "\n", 0o644)
    return files


# ---------------------------------------------------------------- server


def server_command(kind: str | None = None) -> str:
    """Command template for ``kind`` (default: env ``OCGATE_E2E_SERVER``, else ocgate).

    ``kind`` is ``ocserv``, ``ocgate`` or a literal template containing ``{conf}``.
    """
    kind = kind or os.environ.get(ENV_SERVER) or DEFAULT_SERVER
    if kind in SERVER_COMMANDS:
        return SERVER_COMMANDS[kind]
    if "{conf}" in kind:
        return kind
    raise HarnessError(
        f"{ENV_SERVER}={kind!r}: expected one of {sorted(SERVER_COMMANDS)} "
        "or a command template containing {conf}"
    )


def _tcp_tables(pid: int, ns: Netns | None) -> list[str]:
    """Rows of /proc/net/tcp{,6} of ``pid``'s namespace, or of ``ns`` (read from inside)."""
    if ns is not None:
        out = ns.run(["cat", "/proc/net/tcp", "/proc/net/tcp6"], check=False).stdout
        return [row for row in out.splitlines() if not row.lstrip().startswith("sl")]
    rows: list[str] = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            rows += Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
    return rows


def _listening_inodes(pid: int, port: int, ns: Netns | None = None) -> set[str]:
    """Inodes of TCP sockets listening on ``port`` in ``pid``'s network namespace (or in
    ``ns``, where a server with listen-netns opens them)."""
    want = f":{port:04X}"
    inodes = set()
    for row in _tcp_tables(pid, ns):
        cols = row.split()
        if len(cols) > 9 and cols[1].endswith(want) and cols[3] == "0A":
            inodes.add(cols[9])
    return inodes


def _listening(pid: int, port: int, ns: Netns | None = None) -> bool:
    """True once ``pid`` or one of its descendants holds a socket listening on ``port``.

    Checking ownership (not just "something listens in the namespace") keeps a
    stray listener, e.g. a server from a previous start, from passing as ours.
    No ``ss`` is spawned: /proc is read directly.
    """
    inodes = _listening_inodes(pid, port, ns)
    if not inodes:
        return False
    targets = {f"socket:[{inode}]" for inode in inodes}
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return False
    for proc in procs:
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{proc.pid}/fd/{fd}") in targets:
                    return True
    return False


class Server:
    """The server under test, running in the server namespace in the foreground.

    ``run_ns``: start it in that namespace instead; its listening sockets are then looked
    for in the server namespace, where ``listen-netns`` (naming it) puts them.
    """

    def __init__(self, net: TestNet, files: ServerFiles, command: str | None = None, *,
                 run_ns: Netns | None = None) -> None:
        self.net = net
        self.files = files
        self.run_ns = run_ns or net.server_ns
        self._listen_ns = None if run_ns is None else net.server_ns
        self.template = command or server_command()
        self.argv = shlex.split(
            self.template.format(
                conf=files.conf,
                dir=files.dir,
                port=HTTPS_PORT,
                python=sys.executable,
            )
        )
        self.log_path = files.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Server({' '.join(self.argv)!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 15.0) -> Server:
        """Start the server and wait until TCP 443 listens in its namespace."""
        if self.running:
            raise HarnessError("server already running")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["OCGATE_E2E_CONF"] = str(self.files.conf)
        log.info("starting %s in %s", " ".join(self.argv), self.run_ns.name)
        with self.log_path.open("wb") as out:
            self.proc = self.run_ns.popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"server exited with {self.proc.returncode} during start:\n"
                    f"{tail_lines(self.log)}"
                )
            if _listening(self.proc.pid, HTTPS_PORT, self._listen_ns):
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(
            f"server not listening on tcp/{HTTPS_PORT} after {timeout}s:\n{tail_lines(self.log)}"
        )

    def assert_running(self) -> None:
        """Fail loudly (with the log) if the server died during the test."""
        if not self.running:
            rc = self.proc.returncode if self.proc else None
            raise HarnessError(f"server is not running (exit code {rc}):\n{tail_lines(self.log)}")

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None: never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("server ignored SIGTERM for %.1fs; killing it", timeout)
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def occtl(
        self, *args: str, check: bool = True, timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the control tool (env ``OCGATE_E2E_OCCTL``, default occtl) in the server ns."""
        template = os.environ.get(ENV_OCCTL) or (
            DEFAULT_OCCTL if "ocserv" in self.argv[0] else OCGATE_OCCTL)
        argv = shlex.split(template.format(sock=self.files.occtl_socket, python=sys.executable))
        return self.net.server_ns.run([*argv, *args], check=check, timeout=timeout)


# ---------------------------------------------------------------- client

WRAPPER_TEMPLATE = """#!/bin/sh
# vpnc-script wrapper for one e2e test client (tests/support/harness.py).
# 1. records what the server pushed, NUL-separated, for the test to read;
# 2. drops every DNS setting so the client namespace's resolv.conf is never touched;
# 3. runs the distribution's vpnc-script and logs when it finished.
umask 077
dir=${{OCG_E2E_DUMP_DIR:-{default_dir}}}
stamp=$(date +%s%N)
env -0 | grep -zE '{pattern}' > "$dir/env.$stamp.$reason"
unset INTERNAL_IP4_DNS INTERNAL_IP6_DNS CISCO_DEF_DOMAIN CISCO_SPLIT_DNS
{vpnc_script} "$@"
rc=$?
echo "$stamp $reason $rc" >> "$dir/events"
exit $rc
"""


def parse_env_dump(data: bytes) -> dict[str, str]:
    """Parse ``env -0`` output; values may span lines (banners)."""
    env: dict[str, str] = {}
    for record in data.split(b"\0"):
        name, sep, value = record.decode("utf-8", "replace").partition("=")
        if sep and ENV_KEYS.match(name):
            env[name] = value
    return env


def parse_authenticate_output(text: str) -> dict[str, str]:
    """``openconnect --authenticate`` prints shell assignments: COOKIE='...' HOST='...' ..."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Z_]+)=(.*)$", line)
        if match:
            words = shlex.split(match.group(2)) if match.group(2) else [""]
            result[match.group(1)] = words[0] if words else ""
    return result


@dataclass
class Event:
    """One vpnc-script invocation that has finished."""

    stamp: int
    reason: str
    rc: int


_TUN_NUMBERS = itertools.count()


class Client:
    """openconnect in a client namespace; one connection at a time.

    Each :meth:`connect` is an *attempt* with its own log and env dumps, so a
    test can connect, disconnect and connect again and still read the right
    files.  ``log`` and ``env()`` always refer to the latest attempt.
    """

    def __init__(
        self,
        net: TestNet,
        files: ServerFiles,
        *,
        link: Link | None = None,
        name: str | None = None,
        tun: str | None = None,
    ) -> None:
        self.net = net
        self.files = files
        self.link = link or net.primary
        self.ns: Netns = self.link.ns
        self.name = name or f"client{self.link.index}"
        self.url = f"https://{self.link.server_ip}/"
        # Distinct per client so that two clients in one namespace never fight
        # over the name ("TUNSETIFF: Device or resource busy").
        self.tun = tun or f"ocgtun{next(_TUN_NUMBERS)}"
        self.dir = files.dir / self.name
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self.wrapper = self.dir / "vpnc-wrapper.sh"
        _write(
            self.wrapper,
            WRAPPER_TEMPLATE.format(
                default_dir=self.dir,
                pattern=f"^{_ENV_NAMES}=",
                vpnc_script=VPNC_SCRIPT,
            ),
            0o700,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.attempt = 0
        self.attempt_dir = self.dir
        self._log_path: Path | None = None

    def __repr__(self) -> str:
        return f"Client({self.name!r}, ns={self.ns.name}, attempt={self.attempt})"

    # ------------------------------------------------------------ attempts
    def _new_attempt(self, label: str) -> Path:
        self.attempt += 1
        self.attempt_dir = self.dir / f"{self.attempt:02d}-{label}"
        self.attempt_dir.mkdir(mode=0o700)
        self._log_path = self.attempt_dir / "openconnect.log"
        self.returncode = None
        return self.attempt_dir

    def common_args(self) -> list[str]:
        return [
            "openconnect",
            "-v",
            "--non-inter",
            "--servercert",
            self.files.pin,
            "--script",
            str(self.wrapper),
            "--interface",
            self.tun,
        ]

    def _start(self, label: str, secret: str, args: Sequence[str], url: str | None) -> None:
        """Start openconnect with ``secret`` (password or cookie) on stdin."""
        if self.running:
            self.disconnect()
        attempt = self._new_attempt(label)
        argv = [*self.common_args(), *args, url or self.url]
        (attempt / "argv").write_text(shlex.join(argv) + "\n")
        env = dict(os.environ, OCG_E2E_DUMP_DIR=str(attempt))
        assert self._log_path is not None
        with self._log_path.open("wb") as out:
            self.proc = self.ns.popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(secret.encode() + b"\n")
            self.proc.stdin.close()

    def connect(
        self,
        user: str,
        password: str,
        *,
        extra_args: Sequence[str] = (),
        no_dtls: bool = True,
        timeout: float = 20.0,
        url: str | None = None,
    ) -> bool:
        """Log in with a password; True once the tunnel is up, False if openconnect exited.

        Raises :class:`ClientError` if neither happens within ``timeout``.
        """
        args = ["-u", user, "--passwd-on-stdin", *(["--no-dtls"] if no_dtls else []), *extra_args]
        self._start("password", password, args, url)
        return self.wait_up(timeout)

    def connect_with_cookie(
        self,
        cookie: str,
        *,
        extra_args: Sequence[str] = (),
        no_dtls: bool = True,
        timeout: float = 20.0,
        url: str | None = None,
    ) -> bool:
        """Connect with a cookie from :meth:`authenticate` (no auth round trips)."""
        args = ["--cookie-on-stdin", *(["--no-dtls"] if no_dtls else []), *extra_args]
        self._start("cookie", cookie, args, url)
        return self.wait_up(timeout)

    def authenticate(
        self,
        user: str,
        password: str,
        *,
        extra_args: Sequence[str] = (),
        check: bool = True,
        timeout: float = 20.0,
    ) -> dict[str, str]:
        """``openconnect --authenticate``: returns COOKIE, HOST, CONNECT_URL, FINGERPRINT, RESOLVE.

        With ``check=False`` a failed login returns ``{}`` and leaves the exit
        code in :attr:`returncode` and the messages in :attr:`log`.
        """
        if self.running:
            self.disconnect()
        attempt = self._new_attempt("authenticate")
        argv = [
            "openconnect",
            "-v",
            "--authenticate",
            "--non-inter",
            "--servercert",
            self.files.pin,
            "-u",
            user,
            "--passwd-on-stdin",
            *extra_args,
            self.url,
        ]
        (attempt / "argv").write_text(shlex.join(argv) + "\n")
        proc = self.ns.run(argv, check=False, timeout=timeout, input=password + "\n")
        assert self._log_path is not None
        self._log_path.write_text(proc.stderr)
        self.returncode = proc.returncode
        if proc.returncode != 0:
            if check:
                raise ClientError(
                    f"--authenticate failed with {proc.returncode}:\n{tail_lines(proc.stderr)}"
                )
            return {}
        return parse_authenticate_output(proc.stdout)

    # ------------------------------------------------------------ waiting
    def events(self) -> list[Event]:
        """vpnc-script invocations of the current attempt, in order."""
        try:
            lines = (self.attempt_dir / "events").read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0].isdigit():
                out.append(
                    Event(
                        int(parts[0]),
                        parts[1],
                        int(parts[2]) if parts[2].lstrip("-").isdigit() else -1,
                    )
                )
        return out

    def wait_up(self, timeout: float = 20.0) -> bool:
        """Wait for vpnc-script ``connect`` (tunnel up, routes set) or openconnect's exit."""
        if self.proc is None:
            raise HarnessError("no openconnect process was started")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event.reason == "connect":
                    if event.rc != 0:
                        raise ClientError(
                            f"vpnc-script connect failed (rc {event.rc}):\n{tail_lines(self.log)}"
                        )
                    return True
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                return False
            time.sleep(0.02)
        self.disconnect(timeout=3.0)
        raise ClientError(f"tunnel not up after {timeout}s:\n{tail_lines(self.log)}")

    def wait_dtls(self, timeout: float = 10.0) -> bool:
        """Wait until openconnect reports the DTLS channel up (it moves traffic there itself)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Established DTLS connection" in self.log:
                return True
            if not self.running:
                return False
            time.sleep(0.02)
        return False

    def wait_exit(self, timeout: float = 15.0) -> int | None:
        """Wait for openconnect to exit by itself (e.g. server-side disconnect); None on timeout."""
        if self.proc is None:
            return self.returncode
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def disconnect(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        """Signal openconnect (SIGINT = logout, SIGHUP = keep the session) and wait for its exit."""
        if self.proc is None:
            raise HarnessError("disconnect() without a running client")
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("openconnect ignored signal %s for %.1fs; killing it", sig, timeout)
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        return self.returncode

    def close(self) -> None:
        if self.running:
            self.disconnect(timeout=3.0)

    # ------------------------------------------------------------ results
    @property
    def log(self) -> str:
        """openconnect's output (stdout+stderr) of the latest attempt."""
        if self._log_path is None:
            return ""
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def env(self, reason: str = "connect") -> dict[str, str]:
        """What the server pushed, as vpnc-script saw it, for the latest ``reason`` call."""
        dumps = sorted(self.attempt_dir.glob(f"env.*.{reason}"))
        if not dumps:
            raise HarnessError(f"no vpnc-script {reason!r} call in attempt {self.attempt_dir.name}")
        return parse_env_dump(dumps[-1].read_bytes())

    def address(self) -> str:
        return self.env()["INTERNAL_IP4_ADDRESS"]

    def cstp_headers(self) -> dict[str, str]:
        """The server's X-CSTP-* CONNECT response headers (openconnect's CISCO_CSTP_OPTIONS)."""
        headers: dict[str, str] = {}
        for line in self.env().get("CISCO_CSTP_OPTIONS", "").splitlines():
            name, sep, value = line.partition("=")
            if sep:
                headers[name] = value
        return headers

    def split_includes(self) -> list[str]:
        """CISCO_SPLIT_INC_<n>_ADDR/MASKLEN pairs as CIDR strings."""
        env = self.env()
        count = int(env.get("CISCO_SPLIT_INC", "0"))
        return [
            f"{env[f'CISCO_SPLIT_INC_{i}_ADDR']}/{env[f'CISCO_SPLIT_INC_{i}_MASKLEN']}"
            for i in range(count)
        ]


# ---------------------------------------------------------------- traffic helpers


class PingResult(NamedTuple):
    sent: int
    received: int
    avg_ms: float | None

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.received == self.sent


def ping(
    ns: Netns, addr: str, count: int = 3, *, interval: float = 0.2, wait: float = 2.0
) -> PingResult:
    """ICMP echo from ``ns`` to ``addr``; never raises on loss."""
    proc = ns.run(
        ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait), addr],
        check=False,
        timeout=count * (interval + wait) + 5,
    )
    sent = received = 0
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", proc.stdout)
    if match:
        sent, received = int(match.group(1)), int(match.group(2))
    rtt = re.search(r"= [\d.]+/([\d.]+)/", proc.stdout)
    return PingResult(sent, received, float(rtt.group(1)) if rtt else None)


class TransferResult(NamedTuple):
    sha_sent: str
    sha_received: str
    seconds: float


def _xfer_argv(role: str, action: str, host: str, port: int, nbytes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.support.harness",
        "xfer",
        role,
        action,
        host,
        str(port),
        str(nbytes),
    ]


def transfer(
    net: TestNet,
    nbytes: int = 50_000_000,
    direction: str = "up",
    *,
    link: Link | None = None,
    timeout: float = 60.0,
    text: bool = False,
    host: str | None = None,
) -> TransferResult:
    """Push ``nbytes`` of random data (``text``: compressible log-like lines) through the
    tunnel and hash both ends.

    The client always opens the TCP connection (to the inside address) so
    that no route back to the client's VPN address has to be known; the
    direction only decides who sends.  ``seconds`` is measured by the receiver.
    ``host`` is the inside address to use (default ``net.inside_ip``; e.g. ``net.inside_ip6``).
    """
    return transfer_between(net.server_ns, (link or net.primary).ns, host or net.inside_ip,
                            nbytes, direction, timeout=timeout, text=text)


def transfer_between(
    server_ns: Netns,
    client_ns: Netns,
    target: str,
    nbytes: int,
    direction: str = "up",
    *,
    timeout: float = 60.0,
    text: bool = False,
) -> TransferResult:
    """:func:`transfer` between any two namespaces: the listener on ``target`` in
    ``server_ns``, the connecting side in ``client_ns`` (rigs other than TestNet's)."""
    if direction not in ("up", "down"):
        raise ValueError("direction must be 'up' or 'down'")
    server_action, client_action = ("recv", "send") if direction == "up" else ("send", "recv")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OCG_XFER_TEXT="1" if text else "")
    listener = server_ns.popen(
        _xfer_argv("listen", server_action, target, 0, nbytes),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        port = _read_listening_port(listener)
        connector = client_ns.run(
            _xfer_argv("connect", client_action, target, port, nbytes),
            timeout=timeout,
            cwd=REPO_ROOT,
            env=env,
        )
        out, err = listener.communicate(timeout=timeout)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(5)
    if listener.returncode != 0:
        raise HarnessError(f"transfer listener failed: {err.strip()}")
    server_result = json.loads(out.strip().splitlines()[-1])
    client_result = json.loads(connector.stdout.strip().splitlines()[-1])
    sender, receiver = (
        (client_result, server_result) if direction == "up" else (server_result, client_result)
    )
    if receiver["bytes"] != nbytes:
        log.warning("receiver got %d of %d bytes", receiver["bytes"], nbytes)
    return TransferResult(sender["sha256"], receiver["sha256"], receiver["seconds"])


def _read_listening_port(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline and not line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    match = re.match(r"LISTENING (\d+)", line)
    if not match:
        err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        raise HarnessError(f"transfer listener did not start: {line!r} {err}")
    return int(match.group(1))


def iperf3(
    net: TestNet,
    seconds: float = 3.0,
    *,
    reverse: bool = False,
    link: Link | None = None,
    extra_args: Sequence[str] = (),
) -> dict[str, Any]:
    """One iperf3 run from the client to the inside host; returns iperf3's ``end`` JSON."""
    port = 5201 + secrets.randbelow(1000)
    server = net.server_ns.popen(
        ["iperf3", "-s", "-1", "-B", net.inside_ip, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not net.server_ns.tcp_listening(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise HarnessError("iperf3 server did not start")
            time.sleep(0.05)
        argv = [
            "iperf3",
            "-c",
            net.inside_ip,
            "-p",
            str(port),
            "-t",
            str(seconds),
            "-J",
            *(["-R"] if reverse else []),
            *extra_args,
        ]
        proc = (link or net.primary).ns.run(argv, timeout=seconds + 30)
        return json.loads(proc.stdout)["end"]
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(5)


# ---------------------------------------------------------------- xfer subprocess


def _xfer_send(sock: socket.socket, nbytes: int) -> dict[str, Any]:
    digest = hashlib.sha256()
    remaining = nbytes
    start = time.monotonic()
    text = os.environ.get("OCG_XFER_TEXT") == "1"
    line = 0
    while remaining > 0:
        size = min(remaining, 256 * 1024)
        if text:  # compressible but never constant: numbered log lines
            lines: list[bytes] = []
            while sum(map(len, lines)) < size:
                line += 1
                lines.append(b"%08d INFO ocgate test line with some repeated words %d\n"
                             % (line, line % 97))
            chunk = b"".join(lines)[:size]
        else:
            chunk = os.urandom(size)
        digest.update(chunk)
        sock.sendall(chunk)
        remaining -= len(chunk)
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(4096):  # the receiver closes once it has hashed everything
        pass
    return {"sha256": digest.hexdigest(), "bytes": nbytes, "seconds": time.monotonic() - start}


def _xfer_recv(sock: socket.socket) -> dict[str, Any]:
    digest = hashlib.sha256()
    total = 0
    start: float | None = None
    buf = bytearray(256 * 1024)
    while True:
        n = sock.recv_into(buf)
        if not n:
            break
        if start is None:
            start = time.monotonic()
        digest.update(memoryview(buf)[:n])
        total += n
    elapsed = time.monotonic() - start if start is not None else 0.0
    return {"sha256": digest.hexdigest(), "bytes": total, "seconds": elapsed}


def _xfer_main(argv: Sequence[str], out: IO[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness xfer")
    parser.add_argument("role", choices=["listen", "connect"])
    parser.add_argument("action", choices=["send", "recv"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("nbytes", type=int)
    args = parser.parse_args(argv)
    if args.role == "listen":
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        with socket.create_server((args.host, args.port), family=family) as server:
            server.settimeout(30)
            print(f"LISTENING {server.getsockname()[1]}", file=out, flush=True)
            conn, _ = server.accept()
    else:
        conn = socket.create_connection((args.host, args.port), timeout=30)
    with conn:
        conn.settimeout(60)
        result = _xfer_send(conn, args.nbytes) if args.action == "send" else _xfer_recv(conn)
    print(json.dumps(result), file=out, flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "xfer":
        sys.exit(_xfer_main(sys.argv[2:], sys.stdout))
    sys.exit(
        "usage: python3 -m tests.support.harness xfer listen|connect send|recv HOST PORT NBYTES"
    )
