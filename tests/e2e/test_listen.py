"""Issue #17: where the server listens, as ocserv 1.1.6 does it.

* ``udp-listen-host``: DTLS listens on its own address while TLS stays on ``listen-host``.
  openconnect sends its DTLS datagrams to the address of the TLS connection, so the
  server namespace forwards that address's UDP port to the DTLS address with a DNAT rule
  (the set-up this option exists for: UDP arrives elsewhere than TCP).
* ``listen-netns``: the sockets live in the named namespace (where the clients are), the
  rest of the server, TUN devices included, in the namespace it was started in.

Each test runs against ocserv and against OCGate; DTLS is proven by the UDP counters on
the client's veth and in its namespace while pings cross the tunnel.
"""

from __future__ import annotations

import re

import pytest

from tests.support import harness
from tests.support.dtls import ESTABLISHED, TLS_IDLE_BYTES, Wire
from tests.support.harness import Client, Server, ping
from tests.support.netns import LINK_SUPERNET, Netns, TestNet

KINDS = ["ocserv", "ocgate"]
PORT = harness.HTTPS_PORT
PINGS = 40


def sockets(ns: Netns, proto: str) -> list[tuple[str, str, str]]:
    """(state, local, peer) of the ``proto`` (t or u) sockets on our port in ``ns``."""
    out = ns.run(["ss", "-Han", f"-{proto}", f"sport = :{PORT}"]).stdout
    rows = []
    for line in out.splitlines():
        cols = line.split()
        rows.append((cols[0], cols[3], cols[4]))
    return rows


def local_addrs(rows: list[tuple[str, str, str]], state: str) -> set[str]:
    return {re.sub(r"^\[?(.*?)\]?:\d+$", r"\1", local) for st, local, _ in rows if st == state}


def assert_data_over_dtls(client: Client, target: str) -> None:
    """DTLS is up and the pings went in UDP datagrams, not over TLS."""
    assert client.wait_dtls(15), harness.tail_lines(client.log)
    assert client.pid is not None
    wire = Wire(client.link, client.pid)
    before = wire.read()
    result = ping(client.ns, target, count=PINGS, interval=0.05)
    delta = wire.read() - before
    assert result.ok, result
    assert delta.dgrams_out >= PINGS and delta.dgrams_in >= PINGS, delta
    assert delta.udp_out > PINGS * 84 and delta.udp_in > PINGS * 84, delta
    assert delta.tls_in + delta.tls_out < TLS_IDLE_BYTES, delta
    assert ESTABLISHED in client.log


@pytest.mark.parametrize("kind", KINDS)
def test_udp_listen_host(kind: str, net: TestNet, workdir, users) -> None:
    udp_ip = str(LINK_SUPERNET.network_address + net.block * 256 + 250)
    net.server_ns.ip("addr", "add", f"{udp_ip}/32", "dev", "lo")
    net.server_ns.run(["nft", "-f", "-"], input=f"""
table ip ocgdnat {{
    chain pre {{
        type nat hook prerouting priority -100; policy accept;
        ip daddr {net.server_ip} udp dport {PORT} dnat to {udp_ip}
    }}
}}
""")
    files = harness.make_server_files(workdir, net, users=users, extra_conf=[
        f"listen-host = {net.server_ip}", f"udp-listen-host = {udp_ip}"])
    server = Server(net, files, harness.server_command(kind))
    server.start()
    client = Client(net, files, name="dtls")
    try:
        tcp = sockets(net.server_ns, "t")
        assert local_addrs(tcp, "LISTEN") == {net.server_ip}, tcp
        udp = sockets(net.server_ns, "u")
        assert local_addrs(udp, "UNCONN") == {udp_ip}, udp
        assert client.connect("alice", users["alice"], no_dtls=False)
        assert_data_over_dtls(client, net.inside_ip)
        # the server's per-client socket answers from the DTLS address, not listen-host
        udp = sockets(net.server_ns, "u")
        assert local_addrs(udp, "ESTAB") == {udp_ip}, udp
        client.disconnect()
        server.assert_running()
    finally:
        client.close()
        server.stop()
        if kind == "ocgate":
            assert "Traceback" not in server.log, server.log


@pytest.mark.parametrize("kind", KINDS)
def test_listen_netns(kind: str, net: TestNet, workdir, users) -> None:
    """The server runs in namespace ``own``; ``listen-netns`` names the namespace that
    holds the clients' links.  The tunnel ends in ``own``: only there is the inside host."""
    own = Netns.create("r")
    try:
        own.ip("addr", "add", f"{net.inside_ip}/32", "dev", "lo")
        net.server_ns.ip("addr", "del", f"{net.inside_ip}/32", "dev", "lo")
        files = harness.make_server_files(workdir, net, users=users, extra_conf=[
            f"listen-netns = {net.server_ns.name}"])
        server = Server(net, files, harness.server_command(kind), run_ns=own)
        server.start()
        client = Client(net, files, name="netns")
        try:
            assert local_addrs(sockets(net.server_ns, "t"), "LISTEN")
            assert local_addrs(sockets(net.server_ns, "u"), "UNCONN")
            assert sockets(own, "t") == [] and sockets(own, "u") == []
            assert client.connect("alice", users["alice"], no_dtls=False)
            assert_data_over_dtls(client, net.inside_ip)
            # the per-client UDP socket is in the listen namespace too
            peers = {peer for _st, _local, peer in sockets(net.server_ns, "u")}
            assert any(net.client_ip in peer for peer in peers), peers
            assert files.device in own.ip("-o", "link", "show").stdout
            assert files.device not in net.server_ns.ip("-o", "link", "show").stdout
            client.disconnect()
            server.assert_running()
        finally:
            client.close()
            server.stop()
            if kind == "ocgate":
                assert "Traceback" not in server.log, server.log
    finally:
        own.delete()


@pytest.mark.parametrize("kind", KINDS)
def test_missing_listen_netns_stops_the_start(kind: str, net: TestNet, workdir,
                                              users) -> None:
    """ocserv exits when the namespace cannot be opened; so does OCGate, naming it."""
    files = harness.make_server_files(workdir, net, users=users, extra_conf=[
        "listen-netns = ocg-absent-namespace"])
    argv = harness.Server(net, files, harness.server_command(kind)).argv
    proc = net.server_ns.run(argv, check=False, timeout=30)
    assert proc.returncode == 1
    assert "/var/run/netns/ocg-absent-namespace" in proc.stderr, proc.stderr
