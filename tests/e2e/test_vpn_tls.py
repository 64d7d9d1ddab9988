"""Issue #2 end to end: OCGate's own server over TLS (CSTP) with the real openconnect client.

The server has no DTLS and no control socket yet, so every client runs ``--no-dtls`` and
nothing here uses occtl.  Tests that only log in and move traffic share one server per
module (starting a server is the expensive part); tests that change the configuration,
leave a script hanging or feed the server hostile bytes get a server of their own, so
that a failure there cannot cascade into the others.

The ocserv reference suite (test_harness_ocserv.py) proves the harness; running this
file with ``OCGATE_E2E_SERVER=ocserv`` checks the expectations themselves against
ocserv 1.1.6 (the tun-name and script checks are written to hold for both).

Run as ``python3 -m tests.e2e.test_vpn_tls raw ...`` this module is also the raw TLS
client that the hostile-input test starts inside a client namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import pytest

from tests.prereqs import require_e2e
from tests.support import harness
from tests.support.harness import Client, ServerFiles, ping, transfer
from tests.support.netns import Link, TestNet
from tests.support.rig import BackgroundPing, Clients, Rig, make_accounts, running_rig
from tests.support.waiting import wait_for

POOL = ipaddress.ip_network("203.0.113.0/24")
SERVER_TUN_IP = str(POOL.network_address + 1)  # ocserv: the network's first address (§8.2)
INSIDE_ROUTE_OCSERV = "198.51.100.0/255.255.255.0"  # ocserv's route text for scripts (§8.3)
MB = 1_000_000
USER_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace")


# ---------------------------------------------------------------- one server + its network


@pytest.fixture(scope="module")
def accounts() -> dict[str, str]:
    return make_accounts(USER_NAMES)


@pytest.fixture(scope="module")
def shared(accounts: dict[str, str]) -> Iterator[Rig]:
    """The default configuration, shared by the tests that do not disturb each other."""
    require_e2e()
    with running_rig(accounts, label="shared") as rig:
        yield rig


# ---------------------------------------------------------------- small helpers


def server_tuns(rig: Rig) -> dict[str, list[dict[str, Any]]]:
    """The server namespace's tun devices (named after ``device``) and their IPv4 addresses."""
    out = rig.net.server_ns.ip("-j", "addr", "show").stdout
    return {
        dev["ifname"]: [a for a in dev.get("addr_info", []) if a.get("family") == "inet"]
        for dev in json.loads(out)
        if dev.get("ifname", "").startswith(rig.files.device)
    }


def tun_for_peer(rig: Rig, peer: str) -> str | None:
    for name, addrs in server_tuns(rig).items():
        if any(a.get("address") == peer for a in addrs):
            return name
    return None


def assert_transfer(net: TestNet, nbytes: int, direction: str, link: Link | None = None) -> None:
    result = transfer(net, nbytes, direction, link=link)
    assert result.sha_sent == result.sha_received, f"{direction}: SHA-256 mismatch"


def login(client: Client, rig: Rig, user: str, **kwargs: Any) -> str:
    """Connect with the password; the tunnel's address."""
    assert client.connect(user, rig.password(user), **kwargs), client.log
    return client.address()


# ---------------------------------------------------------------- 1. traffic


def test_login_ping_and_50mb_each_way(shared: Rig, clients: Clients) -> None:
    client = clients.new(shared, "xfer")
    login(client, shared, "alice")
    assert ping(client.ns, shared.net.inside_ip, count=3).ok
    for direction in ("up", "down"):
        assert_transfer(shared.net, 50 * MB, direction)
    shared.server.assert_running()
    assert client.disconnect() == 0


# ---------------------------------------------------------------- 2. pushed configuration


def test_pushed_routes_dns_and_mtu(shared: Rig, clients: Clients) -> None:
    client = clients.new(shared, "config")
    address = ipaddress.ip_address(login(client, shared, "bob"))
    env = client.env()
    assert address in POOL
    assert address not in (POOL.network_address, POOL.network_address + 1, POOL.broadcast_address)
    assert env["INTERNAL_IP4_NETMASK"] == "255.255.255.0"
    assert client.split_includes() == [shared.net.route]
    assert env["INTERNAL_IP4_DNS"].split() == [shared.net.dns]
    assert env["CISCO_DEF_DOMAIN"] == harness.DEFAULT_DOMAIN
    assert env["CISCO_BANNER"].strip() == harness.DEFAULT_BANNER
    assert env["INTERNAL_IP4_MTU"] == "1472"  # base MTU 1500, TLS only (anchor run)
    assert env["TUNDEV"] == client.tun
    assert client.cstp_headers().get("X-CSTP-Split-Include") == "198.51.100.0/255.255.255.0"
    # the route is really installed: the inside host is reachable, nothing else is routed
    assert ping(client.ns, shared.net.inside_ip, count=2).ok
    assert not shared.net.has_default_route()
    assert client.disconnect() == 0


def test_route_default_is_a_full_tunnel(make_rig: Callable[..., Rig], clients: Clients) -> None:
    rig = make_rig("full-tunnel", replace_conf={"route": "route = default"})
    client = clients.new(rig, "full")
    login(client, rig, "alice")
    env = client.env()
    assert int(env.get("CISCO_SPLIT_INC", "0")) == 0, env
    assert "X-CSTP-Split-Include" not in client.cstp_headers()
    assert ipaddress.ip_address(env["INTERNAL_IP4_ADDRESS"]) in POOL
    # vpnc-script made the tunnel the default route of the client namespace
    assert any(r.startswith("default") for r in client.ns.routes())
    assert ping(client.ns, rig.net.inside_ip, count=2).ok
    assert client.disconnect() == 0


def test_tls_priorities_choose_version_and_cipher(
    make_rig: Callable[..., Rig], clients: Clients
) -> None:
    """A GnuTLS priority string from an ocserv guide means the same here (issue 4)."""
    prio = "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-TLS1.3:-AES-256-GCM:-CHACHA20-POLY1305"
    rig = make_rig("tls-prio", replace_conf={"tls-priorities": f"tls-priorities = {prio}"})
    client = clients.new(rig, "prio")
    login(client, rig, "alice")
    connected = next(line for line in client.log.splitlines()
                     if "Connected to HTTPS" in line and "ciphersuite" in line)
    assert "(TLS1.2)" in connected and "(AES-128-GCM)" in connected, connected
    assert ping(client.ns, rig.net.inside_ip, count=2).ok
    assert client.disconnect() == 0


# ---------------------------------------------------------------- 3. wrong password


def test_wrong_password_refused_then_login_works(shared: Rig, clients: Clients) -> None:
    client = clients.new(shared, "badpw")
    assert not client.connect("carol", "wrong-" + shared.password("carol"))
    assert client.returncode not in (0, None)
    assert "Login failed" in client.log
    shared.server.assert_running()
    login(client, shared, "carol")
    assert ping(client.ns, shared.net.inside_ip, count=2).ok
    assert client.disconnect() == 0


# ---------------------------------------------------------------- 4. cookies


def test_cookie_reconnect_sighup_keeps_sigint_kills(shared: Rig, clients: Clients) -> None:
    client = clients.new(shared, "cookie")
    first_address = login(client, shared, "dave")
    assert client.disconnect() == 0  # SIGINT: logout, the address is free again

    auth = client.authenticate("dave", shared.password("dave"))
    assert set(auth) >= {"COOKIE", "HOST", "CONNECT_URL", "FINGERPRINT"}
    assert auth["FINGERPRINT"] == shared.files.pin
    cookie = auth["COOKIE"]
    assert client.connect_with_cookie(cookie), client.log
    assert client.address() == first_address
    assert ping(client.ns, shared.net.inside_ip, count=2).ok

    client.disconnect(signal.SIGHUP)  # no BYE: the session (and its address) survive
    assert client.connect_with_cookie(cookie), client.log
    assert client.address() == first_address
    assert ping(client.ns, shared.net.inside_ip, count=2).ok

    client.disconnect(signal.SIGINT)  # BYE 0xb0: the cookie dies
    assert not client.connect_with_cookie(cookie)
    assert client.returncode not in (0, None)
    assert "Cookie was rejected" in client.log or "401" in client.log, client.log
    shared.server.assert_running()


# ---------------------------------------------------------------- 5. two clients


def test_two_clients_get_different_addresses(shared: Rig, clients: Clients) -> None:
    first = clients.new(shared, "two-a")
    second = clients.new(shared, "two-b", new_link=True)
    addresses = {login(first, shared, "erin"), login(second, shared, "frank")}
    assert len(addresses) == 2
    assert all(ipaddress.ip_address(a) in POOL for a in addresses)
    assert ping(first.ns, shared.net.inside_ip, count=2).ok
    assert ping(second.ns, shared.net.inside_ip, count=2).ok
    assert_transfer(shared.net, 2 * MB, "down", link=second.link)
    assert_transfer(shared.net, 2 * MB, "up", link=first.link)
    assert first.disconnect() == 0
    assert ping(second.ns, shared.net.inside_ip, count=2).ok  # one logout leaves the other
    assert second.disconnect() == 0


# ---------------------------------------------------------------- 6. session take-over


def test_session_takeover_moves_the_session(shared: Rig, clients: Clients) -> None:
    first = clients.new(shared, "takeover-a")
    second = clients.new(shared, "takeover-b", new_link=True)
    cookie = first.authenticate("grace", shared.password("grace"))["COOKIE"]
    assert first.connect_with_cookie(cookie), first.log
    address = first.address()
    assert ping(first.ns, shared.net.inside_ip, count=2).ok

    assert second.connect_with_cookie(cookie), second.log
    assert second.address() == address
    # The server ends the old connection with a BYE; openconnect takes a server
    # disconnect as final (no reconnect, which would take the session back).
    assert first.wait_exit(15) is not None, "the first connection was not ended"
    assert first.returncode not in (0, None)
    assert "Session terminated by server" in first.log, first.log
    assert ping(second.ns, shared.net.inside_ip, count=3).ok
    assert_transfer(shared.net, 2 * MB, "down", link=second.link)
    shared.server.assert_running()
    assert second.running, second.log
    tuns = [
        n
        for n, addrs in server_tuns(shared).items()
        if any(a.get("address") == address for a in addrs)
    ]
    assert len(tuns) == 1, server_tuns(shared)
    # The old client's parting BYE (0xb0) must not have killed the moved session.
    second.disconnect(signal.SIGHUP)
    assert first.connect_with_cookie(cookie), first.log
    assert first.address() == address
    assert ping(first.ns, shared.net.inside_ip, count=2).ok
    assert first.disconnect() == 0
    # and the server still serves newcomers
    third = clients.new(shared, "takeover-c")
    login(third, shared, "alice")
    assert ping(third.ns, shared.net.inside_ip, count=2).ok


# ---------------------------------------------------------------- 9. the server's tun


def test_server_tun_is_point_to_point_and_removed(shared: Rig, clients: Clients) -> None:
    client = clients.new(shared, "tun")
    address = login(client, shared, "bob")
    device = tun_for_peer(shared, address)
    assert device is not None, server_tuns(shared)
    (addr,) = server_tuns(shared)[device]
    assert addr["local"] == SERVER_TUN_IP
    assert addr["address"] == address
    assert client.disconnect() == 0
    assert wait_for(lambda: device not in server_tuns(shared), 5.0), server_tuns(shared)


# ---------------------------------------------------------------- 7. connect/disconnect scripts

#: One script for both hooks.  bob's connect is refused (exit 1), carol's hangs; every
#: call first records its environment (NUL-separated, renamed into place when complete).
SCRIPT = """#!/bin/sh
out={out}
env -0 > "$out/.tmp.$$" && mv "$out/.tmp.$$" "$out/$REASON.$USERNAME.$ID.env"
case "$REASON:$USERNAME" in
  connect:bob) exit 1 ;;
  connect:carol) echo $$ > "$out/hang.pid"; exec sleep 1000 ;;
esac
exit 0
"""


def _install_script(files: ServerFiles) -> list[str]:
    out = files.dir / "script-out"
    out.mkdir(mode=0o755)
    script = files.dir / "script.sh"
    script.write_text(SCRIPT.format(out=out))
    script.chmod(0o755)
    return [f"connect-script = {script}", f"disconnect-script = {script}"]


def script_envs(rig: Rig, reason: str, user: str) -> list[dict[str, str]]:
    envs = []
    for path in sorted((rig.files.dir / "script-out").glob(f"{reason}.{user}.*.env")):
        pairs = (r.partition("=") for r in path.read_bytes().decode().split("\0") if r)
        envs.append({k: v for k, _, v in pairs})
    return envs


def wait_script_env(rig: Rig, reason: str, user: str, timeout: float = 10.0) -> dict[str, str]:
    assert wait_for(lambda: bool(script_envs(rig, reason, user)), timeout, 0.1), (
        f"no {reason} script call for {user}"
    )
    (env,) = script_envs(rig, reason, user)
    return env


@pytest.fixture(scope="module")
def scripted(accounts: dict[str, str]) -> Iterator[Rig]:
    require_e2e()
    with running_rig(accounts, label="scripts", prepare=_install_script) as rig:
        yield rig


def test_scripts_see_the_session(scripted: Rig, clients: Clients) -> None:
    client = clients.new(scripted, "scripts")
    started = time.time()
    address = login(client, scripted, "alice")
    assert ping(client.ns, scripted.net.inside_ip, count=2).ok
    assert_transfer(scripted.net, 1 * MB, "up")
    assert_transfer(scripted.net, 1 * MB, "down")
    connect = wait_script_env(scripted, "connect", "alice")
    device = tun_for_peer(scripted, address)
    assert client.disconnect() == 0
    disconnect = wait_script_env(scripted, "disconnect", "alice")
    elapsed = time.time() - started

    link, net = client.link, scripted.net
    for reason, env in (("connect", connect), ("disconnect", disconnect)):
        assert env["REASON"] == reason
        assert env["USERNAME"] == "alice"
        assert "GROUPNAME" in env and env["GROUPNAME"] == ""  # no group in the passwd file
        assert env["DEVICE"] == device, (env["DEVICE"], server_tuns(scripted))
        assert env["IP_REAL"] == link.client_ip
        assert env["IP_REAL_LOCAL"] == net.server_ip
        assert env["IP_LOCAL"] == SERVER_TUN_IP
        assert env["IP_REMOTE"] == address
        assert env["ID"].isdigit() and int(env["ID"]) > 0
        assert env["OCSERV_ROUTES"].split() == [INSIDE_ROUTE_OCSERV]
        assert env["OCSERV_DNS"].split() == [net.dns]
    assert connect["ID"] == disconnect["ID"]
    assert not {"STATS_BYTES_IN", "STATS_BYTES_OUT", "STATS_DURATION"} & set(connect)
    # bytes from the client (1 MB up) and to it (1 MB down), plus TCP/IP overhead
    assert int(disconnect["STATS_BYTES_IN"]) >= 1 * MB, disconnect["STATS_BYTES_IN"]
    assert int(disconnect["STATS_BYTES_OUT"]) >= 1 * MB, disconnect["STATS_BYTES_OUT"]
    assert 0 <= int(disconnect["STATS_DURATION"]) <= elapsed + 1


def test_failing_connect_script_refuses_only_that_user(scripted: Rig, clients: Clients) -> None:
    client = clients.new(scripted, "refused")
    assert not client.connect("bob", scripted.password("bob"))
    assert client.returncode not in (0, None)
    assert "401" in client.log, client.log
    assert script_envs(scripted, "connect", "bob"), "the connect-script was not run"
    scripted.server.assert_running()
    assert not server_tuns(scripted), "a refused connection left its tun device"
    login(client, scripted, "dave")
    assert ping(client.ns, scripted.net.inside_ip, count=2).ok
    assert client.disconnect() == 0
    # a refused connection never was connected: no disconnect-script for it
    time.sleep(0.3)
    assert not script_envs(scripted, "disconnect", "bob")


def test_hanging_connect_script_does_not_block_others(
    make_rig: Callable[..., Rig], clients: Clients
) -> None:
    rig = make_rig("hanging-script", prepare=_install_script)
    stuck = clients.new(rig, "stuck")
    argv = [*stuck.common_args(), "-u", "carol", "--passwd-on-stdin", "--no-dtls", stuck.url]
    log_path = stuck.dir / "openconnect.log"
    with log_path.open("wb") as out:
        proc = stuck.ns.popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert proc.stdin is not None
        proc.stdin.write(rig.password("carol").encode() + b"\n")
        proc.stdin.close()
        pid_file = rig.files.dir / "script-out" / "hang.pid"
        assert wait_for(pid_file.exists, 10.0), log_path.read_text(errors="replace")
        started = time.monotonic()
        other = clients.new(rig, "unblocked", new_link=True)
        login(other, rig, "dave", timeout=10.0)
        assert time.monotonic() - started < 5.0, "the login waited for carol's script"
        assert ping(other.ns, rig.net.inside_ip, count=2).ok
        assert proc.poll() is None, "carol's openconnect gave up while her script ran"
        rig.server.assert_running()
        assert other.disconnect() == 0
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int((rig.files.dir / "script-out" / "hang.pid").read_text()), signal.SIGKILL)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# ---------------------------------------------------------------- 8. hostile input

RAW_MODES = ("garbage-bytes", "huge-header", "bad-magic", "truncated-frame")
CONNECT_HEADERS = (
    "X-CSTP-Version: 1\r\nX-CSTP-Hostname: hostile\r\nX-CSTP-Base-MTU: 1500\r\n"
    "X-CSTP-MTU: 1400\r\nX-CSTP-Address-Type: IPv4\r\n"
)
USER_AGENT = "Open AnyConnect VPN Agent v9.01"


class RawHttps:
    """A bare TLS connection that speaks just enough HTTP to log in and CONNECT."""

    def __init__(self, host: str, timeout: float) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection((host, harness.HTTPS_PORT), timeout=timeout)
        self.host = host
        self.tls = ctx.wrap_socket(raw, server_hostname=host)
        self.buf = b""
        self.cookies: dict[str, str] = {}

    def send(self, data: bytes) -> None:
        self.tls.sendall(data)

    def _fill(self) -> bool:
        data = self.tls.recv(65536)
        self.buf += data
        return bool(data)

    def read_head(self) -> tuple[str, dict[str, list[str]]]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed inside a response head: {self.buf[:200]!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        for value in headers.get("set-cookie", []):
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return status, headers

    def request(
        self, method: str, path: str, body: bytes = b"", extra: str = ""
    ) -> tuple[str, bytes]:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items() if v)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: {USER_AGENT}\r\n"
            + (f"Cookie: {cookie}\r\n" if cookie else "")
            + extra
            + (f"Content-Length: {len(body)}\r\n" if method == "POST" else "")
            + "\r\n"
        )
        self.send(head.encode() + body)
        status, headers = self.read_head()
        length = int(headers.get("content-length", ["0"])[0])
        while len(self.buf) < length:
            if not self._fill():
                raise ConnectionError("closed inside a response body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def login(self, user: str, password: str) -> str:
        """The XML dialogue as openconnect runs it; returns the ``webvpn`` cookie."""
        xml_headers = (
            "X-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\n"
            "Content-Type: application/xml; charset=utf-8\r\n"
        )
        init = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" '
            'aggregate-auth-version="2"><version who="vpn">v9.01</version>'
            "<device-id>linux-64</device-id></config-auth>"
        )
        reply = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" '
            'type="auth-reply" aggregate-auth-version="2"><version who="vpn">v9.01</version>'
            f"<device-id>linux-64</device-id><auth><username>{user}</username>"
            f"<password>{password}</password></auth></config-auth>"
        )
        status, _ = self.request("POST", "/", init.encode(), xml_headers)
        for _ in range(3):  # ocserv 1.1.6 asks for the password in a second form
            if self.cookies.get("webvpn"):
                return self.cookies["webvpn"]
            status, _ = self.request("POST", "/auth", reply.encode(), xml_headers)
            if not status.startswith("HTTP/1.1 200"):
                break
        if self.cookies.get("webvpn"):
            return self.cookies["webvpn"]
        raise ConnectionError(f"login failed: {status}")

    def connect_tunnel(self, cookie: str) -> tuple[str, dict[str, list[str]]]:
        self.cookies = {"webvpn": cookie}
        self.send(
            f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: {self.host}\r\n"
            f"User-Agent: {USER_AGENT}\r\nCookie: webvpn={cookie}\r\n{CONNECT_HEADERS}\r\n".encode()
        )
        return self.read_head()

    def wait_closed(self, timeout: float) -> bool:
        """True once the server closed the connection (FIN, reset or TLS close)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tls.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                if not self.tls.recv(65536):
                    return True
            except TimeoutError:
                return False
            except (ssl.SSLError, OSError):
                return True
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.tls.close()


def _raw_garbage(conn: RawHttps, mode: str) -> dict[str, Any]:
    if mode == "garbage-bytes":
        junk = os.urandom(1 << 20)  # 1 MiB without any structure
    else:  # a request whose one header line never ends
        junk = b"POST / HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"A" * (1 << 20)
    result: dict[str, Any] = {"sent": 0}
    try:
        for offset in range(0, len(junk), 65536):
            conn.send(junk[offset : offset + 65536])
            result["sent"] = offset + 65536
    except (ssl.SSLError, OSError) as exc:
        result["send_error"] = type(exc).__name__
    try:
        conn.tls.settimeout(10)
        status, _ = conn.read_head()
        result["status"] = status
    except (ssl.SSLError, OSError, ValueError) as exc:
        result["status"] = f"no response ({type(exc).__name__})"
    result["closed"] = conn.wait_closed(10)
    return result


def _raw_tunnel(conn: RawHttps, mode: str, user: str, password: str) -> dict[str, Any]:
    cookie = conn.login(user, password)
    status, headers = conn.connect_tunnel(cookie)
    result: dict[str, Any] = {
        "status": status,
        "address": headers.get("x-cstp-address", [""])[0],
    }
    if not status.startswith("HTTP/1.1 200"):
        return result
    if mode == "bad-magic":
        conn.send(b"XXXX\x00\x10\x00\x00" + b"\x45" * 16)
        result["closed"] = conn.wait_closed(10)
    else:  # announces 1400 payload bytes, delivers 10, hangs up
        conn.send(b"STF\x01" + (1400).to_bytes(2, "big") + b"\x00\x00" + b"\x45" * 10)
        time.sleep(0.2)
        result["closed"] = True
    return result


def _raw_main(argv: Sequence[str], out: IO[str]) -> int:
    parser = argparse.ArgumentParser(prog="test_vpn_tls raw")
    parser.add_argument("mode", choices=RAW_MODES)
    parser.add_argument("host")
    parser.add_argument("user", nargs="?", default="")
    args = parser.parse_args(argv)
    conn = RawHttps(args.host, timeout=15)
    try:
        if args.mode in ("garbage-bytes", "huge-header"):
            result = _raw_garbage(conn, args.mode)
        else:
            result = _raw_tunnel(conn, args.mode, args.user, sys.stdin.readline().strip())
    finally:
        conn.close()
    print(json.dumps(result), file=out, flush=True)
    return 0


def run_raw(rig: Rig, link: Link, mode: str, user: str = "") -> dict[str, Any]:
    """The raw client above, inside ``link``'s namespace (cert checks off: it is hostile)."""
    proc = link.ns.run(
        [sys.executable, "-m", "tests.e2e.test_vpn_tls", "raw", mode, link.server_ip, user],
        input=rig.password(user) + "\n" if user else "",
        timeout=60,
        cwd=harness.REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(harness.REPO_ROOT)),
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_hostile_input_does_not_harm_other_sessions(
    make_rig: Callable[..., Rig], clients: Clients
) -> None:
    rig = make_rig("hostile")
    victim = clients.new(rig, "victim")
    login(victim, rig, "alice")
    attacker = rig.net.add_client()
    results: dict[str, dict[str, Any]] = {}
    with BackgroundPing(victim.ns, rig.net.inside_ip) as pinger:
        time.sleep(0.5)
        for mode in ("garbage-bytes", "huge-header"):
            results[mode] = run_raw(rig, attacker, mode)
        for mode in ("bad-magic", "truncated-frame"):
            results[mode] = run_raw(rig, attacker, mode, user="bob")
        time.sleep(0.5)
    assert pinger.sent >= 10
    assert pinger.received == pinger.sent, (pinger.sent, pinger.received, results)
    rig.server.assert_running()
    assert victim.running, victim.log

    for mode in ("garbage-bytes", "huge-header"):
        assert results[mode]["closed"], f"{mode}: the server kept the connection open"
        assert not results[mode]["status"].startswith("HTTP/1.1 200"), results[mode]
    for mode in ("bad-magic", "truncated-frame"):
        assert results[mode]["status"].startswith("HTTP/1.1 200 CONNECTED"), results[mode]
        address = results[mode]["address"]
        assert ipaddress.ip_address(address) in POOL
        # the broken session is gone: its tun device was removed
        assert wait_for(lambda a=address: tun_for_peer(rig, a) is None, 5.0), (
            f"{mode}: tun of {address} still there: {server_tuns(rig)}"
        )
    assert results["bad-magic"]["closed"], "bad CSTP magic did not end the connection"

    newcomer = clients.new(rig, "newcomer", new_link=True)
    login(newcomer, rig, "dave")
    assert ping(newcomer.ns, rig.net.inside_ip, count=2).ok
    assert ping(victim.ns, rig.net.inside_ip, count=2).ok
    assert_transfer(rig.net, 2 * MB, "down")
    assert victim.disconnect() == 0
    # garbage from a client is an expected event, not a crash of its worker
    log_lines = rig.server.log.splitlines()
    crash = next(
        (n for n, line in enumerate(log_lines) if "Traceback" in line or "worker failed" in line),
        None,
    )
    assert crash is None, "\n".join(log_lines[crash : crash + 24])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "raw":
        sys.exit(_raw_main(sys.argv[2:], sys.stdout))
    sys.exit("usage: python3 -m tests.e2e.test_vpn_tls raw MODE HOST [USER]  (password on stdin)")
