"""Issue #5 end to end: per-user configuration and live reload with real openconnect clients."""

from __future__ import annotations

import json

import pytest

from tests.support.harness import iperf3, ping

LIMIT = 1_250_000  # bytes/s = 10 Mbit/s


@pytest.fixture
def extra_conf(workdir) -> list[str]:
    users = workdir / "config-per-user"
    users.mkdir(mode=0o755, exist_ok=True)
    (users / "alice").write_text(f"rx-data-per-sec = {LIMIT}\ntx-data-per-sec = {LIMIT}\n"
                                 "explicit-ipv4 = 203.0.113.77\n")
    return [f"config-per-user = {users}/"]


def _mbps(result: dict) -> float:
    return result["sum_received"]["bits_per_second"] / 1e6


@pytest.mark.parametrize("dtls", [False, True], ids=["tls", "dtls"])
def test_per_user_bandwidth_limit_and_static_address(server, make_client, users, dtls):
    alice = make_client()
    assert alice.connect("alice", users["alice"], no_dtls=not dtls)
    if dtls:
        assert alice.wait_dtls()
    assert alice.address() == "203.0.113.77"  # explicit-ipv4 from the per-user file
    limit_mbps = LIMIT * 8 / 1e6
    up = _mbps(iperf3(alice.net, 4, extra_args=["-C", "cubic"]))
    down = _mbps(iperf3(alice.net, 4, reverse=True, extra_args=["-C", "cubic"]))
    for name, got in (("up", up), ("down", down)):
        assert abs(got - limit_mbps) / limit_mbps <= 0.15, f"{name}: {got:.1f} Mbit/s"
    alice.disconnect()
    # bob has no per-user file: not limited
    bob = make_client()
    assert bob.connect("bob", users["bob"], no_dtls=not dtls)
    assert _mbps(iperf3(bob.net, 2, extra_args=["-C", "cubic"])) > 3 * limit_mbps


def test_reload_new_route_for_new_sessions_only(server, make_client, users):
    first = make_client()
    assert first.connect("alice", users["alice"])
    assert first.split_includes() == ["198.51.100.0/24"]
    conf = server.files.conf
    text = conf.read_text().replace("route = 198.51.100.0/24",
                                    "route = 198.51.100.0/24\nroute = 198.19.255.0/24")
    assert text != conf.read_text()
    conf.write_text(text + "tcp-port = 4443\n")
    out = server.occtl("reload").stdout
    assert "reloaded" in out and "needs a restart to change: tcp-port" in out
    assert ping(first.ns, first.net.inside_ip, count=3).ok  # the live session stays up
    second = make_client(new_link=True)
    assert second.connect("bob", users["bob"])
    assert sorted(second.split_includes()) == ["198.19.255.0/24", "198.51.100.0/24"]
    users_json = json.loads(server.occtl("-j", "show", "users").stdout)
    assert sorted(u["Username"] for u in users_json) == ["alice", "bob"]


@pytest.fixture
def group_conf(workdir) -> list[str]:
    users = workdir / "per-user-net"
    users.mkdir(mode=0o755, exist_ok=True)
    (users / "bob").write_text("ipv4-network = 203.0.113.128/25\niroute = 198.18.200.0/24\n")
    return [f"config-per-user = {users}/"]


def test_per_user_network_and_iroute(net, workdir, users, make_client, group_conf):
    from tests.support.harness import Server, make_server_files
    files = make_server_files(workdir / "netsrv", net, users=users, extra_conf=group_conf)
    srv = Server(net, files).start()
    try:
        bob = make_client()
        bob.files = files
        assert bob.connect("bob", users["bob"])
        env = bob.env()
        assert env["INTERNAL_IP4_NETMASK"] == "255.255.255.128"
        assert bob.address().startswith("203.0.113.") and int(bob.address().rsplit(".")[-1]) > 129
        routes = net.server_ns.run(["ip", "-j", "route", "show", "198.18.200.0/24"]).stdout
        dev = json.loads(routes)[0]["dev"]
        assert dev.startswith(files.device)
        addrs = json.loads(net.server_ns.run(["ip", "-j", "addr", "show", "dev", dev]).stdout)
        assert addrs[0]["addr_info"][0]["local"] == "203.0.113.129"  # that pool's first
        shown = json.loads(srv.occtl("-j", "show", "users").stdout)[0]
        assert shown["iRoutes"] == ["198.18.200.0/255.255.255.0"]
        assert shown["P-t-P IPv4"] == "203.0.113.129"
        alice = make_client(new_link=True)
        alice.files = files
        assert alice.connect("alice", users["alice"])
        assert alice.env()["INTERNAL_IP4_NETMASK"] == "255.255.255.0"
    finally:
        srv.stop()


@pytest.fixture
def fw_conf(workdir) -> list[str]:
    users = workdir / "per-user-fw"
    users.mkdir(mode=0o755, exist_ok=True)
    (users / "alice").write_text("restrict-user-to-routes = true\n")
    (users / "bob").write_text('restrict-user-to-ports = "!(icmp())"\n')
    return [f"config-per-user = {users}/"]


def test_restrict_user_to_routes_and_ports(net, workdir, users, make_client, fw_conf):
    from tests.support.harness import Server, make_server_files, transfer
    files = make_server_files(workdir / "fwsrv", net, users=users, extra_conf=fw_conf)
    net.server_ns.run(["ip", "addr", "add", "198.18.250.1/32", "dev", "lo"])
    srv = Server(net, files).start()
    try:
        alice = make_client()
        alice.files = files
        assert alice.connect("alice", users["alice"])
        alice.ns.run(["ip", "route", "add", "198.18.250.0/24", "dev", alice.tun])
        assert ping(alice.ns, net.inside_ip, count=2).ok  # inside her routes
        assert not ping(alice.ns, "198.18.250.1", count=2).ok  # not in her routes: dropped
        alice.disconnect()
        bob = make_client(new_link=True)
        bob.files = files
        assert bob.connect("bob", users["bob"])
        assert not ping(bob.ns, net.inside_ip, count=2).ok  # icmp denied
        result = transfer(net, 1_000_000, "up", link=bob.link)  # tcp allowed
        assert result.sha_sent == result.sha_received
        bob.disconnect()
        rules = net.server_ns.run(["nft", "list", "table", "inet", "ocgate_fw"],
                                  check=False).stdout
        assert "forward_" not in rules  # the chains went with the sessions
    finally:
        srv.stop()
