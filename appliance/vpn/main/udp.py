"""Main's side of DTLS: the per-client UDP socket it opens and hands to the worker.

Main receives every client's first DTLS datagram on the shared UDP port (ClientHello
routing, server.py); once it knows the session, it gives the worker a socket connected
to that one client, made here.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

# Linux's path-MTU discovery options (linux/in.h, linux/in6.h): Python's socket module does
# not export them, so reading them from it raised AttributeError once try-mtu-discovery was on.
IP_MTU_DISCOVER = 10
IPV6_MTU_DISCOVER = 23
PMTUDISC_DO = 2  # IP_PMTUDISC_DO and IPV6_PMTUDISC_DO: always set DF, never fragment locally

log = logging.getLogger(__name__)
_missing: set[str] = set()  # options already reported, so a busy server logs each once


def optional_sockopt(sock: socket.socket, level: int, option: int, value: int,
                     name: str) -> bool:
    """Set an option the server can live without (SO_REUSEPORT in a restricted container,
    IPV6_V6ONLY on a host without IPv6): a refusal is logged once, never fatal."""
    try:
        sock.setsockopt(level, option, value)
    except OSError as exc:
        if name not in _missing:
            _missing.add(name)
            log.warning("socket option %s refused (%s); continuing without it", name,
                        exc.strerror or exc)
        return False
    return True


def udp_socket_for(local: tuple[Any, ...], peer: tuple[Any, ...], family: int,
                   pmtu_discovery: bool = False) -> int:
    """A UDP socket on our DTLS port connected to one client (main uses it)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        optional_sockopt(sock, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1, "SO_REUSEADDR")
        optional_sockopt(sock, socket.SOL_SOCKET, socket.SO_REUSEPORT, 1, "SO_REUSEPORT")
        if pmtu_discovery:  # try-mtu-discovery: set DF, let the kernel learn the path MTU
            for level, opt in ((socket.IPPROTO_IP, IP_MTU_DISCOVER),
                               (socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER)):
                try:
                    sock.setsockopt(level, opt, PMTUDISC_DO)
                except OSError:
                    pass
        sock.bind(local)
        sock.connect(peer)
        return os.dup(sock.fileno())
    finally:
        sock.close()
