"""Issue #12 (part 1) end to end: RADIUS authentication and accounting against Debian's
FreeRADIUS, with the real openconnect client (docs/protocol.md §10.2, §10.7, §2.4.3).

FreeRADIUS runs in the foreground (``freeradius -f``) on 127.0.0.1 inside the server's
namespace, from a configuration generated into the test's temp dir: a ``users`` file with
a password user, a challenge-response (OTP) user and a user with Framed-IP-Address,
Framed-Route and a Class group, and the ``detail`` module writing accounting records to the
temp dir, which the tests read back.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.prereqs import require_command, require_e2e, require_path
from tests.support import harness
from tests.support.harness import Client, transfer
from tests.support.netns import TestNet
from tests.support.processes import stop_process
from tests.support.rig import Rig, running_rig
from tests.support.waiting import wait_until
from tests.support.workdir import workdir as new_workdir

FREERADIUS = shutil.which("freeradius") or shutil.which("radiusd")
SECRET = "e2e-" + secrets.token_hex(8)
AUTH_PORT, ACCT_PORT = 18120, 18130
FRAMED_IP = "203.0.113.200"
FRAMED_ROUTE = "198.51.100.0/25"
OTP_CODE = "314159"
STATS_REPORT = 2  # seconds between Interim-Updates


@dataclass(frozen=True)
class Users:
    alice: str
    carol: str
    otp: str  # otpuser's first password; the second factor is OTP_CODE


RADIUSD_CONF = """
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}
name = freeradius
confdir = {dir}
modconfdir = {dir}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
dictdir = /usr/share/freeradius
pidfile = {dir}/radiusd.pid
max_request_time = 30
cleanup_delay = 0
max_requests = 1024
hostname_lookups = no
log {{
    destination = stdout
    auth = yes
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 2
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 3
    max_requests_per_server = 0
}}
client ocgate {{
    ipaddr = 127.0.0.1
    secret = {secret}
    require_message_authenticator = no
}}
modules {{
    pap {{
        normalise = yes
    }}
    always reject {{
        rcode = reject
    }}
    files {{
        filename = {dir}/users
    }}
    detail {{
        filename = {dir}/detail
        escape_filenames = no
        permissions = 0600
        header = "%t"
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {auth_port}
    }}
    listen {{
        type = acct
        ipaddr = 127.0.0.1
        port = {acct_port}
    }}
    authorize {{
        # the users file's challenge entry skips PAP: check the first factor here
        if (&User-Name == "otpuser" && !&State && &User-Password != "{otp}") {{
            reject
        }}
        files
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
    }}
    preacct {{
    }}
    accounting {{
        detail
    }}
    post-auth {{
    }}
}}
"""

# otpuser: without State the first password earns an Access-Challenge; with our State the
# answer must be the code.  The first entry that matches wins (no Fall-Through).
USERS_FILE = """
otpuser State == "0x6f74702d7374617465", Cleartext-Password := "{code}"
otpuser Cleartext-Password := "{otp}", Response-Packet-Type := Access-Challenge
        Reply-Message = "Enter the code from your token",
        State = "0x6f74702d7374617465"
alice Cleartext-Password := "{alice}"
carol Cleartext-Password := "{carol}"
        Framed-IP-Address = {framed_ip},
        Framed-Route = "{framed_route} 0.0.0.0 1",
        Class = "OU=radgroup"
"""


class FreeRadius:
    """``freeradius -f`` in the server namespace with a generated configuration."""

    def __init__(self, net: TestNet, directory: Path, users: Users) -> None:
        self.net = net
        self.dir = directory
        self.dir.mkdir(mode=0o700, exist_ok=True)
        (self.dir / "radiusd.conf").write_text(RADIUSD_CONF.format(
            dir=self.dir, secret=SECRET, auth_port=AUTH_PORT, acct_port=ACCT_PORT,
            otp=users.otp))
        (self.dir / "users").write_text(USERS_FILE.format(
            code=OTP_CODE, otp=users.otp, alice=users.alice, carol=users.carol,
            framed_ip=FRAMED_IP, framed_route=FRAMED_ROUTE))
        self.detail = self.dir / "detail"
        self.log_path = self.dir / "radiusd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        assert FREERADIUS is not None
        with self.log_path.open("ab") as out:
            self.proc = self.net.server_ns.popen(
                [FREERADIUS, "-f", "-l", "stdout", "-d", str(self.dir)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while "Ready to process requests" not in self.log:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"freeradius did not start:\n{harness.tail_lines(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
        self.proc = None

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def records(self) -> list[dict[str, str]]:
        """The detail file's accounting records (a timestamp line, then ``Name = value``)."""
        try:
            text = self.detail.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for block in re.split(r"\n\s*\n", text):
            pairs = re.findall(r"^\s+([A-Za-z0-9-]+) = (.*)$", block, re.M)
            if pairs:
                out.append({k: v.strip().strip('"') for k, v in pairs})
        return out


def radcli_files(directory: Path) -> Path:
    """The radcli configuration ocserv would be given, and its servers file: radcli's own
    sample with only the server lines changed (its bare ``default_realm`` and
    ``bindaddr *`` stay, as in an admin's file)."""
    (directory / "servers").write_text(f"127.0.0.1 {SECRET}\n")
    sample = require_path("/etc/radcli/radiusclient.conf", "libradcli4").read_text()
    ours = {"authserver": f"127.0.0.1:{AUTH_PORT}", "acctserver": f"127.0.0.1:{ACCT_PORT}",
            "servers": "servers", "radius_timeout": "1", "radius_retries": "2"}
    lines = [line for line in sample.splitlines()
             if line.split(None, 1)[:1] not in ([key] for key in ours)]
    assert any(line.strip() == "default_realm" for line in lines)
    conf = directory / "radiusclient.conf"
    conf.write_text("\n".join(["nas-identifier ocgate-e2e", *lines,
                               *(f"{key} {value}" for key, value in ours.items())]) + "\n")
    return conf


@dataclass(kw_only=True)
class RadiusRig(Rig):
    """The rig, with the FreeRADIUS it authenticates against and that server's accounts."""

    radius: FreeRadius
    accounts: Users


@pytest.fixture(scope="module")
def rig() -> Iterator[RadiusRig]:
    require_e2e()
    require_command("freeradius", "freeradius")
    accounts = Users("a-" + secrets.token_urlsafe(9), "c-" + secrets.token_urlsafe(9),
                     "o-" + secrets.token_urlsafe(9))
    with new_workdir() as workdir, TestNet() as net:
        radius = FreeRadius(net, workdir / "raddb", accounts)
        conf = radcli_files(workdir)
        try:
            radius.start()
            with running_rig({}, label="radius", workdir=workdir, net=net,
                             auth=[f'auth = "radius[config={conf},groupconfig=true]"'],
                             extra_conf=[f'acct = "radius[config={conf}]"',
                                         f"stats-report-time = {STATS_REPORT}"]) as made:
                yield RadiusRig(net=made.net, files=made.files, server=made.server,
                                label=made.label, radius=radius, accounts=accounts)
        except BaseException:
            print(f"\n[e2e] freeradius log:\n{harness.tail_lines(radius.log, 60)}")
            raise
        finally:
            radius.stop()


@contextlib.contextmanager
def session(client: Client) -> Iterator[Client]:
    try:
        yield client
    except BaseException:
        print(f"\n[e2e] {client.name} log:\n{harness.tail_lines(client.log, 60)}")
        raise
    finally:
        client.close()


def test_password_login_and_accounting(rig: RadiusRig) -> None:
    """Start, Interim-Update and Stop reach the detail file; octets match a transfer."""
    nbytes = 3_000_000
    with session(rig.client("alice")) as client:
        assert client.connect("alice", rig.accounts.alice), client.log
        assert client.address().startswith("203.0.113.")
        result = transfer(rig.net, nbytes, "up", timeout=60)
        assert result.sha_sent == result.sha_received

        def alice_records(kind: str) -> list[dict[str, str]]:
            return [r for r in rig.radius.records()
                    if r.get("User-Name") == "alice" and r.get("Acct-Status-Type") == kind]

        # an Interim-Update that already counts the transfer (the worker reports every 3 s)
        wait_until(lambda: any(int(r.get("Acct-Input-Octets", 0)) >= nbytes
                             for r in alice_records("Interim-Update")), 20, "an Interim-Update")
        client.disconnect()
    wait_until(lambda: alice_records("Stop"), 15, "the Stop record")
    start, stop = alice_records("Start")[-1], alice_records("Stop")[-1]
    assert start["Acct-Session-Id"] == stop["Acct-Session-Id"]
    assert stop["Framed-IP-Address"] == start["Framed-IP-Address"] == client.address()
    assert stop["Acct-Terminate-Cause"] == "User-Request"
    assert stop["NAS-Identifier"] == "ocgate-e2e"
    octets_in = int(stop["Acct-Input-Octets"])
    # the payload plus TCP/IP headers and a little chatter; never less than what was sent
    assert nbytes <= octets_in <= nbytes * 1.15, octets_in
    assert int(stop["Acct-Input-Packets"]) > nbytes // 1500
    assert int(stop["Acct-Output-Octets"]) < nbytes // 5  # only ACKs went back


def test_framed_ip_route_and_class_group(rig: RadiusRig) -> None:
    with session(rig.client("carol")) as client:
        assert client.connect("carol", rig.accounts.carol), client.log
        assert client.address() == FRAMED_IP
        routes = client.ns.routes()
        assert any(r.startswith(FRAMED_ROUTE) and client.tun in r for r in routes), routes
        assert not any(r.startswith("198.51.100.0/24") for r in routes), routes
        users = json.loads(rig.server.occtl("-j", "show", "users").stdout)
        carol = next(u for u in users if u.get("Username") == "carol")
        assert carol.get("Groupname") == "radgroup", carol
        assert harness.ping(client.ns, rig.net.inside_ip).ok


def test_challenge_response(rig: RadiusRig) -> None:
    client = rig.interactive("otp")
    with session(client):
        assert client.answer("otpuser", [rig.accounts.otp, OTP_CODE]), client.log
        assert "Enter the code from your token" in client.log
        client.disconnect()
        # the right code after a wrong first password is still no login
        assert not client.answer("otpuser", ["wrong", OTP_CODE, "x", "y"], timeout=30)
        assert "Enter the code from your token" not in client.log


def test_wrong_password_is_rejected(rig: RadiusRig) -> None:
    with session(rig.client("mallory")) as client:
        assert not client.connect("alice", "not-the-password", timeout=30)
    assert "failed authentication for 'alice'" in rig.server.log


def test_radius_down_fails_clearly_and_server_lives(rig: RadiusRig) -> None:
    rig.radius.stop()
    try:
        with session(rig.client("bob")) as client:
            started = time.monotonic()
            assert not client.connect("alice", rig.accounts.alice, timeout=30)
            assert time.monotonic() - started < 25
            assert "Authentication server unreachable" in client.log, client.log
        rig.server.assert_running()
        assert "no RADIUS server answered" in rig.server.log \
            or "RADIUS: no server answered" in rig.server.log
    finally:
        rig.radius.start()
    with session(rig.client("after")) as client:
        assert client.connect("alice", rig.accounts.alice), client.log
