"""Proves the e2e harness against the reference server, Debian's ocserv 1.1.6.

If these pass, a failure of the same checks against OCGate is OCGate's
fault, not the harness's.  Expected values come from the vpnrig anchor run
(measured against ocserv 1.1.6 in the same test).
"""

from __future__ import annotations

import ipaddress
import signal
from collections.abc import Callable

import pytest

from tests.prereqs import needs_command
from tests.support import harness
from tests.support.harness import Client, Server, ServerFiles, ping, transfer
from tests.support.netns import TestNet, list_namespaces

pytestmark = needs_command("ocserv", "ocserv")

POOL = ipaddress.ip_network("203.0.113.0/24")


@pytest.fixture
def server_command(monkeypatch: pytest.MonkeyPatch) -> str:
    """Explicitly the reference server, whatever the session's OCGATE_E2E_SERVER says."""
    monkeypatch.setenv(harness.ENV_SERVER, "ocserv")
    return harness.server_command()


def test_network_is_isolated_before_the_tunnel(net: TestNet) -> None:
    assert not net.has_default_route()
    assert ping(net.client_ns, net.server_ip, count=1).ok
    assert ping(net.client_ns, net.inside_ip, count=1, wait=1).received == 0
    second = net.add_client()
    assert ping(second.ns, net.server_ip, count=1).ok
    assert ping(second.ns, net.inside_ip, count=1, wait=1).received == 0
    assert not net.has_default_route()


def test_testnet_close_removes_everything() -> None:
    with TestNet() as net:
        net.add_client()
        names = [ns.name for ns in net.namespaces]
        etc_dirs = [link.ns.etc_dir for link in net.links]
        assert all(d.joinpath("resolv.conf").exists() for d in etc_dirs)
        sleeper = net.client_ns.popen(["sleep", "60"])
    assert sleeper.wait(5) is not None
    assert not set(names) & set(list_namespaces())
    assert not any(d.exists() for d in etc_dirs)


def test_login_ping_and_transfer(
    net: TestNet, server: Server, client: Client, server_files: ServerFiles
) -> None:
    assert client.connect("alice", server_files.users["alice"]), client.log
    assert ping(net.client_ns, net.inside_ip, count=3).ok
    for direction in ("up", "down"):
        sent, received, seconds = transfer(net, 50_000_000, direction)
        assert sent == received, f"{direction}: checksum mismatch"
        assert seconds > 0
    server.assert_running()
    assert client.disconnect() == 0


def test_pushed_configuration(server: Server, client: Client, server_files: ServerFiles) -> None:
    assert client.connect("alice", server_files.users["alice"]), client.log
    env = client.env()
    assert env["reason"] == "connect"
    assert ipaddress.ip_address(env["INTERNAL_IP4_ADDRESS"]) in POOL
    assert env["INTERNAL_IP4_NETMASK"] == "255.255.255.0"
    assert env["INTERNAL_IP4_DNS"] == "198.51.100.53"
    assert client.split_includes() == ["198.51.100.0/24"]
    assert env["CISCO_DEF_DOMAIN"] == harness.DEFAULT_DOMAIN
    assert env["CISCO_BANNER"].strip() == harness.DEFAULT_BANNER
    assert env["TUNDEV"] == client.tun
    assert env["INTERNAL_IP4_MTU"] == "1472"  # TLS-only, as in the anchor run
    assert env["VPNPID"] == str(client.pid)
    headers = client.cstp_headers()
    assert headers["X-CSTP-Server-Name"] == "ocserv 1.1.6"
    assert headers["X-CSTP-Split-Include"] == "198.51.100.0/255.255.255.0"
    # the wrapper kept DNS away from the namespace's resolv.conf
    assert "198.51.100.53" not in client.ns.run(["cat", "/etc/resolv.conf"]).stdout
    client.disconnect()
    assert [e.reason for e in client.events()] == ["pre-init", "connect", "disconnect"]


def test_dtls_session(
    net: TestNet, server: Server, client: Client, server_files: ServerFiles
) -> None:
    assert client.connect("alice", server_files.users["alice"], no_dtls=False), client.log
    assert client.wait_dtls(), client.log
    assert client.env()["INTERNAL_IP4_MTU"] == "1434"  # DTLS overhead, as in the anchor run
    assert ping(net.client_ns, net.inside_ip, count=3).ok
    sent, received, _ = transfer(net, 5_000_000, "down")
    assert sent == received


def test_wrong_password_is_refused_then_correct_login_works(
    net: TestNet, server: Server, client: Client, server_files: ServerFiles
) -> None:
    assert not client.connect("alice", "wrong-" + server_files.users["alice"])
    assert client.returncode not in (0, None)
    assert "Login failed" in client.log
    assert client.connect("alice", server_files.users["alice"]), client.log
    assert ping(net.client_ns, net.inside_ip, count=2).ok


def test_authenticate_then_cookie_gets_the_same_address(
    net: TestNet, server: Server, client: Client, server_files: ServerFiles
) -> None:
    password = server_files.users["alice"]
    assert client.connect("alice", password), client.log
    first_address = client.address()
    client.disconnect()

    auth = client.authenticate("alice", password)
    assert set(auth) >= {"COOKIE", "HOST", "CONNECT_URL", "FINGERPRINT"}
    assert auth["FINGERPRINT"] == server_files.pin  # our pin_sha256 == openconnect's
    assert auth["HOST"] == net.server_ip
    assert client.connect_with_cookie(auth["COOKIE"]), client.log
    assert client.address() == first_address
    assert ping(net.client_ns, net.inside_ip, count=2).ok


def test_two_clients_at_once_get_different_addresses(
    net: TestNet, server: Server, make_client: Callable[..., Client], server_files: ServerFiles
) -> None:
    first = make_client(name="alice")
    second = make_client(new_link=True, name="bob")
    assert first.connect("alice", server_files.users["alice"]), first.log
    assert second.connect("bob", server_files.users["bob"]), second.log
    assert first.address() != second.address()
    assert {ipaddress.ip_address(c.address()) in POOL for c in (first, second)} == {True}
    assert ping(first.ns, net.inside_ip, count=2).ok
    assert ping(second.ns, net.inside_ip, count=2).ok
    assert first.disconnect() == 0
    assert ping(second.ns, net.inside_ip, count=1).ok  # one logout leaves the other alone


def test_sighup_keeps_the_cookie_and_sigint_kills_it(
    server: Server, client: Client, server_files: ServerFiles
) -> None:
    """The session semantics ocserv 1.1.6 shows (docs/protocol.md §7.6)."""
    cookie = client.authenticate("alice", server_files.users["alice"])["COOKIE"]
    assert client.connect_with_cookie(cookie), client.log
    client.disconnect(signal.SIGHUP)
    assert client.connect_with_cookie(cookie), client.log
    client.disconnect(signal.SIGINT)
    assert not client.connect_with_cookie(cookie)
    assert "Cookie was rejected" in client.log or "401" in client.log
