"""TUN devices, one per client, as ocserv creates them (docs/protocol.md §8.1, §8.2).

Linux only, needs CAP_NET_ADMIN.  ``open_tun`` asks the kernel for a fresh,
non-persistent ``IFF_TUN | IFF_NO_PI`` device (raw IP packets, no 4-byte packet-info
prefix), named from a pattern such as ``vpns%d`` so the kernel picks ``vpns0``,
``vpns1``, …  ``configure_tun`` makes it point-to-point: the server's address (the
pool's network + 1, the same on every tun) as local, the client's VPN address as
peer, /32, with the negotiated data MTU.  Closing the last fd deletes the device;
``remove_tun`` also deletes the link explicitly, in case another process still holds a
copy of the fd (the worker gets one over SCM_RIGHTS).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import socket
import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from .rtnl import Rtnl, RtnlError, link_index

log = logging.getLogger(__name__)

__all__ = [
    "TunError",
    "TunNameError",
    "configure_tun",
    "link_exists",
    "open_tun",
    "remove_tun",
    "set_mtu",
    "tun_index",
]

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000  # every read and write carries a virtio_net_hdr (worker/gro.py)
IFNAMSIZ = 16
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name + flags, padded to 40 bytes
_NAME_OK = re.compile(r"[A-Za-z0-9_.-]*(%d)?[A-Za-z0-9_.-]*")


class TunNameError(ValueError):
    """The requested interface name cannot be a Linux interface name."""


class TunError(OSError):
    """The kernel refused to create or configure the device."""


def _check_name(name: str) -> bytes:
    raw = name.encode("ascii", "replace")
    if not name or len(raw) >= IFNAMSIZ or not _NAME_OK.fullmatch(name) or name in (".", ".."):
        raise TunNameError(f"bad interface name {name!r}")
    return raw


def open_tun(name: str, *, owner: int | None = None, group: int | None = None,
             vnet_hdr: bool = False) -> tuple[int, str]:
    """Create a tun device; returns (non-blocking close-on-exec fd, the kernel's name).

    ``name`` may contain one ``%d`` (ocserv passes ``<device>%d``).  ``owner``/``group``
    mirror ocserv's TUNSETOWNER/TUNSETGROUP; a worker that receives the fd does not
    need them, so they are optional.
    """
    raw = _check_name(name)
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        result = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(raw, flags))
        real = _IFREQ.unpack(result)[0].split(b"\0", 1)[0].decode("ascii")
        # Non-persistent: the device disappears with its last fd, so a crash leaks nothing.
        fcntl.ioctl(fd, TUNSETPERSIST, 0)
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner)
        if group is not None:
            fcntl.ioctl(fd, TUNSETGROUP, group)
    except OSError as exc:
        os.close(fd)
        raise TunError(exc.errno, f"{name}: TUNSETIFF failed: {exc.strerror}") from exc
    log.debug("created tun device %s", real)
    return fd, real


def configure_tun(
    name: str,
    *,
    local: IPv4Address | None,
    peer: IPv4Address | None,
    mtu: int,
    txqueuelen: int | None = None,
    ipv6_local: IPv6Address | None = None,
    ipv6_peer: IPv6Network | None = None,
) -> None:
    """Addresses, MTU and link up, as ocserv's ``set_tun_mtu``/``os_set_ipv4_addr`` do.

    IPv4: ``local peer <peer>/32``.  IPv6 (optional): ``local/128`` plus a route to the
    client's subnet through the device.  The MTU must be the advertised data MTU
    (§11 item 17), or the client may get packets larger than it accepts.
    """
    _check_name(name)
    try:
        with Rtnl() as nl:
            idx = link_index(name)
            nl.set_link(idx, mtu=mtu, txqlen=txqueuelen)
            if local is not None and peer is not None:
                nl.add_addr(idx, local, 32, peer=peer)
            nl.set_link(idx, up=True)
            if ipv6_local is not None:
                nl.add_addr(idx, ipv6_local, 128)
            if ipv6_peer is not None:
                # replace: a session taken over may still have its old tun for a moment,
                # and the client's subnet must follow it to the new one
                nl.replace_route(ipv6_peer, idx, priority=1)
    except RtnlError as exc:
        raise TunError(exc.errno, f"{name}: netlink: {exc.strerror}") from exc


def set_mtu(name: str, mtu: int) -> None:
    """Change the MTU later (ocserv's CMD_TUN_MTU when the DTLS MTU shrinks or grows)."""
    _check_name(name)
    try:
        with Rtnl() as nl:
            nl.set_link(link_index(name), mtu=mtu)
    except RtnlError as exc:
        raise TunError(exc.errno, f"{name}: netlink: {exc.strerror}") from exc


def link_exists(name: str) -> bool:
    return tun_index(name) != 0


def tun_index(name: str) -> int:
    """The interface index of ``name`` now (0 if gone), to tell this device from a later
    one that the kernel gives the same name once this one is deleted."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


def remove_tun(name: str, fd: int | None = None, index: int = 0) -> None:
    """Close our fd (if given) and make sure the link is gone; quiet when it already is.

    With ``index`` only that very device goes: a non-persistent TUN disappears with the
    worker's fd, and its name is handed to the next session at once, so deleting by name
    later could take another user's tunnel down (found by the soak, issue #11).
    """
    if fd is not None:
        try:
            os.close(fd)
        except OSError as exc:
            log.debug("closing tun fd of %s: %s", name, exc)
    _check_name(name)
    now = tun_index(name)
    if not now or (index and now != index):
        return  # gone, or the name is another session's device now
    try:
        with Rtnl() as nl:
            nl.del_link(now)
    except RtnlError as exc:
        if exc.errno not in (errno.ENODEV, errno.ENOENT):
            raise TunError(exc.errno, f"{name}: cannot delete: {exc.strerror}") from exc
