"""The few rtnetlink requests main makes for a session's TUN: MTU, queue length, up,
addresses, one IPv6 route, delete.

Why not pyroute2: it imported ~200 modules (~9 MB private in main, and the sec-mod and
the zygote, forked from main, each carried and slowly copied its pages) for five message
kinds whose layout is fixed kernel ABI (linux/rtnetlink.h, if_link.h, if_addr.h). Each
request is one datagram built here (``*_request``, pure functions, unit-tested byte by
byte) and sent on a short-lived NETLINK_ROUTE socket with NLM_F_ACK; the kernel's
answer is a single NLMSG_ERROR whose code is 0 or a negative errno (``parse_ack``).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network

NLMSG_ERROR = 2
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
IFLA_MTU, IFLA_TXQLEN = 4, 13
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_PRIORITY = 1, 4, 6
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope,
# type, flags
_ERR_CODE = struct.Struct("=i")


class RtnlError(OSError):
    """The kernel refused a request; ``errno`` is its code."""


def _attr(kind: int, payload: bytes) -> bytes:
    """One rtattr: length, type, payload, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _message(kind: int, flags: int, body: bytes, seq: int) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind,
                          NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0) + body


def link_set_request(index: int, *, seq: int = 1, mtu: int | None = None,
                     txqlen: int | None = None, up: bool = False) -> bytes:
    """RTM_NEWLINK on an existing link (``ip link set dev X mtu M txqueuelen Q up``)."""
    attrs = (_u32(IFLA_MTU, mtu) if mtu is not None else b"") + (
        _u32(IFLA_TXQLEN, txqlen) if txqlen is not None else b"")
    flags = IFF_UP if up else 0
    return _message(RTM_NEWLINK, 0,
                    _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, flags) + attrs, seq)


def link_del_request(index: int, *, seq: int = 1) -> bytes:
    """RTM_DELLINK by index (``ip link del``): by index, never by name (tun.remove_tun)."""
    return _message(RTM_DELLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0), seq)


def addr_add_request(index: int, local: IPv4Address | IPv6Address, prefixlen: int, *,
                     peer: IPv4Address | IPv6Address | None = None, seq: int = 1) -> bytes:
    """RTM_NEWADDR (``ip addr add local [peer P]/len dev X``); a second add of the same
    address fails with EEXIST, as ``ip`` does."""
    family = socket.AF_INET if local.version == 4 else socket.AF_INET6
    body = _IFADDRMSG.pack(family, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
    body += _attr(IFA_LOCAL, local.packed)
    body += _attr(IFA_ADDRESS, (peer or local).packed)
    return _message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, seq)


def route_replace_request(dst: IPv6Network, oif: int, *, priority: int = 1,
                          seq: int = 1) -> bytes:
    """RTM_NEWROUTE with NLM_F_REPLACE (``ip -6 route replace DST dev X metric P``)."""
    body = _RTMSG.pack(socket.AF_INET6, dst.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                       RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    body += _attr(RTA_DST, dst.network_address.packed)
    body += _u32(RTA_OIF, oif) + _u32(RTA_PRIORITY, priority)
    return _message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body, seq)


def parse_ack(data: bytes, seq: int) -> int:
    """The errno (0: done) of the kernel's NLMSG_ERROR answer to request ``seq``; other
    messages in the datagram are skipped. ValueError when there is no such answer."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, got_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        if kind == NLMSG_ERROR and got_seq == seq and length >= _NLMSGHDR.size + 4:
            return -_ERR_CODE.unpack_from(data, offset + _NLMSGHDR.size)[0]
        offset += (length + 3) & ~3
    raise ValueError("no netlink acknowledgement in the answer")


class Rtnl:
    """A NETLINK_ROUTE socket for a handful of requests, each waited for in turn."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.settimeout(5.0)  # the kernel answers at once; never hang main
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.sock.close()

    def _call(self, request: bytes, seq: int) -> None:
        """Send ``request`` (numbered ``seq``) and wait for its acknowledgement;
        RtnlError with the kernel's errno when it refused."""
        self.sock.send(request)
        while True:
            try:
                code = parse_ack(self.sock.recv(65536), seq)
            except ValueError:
                continue  # not ours (a late answer); ours follows
            if code:
                raise RtnlError(code, os.strerror(code))
            return

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def set_link(self, index: int, *, mtu: int | None = None, txqlen: int | None = None,
                 up: bool = False) -> None:
        seq = self._next()
        self._call(link_set_request(index, seq=seq, mtu=mtu, txqlen=txqlen, up=up), seq)

    def del_link(self, index: int) -> None:
        seq = self._next()
        self._call(link_del_request(index, seq=seq), seq)

    def add_addr(self, index: int, local: IPv4Address | IPv6Address, prefixlen: int,
                 peer: IPv4Address | IPv6Address | None = None) -> None:
        seq = self._next()
        self._call(addr_add_request(index, local, prefixlen, peer=peer, seq=seq), seq)

    def replace_route(self, dst: IPv6Network, oif: int, priority: int = 1) -> None:
        seq = self._next()
        self._call(route_replace_request(dst, oif, priority=priority, seq=seq), seq)


def link_index(name: str) -> int:
    """The interface index of ``name``; RtnlError(ENODEV) when there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError as exc:
        raise RtnlError(errno.ENODEV, f"no interface {name}") from exc
