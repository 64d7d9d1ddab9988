"""main/rtnl.py: the rtnetlink requests byte by byte (kernel ABI written out by hand here),
the acknowledgement parser, and the kernel's refusals as errno in a scratch namespace."""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from appliance.vpn.main import rtnl
from tests.prereqs import needs, needs_command, require_tun
from tests.support.tun import run_in, scratch_netns


def _hdr(length: int, kind: int, flags: int, seq: int) -> bytes:
    return struct.pack("=IHHII", length, kind, flags, seq, 0)


def test_link_set_mtu_txqlen_up() -> None:
    got = rtnl.link_set_request(7, seq=3, mtu=1434, txqlen=100, up=True)
    ifinfo = bytes([0, 0]) + struct.pack("=HiII", 0, 7, 1, 1)  # AF_UNSPEC, index 7, IFF_UP
    attrs = struct.pack("=HHI", 8, 4, 1434) + struct.pack("=HHI", 8, 13, 100)
    assert got == _hdr(16 + 16 + 16, 16, 0x5, 3) + ifinfo + attrs


def test_link_set_without_up_changes_no_flag() -> None:
    got = rtnl.link_set_request(2, mtu=1400)
    assert got[16:32] == bytes([0, 0]) + struct.pack("=HiII", 0, 2, 0, 0)
    assert len(got) == 40


def test_link_del() -> None:
    assert rtnl.link_del_request(9, seq=5) == _hdr(32, 17, 0x5, 5) + bytes(
        [0, 0]) + struct.pack("=HiII", 0, 9, 0, 0)


def test_addr_add_ipv4_point_to_point() -> None:
    got = rtnl.addr_add_request(4, IPv4Address("203.0.113.1"), 32,
                                peer=IPv4Address("203.0.113.50"), seq=2)
    body = bytes([2, 32, 0, 0]) + struct.pack("=I", 4)
    body += struct.pack("=HH", 8, 2) + bytes([203, 0, 113, 1])  # IFA_LOCAL
    body += struct.pack("=HH", 8, 1) + bytes([203, 0, 113, 50])  # IFA_ADDRESS: the peer
    assert got == _hdr(16 + len(body), 20, 0x1 | 0x4 | 0x400 | 0x200, 2) + body


def test_addr_add_ipv6_local_only() -> None:
    got = rtnl.addr_add_request(4, IPv6Address("2001:db8::1"), 128)
    assert got[16:24] == bytes([10, 128, 0, 0]) + struct.pack("=I", 4)
    packed = IPv6Address("2001:db8::1").packed
    assert got[24:] == struct.pack("=HH", 20, 2) + packed + struct.pack("=HH", 20, 1) + packed


def test_route_replace_ipv6() -> None:
    got = rtnl.route_replace_request(IPv6Network("2001:db8:0:5::/64"), 6, priority=1, seq=4)
    body = bytes([10, 64, 0, 0, 254, 3, 0, 1]) + struct.pack("=I", 0)
    body += struct.pack("=HH", 20, 1) + IPv6Network("2001:db8:0:5::/64").network_address.packed
    body += struct.pack("=HHI", 8, 4, 6) + struct.pack("=HHI", 8, 6, 1)
    assert got == _hdr(16 + len(body), 24, 0x1 | 0x4 | 0x400 | 0x100, 4) + body


def _ack(seq: int, code: int) -> bytes:
    return _hdr(36, 2, 0, seq) + struct.pack("=i", code) + bytes(16)


def test_parse_ack() -> None:
    assert rtnl.parse_ack(_ack(3, 0), 3) == 0
    assert rtnl.parse_ack(_ack(3, -errno.EEXIST), 3) == errno.EEXIST
    # another request's answer first: skipped
    assert rtnl.parse_ack(_ack(2, -errno.EPERM) + _ack(3, -errno.ENODEV), 3) == errno.ENODEV
    for bad in (b"", _ack(2, 0), b"\xff" * 20, _hdr(1000, 2, 0, 3) + bytes(4)):
        with pytest.raises(ValueError):
            rtnl.parse_ack(bad, 3)


@pytest.fixture
def netns() -> Iterator[str]:
    with scratch_netns("ocg-rt-", ipv6=True) as name:
        yield name


@needs(require_tun)
@needs_command("ip", "iproute2")
def test_kernel_refusals_are_errno(netns: str) -> None:
    """Refusals come back as the kernel's errno: the same address twice (EEXIST), an
    absent link (ENODEV); and remove_tun by a stale index leaves the name's new device."""
    result = run_in(netns, """
    from appliance.vpn.main.rtnl import Rtnl, RtnlError, link_index
    from appliance.vpn.main.tun import TunError
    fd, name = open_tun("vpns%d")
    configure_tun(name, local=IPv4Address("203.0.113.1"), peer=IPv4Address("203.0.113.9"),
                  mtu=1400)
    codes = {}
    try:
        with Rtnl() as nl:
            nl.add_addr(link_index(name), IPv4Address("203.0.113.1"), 32,
                        peer=IPv4Address("203.0.113.9"))
    except RtnlError as exc:
        codes["twice"] = exc.errno
    try:
        set_mtu("nosuch0", 1400)
    except TunError as exc:
        codes["absent"] = exc.errno
    stale = link_index(name)
    os.close(fd)
    fd2, name2 = open_tun(name)
    remove_tun(name2, index=stale)
    kept = link_exists(name2)
    remove_tun(name2, fd2)
    print(json.dumps(dict(codes=codes, same_name=name2 == name, kept=kept,
                          gone=not link_exists(name2))))
    """)
    assert result["codes"] == {"twice": errno.EEXIST, "absent": errno.ENODEV}
    assert result["same_name"] and result["kept"] and result["gone"]
