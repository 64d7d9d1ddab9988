"""Issue #10 end to end: IPv6 inside the tunnel and IPv6 as transport, with openconnect 9.01.

docs/protocol.md §3.3 (X-CSTP-Address-IP6, -IP6 routes), §3.4 and §11 item 18 (no IPv6 below a
1280 data MTU), §8.2 (leases), §8.3 (IPV6_* script variables), §9 (occtl "IPv6").

The namespaces get IPv6 (``TestNet(ipv6=True)``): 2001:db8:1:…::/64 on the client links and
an inside host 2001:db8:5::1 on the server's loopback.  The pool hands out /64 subnets of
2001:db8:7::/48.  That DTLS carried the data is read from the client namespace's own UDP
counters (/proc/<pid>/net/snmp and snmp6), not from log text.  The same file passes
against ocserv 1.1.6 (``OCGATE_E2E_SERVER=ocserv``), which hands alice the same IPv6
address (predictable-ips).
"""

from __future__ import annotations

import ipaddress
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import harness
from tests.support.harness import Client, ping, transfer
from tests.support.netns import TestNet

POOL6 = ipaddress.ip_network("2001:db8:7::/48")
SUBNET_PREFIX = 64
DNS6 = "2001:db8:5::53"
NBYTES = 2_000_000


@pytest.fixture
def net() -> Iterator[TestNet]:
    with TestNet(ipv6=True) as test_net:
        yield test_net


@pytest.fixture
def script_dump(workdir: Path) -> Path:
    return workdir / "connect-env"


@pytest.fixture
def extra_conf(workdir: Path, script_dump: Path, net: TestNet) -> list[str]:
    script = workdir / "connect.sh"
    script.write_text(f"#!/bin/sh\nenv > {script_dump}.$$\nexit 0\n")
    script.chmod(0o755)
    return [
        f"ipv6-network = {POOL6}",
        f"ipv6-subnet-prefix = {SUBNET_PREFIX}",
        f"route = {net.route6}",
        f"dns = {DNS6}",
        f"connect-script = {script}",
    ]


def _udp_datagrams(client: Client) -> tuple[int, int]:
    """(IPv4 UDP datagrams received, IPv6 ones) by the client's namespace so far."""
    assert client.pid is not None
    v4 = Path(f"/proc/{client.pid}/net/snmp").read_text().splitlines()
    names, values = (line.split()[1:] for line in v4 if line.startswith("Udp:"))
    udp4 = int(dict(zip(names, values, strict=True))["InDatagrams"])
    udp6 = 0
    for line in Path(f"/proc/{client.pid}/net/snmp6").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == "Udp6InDatagrams":
            udp6 = int(value.strip())
    return udp4, udp6


def _users(server: harness.Server, timeout: float = 15.0) -> list[dict]:
    """occtl -j show users, once the worker's periodic report has named the DTLS cipher."""
    deadline = time.monotonic() + timeout
    while True:
        rows = json.loads(server.occtl("-j", "show", "users").stdout)
        if rows and rows[0].get("DTLS cipher") or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _script_env(dump: Path) -> dict[str, str]:
    files = sorted(dump.parent.glob(dump.name + ".*"))
    assert files, "connect-script did not run"
    return dict(line.split("=", 1) for line in files[-1].read_text().splitlines() if "=" in line)


def test_dual_stack_pool_carries_ipv6_over_dtls(server, client, users, script_dump, net):
    assert client.connect("alice", users["alice"], no_dtls=False)
    assert client.wait_dtls(), harness.tail_lines(client.log)
    env = client.env()
    addr6 = ipaddress.ip_address(env["INTERNAL_IP6_ADDRESS"])
    assert addr6 in POOL6 and env["INTERNAL_IP6_NETMASK"] == f"{addr6}/{SUBNET_PREFIX}"
    assert env["INTERNAL_IP4_ADDRESS"].startswith("203.0.113.")
    assert env["INTERNAL_IP4_NETMASK"] == "255.255.255.0"
    assert env["CISCO_IPV6_SPLIT_INC"] == "1"
    assert env["CISCO_IPV6_SPLIT_INC_0_ADDR"] == "2001:db8:5::"
    assert env["CISCO_IPV6_SPLIT_INC_0_MASKLEN"] == "48"
    # ocserv names IPv6 DNS servers X-CSTP-DNS for openconnect (DNS-IP6 only for AnyConnect)
    assert f"X-CSTP-DNS={DNS6}" in env["CISCO_CSTP_OPTIONS"].splitlines()
    assert ping(client.ns, net.inside_ip6, count=3).ok
    before = _udp_datagrams(client)
    result = transfer(net, NBYTES, "down", host=net.inside_ip6, timeout=90)
    after = _udp_datagrams(client)
    assert result.sha_sent == result.sha_received
    # 2 MB in ≤1434-byte packets is well over a thousand datagrams; TLS would carry none
    assert after[0] - before[0] >= NBYTES // 1500, (before, after)
    row = _users(server)[0]
    # ocserv 1.1.6 appends a garbage scope id ("%3773262336") to the P-t-P address
    assert row["IPv6"] == str(addr6) and row["P-t-P IPv6"].split("%")[0] == "2001:db8:7::1"
    assert "(DTLS1.2)-(PSK)-" in row["DTLS cipher"]
    script = _script_env(script_dump)
    assert script["IPV6_REMOTE"] == str(addr6)
    assert script["IPV6_LOCAL"].split("%")[0] == "2001:db8:7::1"  # ocserv: same scope junk
    assert script["IPV6_PREFIX"] == str(SUBNET_PREFIX)
    assert ping(client.ns, net.inside_ip, count=2).ok
    # SIGUSR2: openconnect reconnects with its cookie and quits for good if the IPv6
    # address or prefix changed (§11 item 5); the session's lease must come back
    assert client.proc is not None
    client.proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not any(e.reason == "reconnect" for e in client.events()):
        assert client.running and time.monotonic() < deadline, harness.tail_lines(client.log)
        time.sleep(0.1)
    assert ping(client.ns, net.inside_ip6, count=3).ok
    assert _users(server)[0]["IPv6"] == str(addr6)


def test_openconnect_over_ipv6_transport(server, client, users, net):
    url = f"https://[{net.primary.server_ip6}]/"
    assert client.connect("bob", users["bob"], no_dtls=False, url=url)
    assert client.wait_dtls(), harness.tail_lines(client.log)
    before = _udp_datagrams(client)
    assert ping(client.ns, net.inside_ip, count=3).ok
    result = transfer(net, NBYTES, "down", timeout=90)
    after = _udp_datagrams(client)
    assert result.sha_sent == result.sha_received
    assert after[1] - before[1] >= NBYTES // 1500, (before, after)
    assert ping(client.ns, net.inside_ip6, count=2).ok
    row = _users(server)[0]
    assert row["Remote IP"] == net.primary.client_ip6
    assert row["Local Device IP"] == net.primary.server_ip6
    assert "(DTLS1.2)-(PSK)-" in row["DTLS cipher"]
    # an IPv6 peer costs 20 bytes more per packet than an IPv4 one (§3.4): 1500 - 48 - 38
    assert client.cstp_headers().get("X-CSTP-MTU") == "1414"


def test_small_mtu_gets_no_ipv6_but_ipv4_works(server, client, users, net):
    # Base MTU 1300 leaves a data MTU of 1300 - 28 - 38 = 1234 < 1280
    assert client.connect("alice", users["alice"], extra_args=["--base-mtu", "1300"])
    env = client.env()
    assert "INTERNAL_IP6_ADDRESS" not in env and "INTERNAL_IP6_NETMASK" not in env
    assert "CISCO_IPV6_SPLIT_INC" not in env and "INTERNAL_IP6_DNS" not in env
    headers = client.cstp_headers()
    assert "X-CSTP-Address-IP6" not in headers and int(headers["X-CSTP-MTU"]) < 1280
    assert ping(client.ns, net.inside_ip, count=3).ok
    if "ocserv" not in server.argv[0]:  # ocserv -d 1 does not print its worker's message
        assert "not sufficient for IPv6" in server.log
