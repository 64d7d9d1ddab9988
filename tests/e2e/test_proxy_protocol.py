"""listen-proxy-proto end to end: Debian's haproxy in front of two OCGate gateways.

Topology (all in namespaces this module creates, links in 198.18.0.0/15)::

    client ns c0/c1/c2 --veth-- haproxy ns (router) --veth-- gateway ns g0
                                   VIP on lo       --veth-- gateway ns g1
                                                             (VIP on lo, inside host on lo)

TCP to VIP:443 ends in haproxy (``send-proxy-v2``, roundrobin, sticky by source so that
one client's login and CONNECT reach the same gateway); VIP:8443 is a ``send-proxy`` (v1)
frontend. UDP to the VIP is routed by policy straight to the gateway the client is stuck
to, where the VIP is an anycast address on lo: DTLS never passes through haproxy
(docs/haproxy.md).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.vpn.protocol.proxyproto import build_v2
from tests.prereqs import needs_command, require_command, require_e2e
from tests.support import harness
from tests.support.netns import (
    INSIDE_DNS,
    INSIDE_IP,
    INSIDE_ROUTE,
    LINK_SUPERNET,
    VPN_POOL,
    Link,
    Netns,
)
from tests.support.processes import stop_process
from tests.support.workdir import make_workdir, remove_workdir

pytestmark = needs_command("haproxy", "haproxy")

V1_PORT = 8443
BANS = ["max-ban-score = 30", "ban-time = 300", "ban-reset-time = 600"]


@dataclass
class Gateway:
    """One OCGate server namespace; duck-types the TestNet fields the harness reads."""

    server_ns: Netns
    server_ip: str  # the VIP: what clients connect to and the certificate names
    link_ip: str  # where haproxy reaches this gateway
    block: int
    index: int
    pool: str = VPN_POOL
    dns: str = INSIDE_DNS
    route: str = INSIDE_ROUTE
    inside_ip: str = INSIDE_IP
    server: harness.Server | None = None


@dataclass
class ProxiedNet:
    """Clients, the haproxy/router namespace and two gateways."""

    block: int
    proxy_ns: Netns
    vip: str
    gateways: list[Gateway] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    namespaces: list[Netns] = field(default_factory=list)

    def addr(self, n: int) -> str:
        return str(LINK_SUPERNET.network_address + self.block * 256 + n)

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            ns.delete()


def _veth(proxy_ns: Netns, other: Netns, index: int, proxy_ip: str, other_ip: str) -> None:
    """A /30 between the haproxy namespace and ``other`` (created inside, as netns.py)."""
    here, there = f"ocgh{index}", f"ocgp{index}"
    proxy_ns.ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", other.name)
    proxy_ns.ip("addr", "add", f"{proxy_ip}/30", "dev", here)
    other.ip("addr", "add", f"{other_ip}/30", "dev", there)
    proxy_ns.ip("link", "set", here, "up")
    other.ip("link", "set", there, "up")
    for name in ("accept_local", "rp_filter"):  # replies come back from the anycast VIP
        proxy_ns.run(["sysctl", "-qw", f"net.ipv4.conf.{here}.{name}="
                      f"{1 if name == 'accept_local' else 0}"])


def build_network(clients: int = 3) -> ProxiedNet:
    block = secrets.randbelow(LINK_SUPERNET.num_addresses // 256)
    net = ProxiedNet(block, Netns.create("h"), "")
    net.namespaces.append(net.proxy_ns)
    net.vip = net.addr(200)
    hp = net.proxy_ns
    try:
        for key, value in (("net.ipv4.ip_forward", 1), ("net.ipv4.conf.all.accept_local", 1),
                           ("net.ipv4.conf.all.rp_filter", 0)):
            hp.run(["sysctl", "-qw", f"{key}={value}"])
        hp.ip("addr", "add", f"{net.vip}/32", "dev", "lo")
        for i in range(clients):  # clients: 198.18.B.(4i+2), haproxy side .(4i+1)
            ns = Netns.create("c", private_resolv_conf=True)
            net.namespaces.append(ns)
            _veth(hp, ns, i, net.addr(4 * i + 1), net.addr(4 * i + 2))
            ns.ip("route", "add", f"{net.vip}/32", "via", net.addr(4 * i + 1))
            net.links.append(Link(i, ns, net.addr(4 * i + 2), net.addr(4 * i + 1), net.vip,
                                  f"ocgp{i}", f"ocgh{i}"))
        for g in range(2):  # gateways: 198.18.B.(34+4g), haproxy side .(33+4g)
            ns = Netns.create("s")
            net.namespaces.append(ns)
            near, far = net.addr(33 + 4 * g), net.addr(34 + 4 * g)
            _veth(hp, ns, 8 + g, near, far)
            ns.ip("addr", "add", f"{INSIDE_IP}/32", "dev", "lo")
            ns.ip("addr", "add", f"{net.vip}/32", "dev", "lo")  # anycast, for UDP only
            ns.ip("route", "add", f"{net.addr(0)}/27", "via", near)  # back to the clients
            hp.ip("route", "add", f"{net.vip}/32", "via", far, "table", str(100 + g))
            net.gateways.append(Gateway(ns, net.vip, far, block, g))
        # the local table after our UDP rules: UDP to the VIP leaves, TCP stays for haproxy
        hp.ip("rule", "add", "pref", "1000", "lookup", "local")
        hp.ip("rule", "del", "pref", "0")
    except BaseException:
        net.close()
        raise
    return net


def route_udp(net: ProxiedNet, link: Link, gateway: Gateway) -> None:
    """Send this client's DTLS straight to the gateway haproxy stuck it to."""
    net.proxy_ns.ip("rule", "add", "pref", str(100 + link.index), "from", f"{link.client_ip}/32",
                    "ipproto", "udp", "dport", str(harness.HTTPS_PORT),
                    "lookup", str(100 + gateway.index))


HAPROXY_CFG = """\
# written by tests/e2e/test_proxy_protocol.py
global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend vpn_v2
    bind {vip}:443
    default_backend gateways
backend gateways
    balance roundrobin
    stick-table type ip size 1k expire 30m
    stick on src
    server gw0 {gw0}:443 send-proxy-v2
    server gw1 {gw1}:443 send-proxy-v2
frontend vpn_v1
    bind {vip}:{v1_port}
    default_backend v1
backend v1
    server gw1 {gw1}:443 send-proxy
"""


@dataclass
class Setup:
    net: ProxiedNet
    dir: Path
    files: list[harness.ServerFiles]
    users: dict[str, str]
    haproxy: subprocess.Popen[bytes]
    clients: list[harness.Client] = field(default_factory=list)

    def client(self, index: int) -> harness.Client:
        link = self.net.links[index]
        # the gateways share one certificate, as behind any balancer
        c = harness.Client(self.net.gateways[0], self.files[0], link=link,  # type: ignore[arg-type]
                           name=f"client{index}-{len(self.clients)}")
        self.clients.append(c)
        return c

    def occtl_json(self, gateway: Gateway, *args: str) -> list[dict]:
        assert gateway.server is not None
        return json.loads(gateway.server.occtl("-j", *args).stdout or "[]")

    def gateway_of(self, client_ip: str, timeout: float = 10.0) -> Gateway:
        """The gateway whose sec-mod holds a session from ``client_ip`` (its real address)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [g for g in self.net.gateways
                     if any(s.get("Remote IP") == client_ip
                            for s in self.occtl_json(g, "show", "sessions", "all"))]
            if found:
                assert len(found) == 1, f"{client_ip} has sessions on both gateways"
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no gateway knows {client_ip}")


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    require_e2e()
    require_command("haproxy", "haproxy")
    workdir = make_workdir()
    users = {name: f"{name[0]}-" + secrets.token_urlsafe(9) for name in ("alice", "bob", "carol")}
    net = build_network()
    haproxy = None
    try:
        files = []
        for gw in net.gateways:
            sub = workdir / f"gw{gw.index}"
            files.append(harness.make_server_files(
                sub, gw, users=users,  # type: ignore[arg-type]
                extra_conf=["listen-proxy-proto = true", *BANS]))
        for name in ("cert", "key"):  # one certificate for both gateways
            shutil.copyfile(getattr(files[0], name), getattr(files[1], name))
        files[1].pin = files[0].pin
        for gw, f in zip(net.gateways, files, strict=True):
            gw.server = harness.Server(gw, f).start()  # type: ignore[arg-type]
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(vip=net.vip, gw0=net.gateways[0].link_ip,
                                          gw1=net.gateways[1].link_ip, v1_port=V1_PORT))
        log = (workdir / "haproxy.log").open("wb")
        haproxy = net.proxy_ns.popen(["haproxy", "-f", str(cfg), "-db"], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (net.proxy_ns.tcp_listening(443) and net.proxy_ns.tcp_listening(V1_PORT)):
            assert haproxy.poll() is None, (workdir / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "haproxy did not listen"
            time.sleep(0.1)
        state = Setup(net, workdir, files, users, haproxy)
        yield state
        for c in state.clients:
            c.close()
    finally:
        if haproxy is not None:
            stop_process(haproxy)
        for gw in net.gateways:
            if gw.server is not None:
                gw.server.stop()
                if os.environ.get("OCGATE_E2E_VERBOSE"):
                    print(harness.tail_lines(gw.server.log, 60))
        net.close()
        remove_workdir(workdir)


def _connect_through_proxy(setup: Setup, index: int, user: str) -> tuple[harness.Client, Gateway]:
    """Log in (haproxy picks and pins a gateway), route UDP there, then CONNECT with DTLS."""
    client = setup.client(index)
    cookie = client.authenticate(user, setup.users[user])["COOKIE"]
    gateway = setup.gateway_of(client.link.client_ip)
    route_udp(setup.net, client.link, gateway)
    assert client.connect_with_cookie(cookie, no_dtls=False, timeout=30), client.log
    return client, gateway


def test_haproxy_v2_roundrobin_real_addresses_dtls_and_bans(setup: Setup) -> None:
    net = setup.net
    proxy_side = {net.addr(33), net.addr(37)}
    c0, gw_a = _connect_through_proxy(setup, 0, "alice")
    c1, gw_b = _connect_through_proxy(setup, 1, "bob")
    assert gw_a is not gw_b, "roundrobin put both clients on one gateway"
    for client, gw in ((c0, gw_a), (c1, gw_b)):
        users = setup.occtl_json(gw, "show", "users")
        remote = [u["Remote IP"] for u in users]
        assert remote == [client.link.client_ip], remote  # the client, not haproxy
        assert not proxy_side & set(remote)
        assert users[0]["Local Device IP"] == net.vip  # what the client connected to
        # DTLS straight to the gateway (UDP never passes haproxy), then traffic both ways
        assert client.wait_dtls(15), client.log
        assert harness.ping(client.ns, gw.inside_ip).ok
        result = harness.transfer(gw, 1_000_000, link=client.link,  # type: ignore[arg-type]
                                  timeout=60)
        assert result.sha_sent == result.sha_received
        assert _dtls_cipher(setup, gw), "the gateway does not report a DTLS channel"

    # bans count and apply per real client address, through the proxy: a new address lands
    # on the next gateway in turn; whichever it is, an address already pinned there stays
    attacker = setup.client(2)
    for _ in range(3):  # 3 x (10 for the password + 1 for the connection) >= 30
        assert attacker.authenticate("carol", "wrong", check=False).get("COOKIE") is None
    assert attacker.authenticate("carol", setup.users["carol"], check=False) == {}
    banned = {g.index: [b["IP"] for b in setup.occtl_json(g, "show", "ip", "bans")]
              for g in net.gateways}
    assert sorted(banned.values()) == [[], [attacker.link.client_ip]], banned
    gw_x = next(g for g in net.gateways if banned[g.index])
    bystander, user = (c0, "alice") if gw_x is gw_a else (c1, "bob")
    again = setup.client(bystander.link.index)
    assert again.authenticate(user, setup.users[user]).get("COOKIE")
    gw_x.server.occtl("unban", "ip", attacker.link.client_ip)  # type: ignore[union-attr]
    assert attacker.authenticate("carol", setup.users["carol"]).get("COOKIE")
    for gw in net.gateways:
        gw.server.assert_running()  # type: ignore[union-attr]


def _dtls_cipher(setup: Setup, gw: Gateway, timeout: float = 15.0) -> str:
    """The DTLS cipher the gateway reports (workers report it with their counters)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cipher = setup.occtl_json(gw, "show", "users")[0].get("DTLS cipher", "")
        if cipher:
            return cipher
        time.sleep(0.5)
    return ""


def _sessions_from(setup: Setup, gw: Gateway, ip: str) -> int:
    return sum(1 for s in setup.occtl_json(gw, "show", "sessions", "all")
               if s.get("Remote IP") == ip)


RAW_CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 443), timeout=20)
s.sendall(bytes.fromhex(sys.argv[2]))
start = time.monotonic()
try:
    data = s.recv(4096)
except ConnectionResetError:
    data = b""
print(len(data), round(time.monotonic() - start, 2))
"""


def _raw(setup: Setup, payload: bytes) -> subprocess.Popen[str]:
    """A connection from the haproxy namespace straight to a gateway, bypassing haproxy."""
    gw = setup.net.gateways[0]
    return setup.net.proxy_ns.popen([sys.executable, "-c", RAW_CLIENT, gw.link_ip, payload.hex()],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _closed_after(proc: subprocess.Popen[str]) -> float:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    received, seconds = out.split()
    assert received == "0", f"the gateway answered {received} bytes instead of closing"
    return float(seconds)


def test_connections_without_a_valid_header_are_dropped(setup: Setup) -> None:
    silent = _raw(setup, b"")  # says nothing: dropped at the header deadline (5 s)
    tls = _raw(setup, bytes.fromhex("16030100a5010000a10303") + b"\x00" * 40)
    health = _raw(setup, build_v2(None, None, local=True))  # haproxy's LOCAL health check
    assert _closed_after(tls) < 3
    assert _closed_after(health) < 3
    assert 3 < _closed_after(silent) < 15
    # the gateway keeps serving, and a v1 header (send-proxy) works as well
    client = setup.client(2)
    client.url = f"https://{setup.net.vip}:{V1_PORT}/"
    before = _sessions_from(setup, setup.net.gateways[1], client.link.client_ip)
    assert client.authenticate("bob", setup.users["bob"]).get("COOKIE")
    assert _sessions_from(setup, setup.net.gateways[1], client.link.client_ip) == before + 1
    log = setup.net.gateways[0].server.log  # type: ignore[union-attr]
    assert "invalid PROXY header" in log and "no complete PROXY header" in log
