"""TUN devices, exercised inside a throw-away network namespace so the host is untouched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.vpn.main.tun import TunNameError, open_tun
from tests.prereqs import needs, needs_command, require_tun
from tests.support.tun import run_in, scratch_netns

pytestmark = [needs(require_tun), needs_command("ip", "iproute2")]


@pytest.fixture
def netns() -> Iterator[str]:
    with scratch_netns("ocg-t-") as name:
        yield name


def test_open_configure_and_remove(netns: str) -> None:
    result = run_in(netns, """
    fd0, name0 = open_tun("vpns%d")
    fd1, name1 = open_tun("vpns%d")
    flags = fcntl.fcntl(fd0, fcntl.F_GETFL)
    cloexec = fcntl.fcntl(fd0, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    configure_tun(name0, local=IPv4Address("203.0.113.1"), peer=IPv4Address("203.0.113.50"),
                  mtu=1434, txqueuelen=100, ipv6_local=IPv6Address("fd77::1"),
                  ipv6_peer=IPv6Network("fd77:0:0:5::/64"))
    [link] = ip_json("addr", "show", "dev", name0)
    routes6 = ip_json("-6", "route", "show", "dev", name0)
    set_mtu(name0, 1400)
    mtu_after = ip_json("link", "show", "dev", name0)[0]["mtu"]
    os.close(fd1)
    gone1 = not link_exists(name1)
    remove_tun(name0, fd0)
    gone0 = not link_exists(name0)
    remove_tun(name0)  # idempotent
    print(json.dumps(dict(names=[name0, name1], nonblock=bool(flags & os.O_NONBLOCK),
                          cloexec=bool(cloexec), link=link, routes6=routes6,
                          mtu_after=mtu_after, gone0=gone0, gone1=gone1)))
    """)
    assert result["names"] == ["vpns0", "vpns1"]
    assert result["nonblock"] and result["cloexec"]
    link = result["link"]
    assert link["mtu"] == 1434 and link["txqlen"] == 100
    assert "UP" in link["flags"] and "POINTOPOINT" in link["flags"]
    [inet] = [a for a in link["addr_info"] if a["family"] == "inet"]
    assert (inet["local"], inet["address"], inet["prefixlen"]) == (
        "203.0.113.1", "203.0.113.50", 32)
    assert any(a["local"] == "fd77::1" and a["prefixlen"] == 128 for a in link["addr_info"])
    assert any(r["dst"] == "fd77:0:0:5::/64" for r in result["routes6"])
    assert result["mtu_after"] == 1400
    assert result["gone0"] and result["gone1"]


def test_packets_flow_both_ways(netns: str) -> None:
    """Kernel → fd (a UDP datagram to the peer) and fd → kernel → fd (ICMP echo)."""
    result = run_in(netns, """
    fd, name = open_tun("vpns%d")
    configure_tun(name, local=IPv4Address("203.0.113.1"), peer=IPv4Address("203.0.113.50"),
                  mtu=1400)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(b"ping-out", ("203.0.113.50", 9))
    out = read_packet(fd)
    while out[0] >> 4 != 4 or out[9] != 17:  # skip anything else the kernel sends
        out = read_packet(fd)
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"ping-in"
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,
                      socket.inet_aton("203.0.113.50"), socket.inet_aton("203.0.113.1"))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    os.write(fd, hdr + icmp)
    reply = read_packet(fd)
    while reply[9] != 1:
        reply = read_packet(fd)
    remove_tun(name, fd)
    print(json.dumps(dict(out=out.hex(), reply=reply.hex())))
    """)
    out = bytes.fromhex(result["out"])
    assert out[16:20] == bytes([203, 0, 113, 50]) and out[12:16] == bytes([203, 0, 113, 1])
    assert out.endswith(b"ping-out")
    reply = bytes.fromhex(result["reply"])
    assert reply[16:20] == bytes([203, 0, 113, 50])
    assert reply[20] == 0  # ICMP echo reply
    assert reply[24:26] == b"\x12\x34" and reply.endswith(b"ping-in")


@pytest.mark.parametrize("name", ["", "a" * 16, "bad name", "x/y", "%d%d", "..", "vpn\n"])
def test_bad_names_are_refused_before_any_syscall(name: str) -> None:
    with pytest.raises(TunNameError):
        open_tun(name)
