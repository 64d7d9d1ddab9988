"""Main's side of DTLS: the per-client UDP socket it opens and hands to the worker.

Main receives every client's first DTLS datagram on the shared UDP port (ClientHello
routing, server.py); once it knows the session, it gives the worker a socket connected
to that one client, made here.
"""

from __future__ import annotations

import os
import socket


def udp_socket_for(local: tuple, peer: tuple, family: int, pmtu_discovery: bool = False) -> int:
    """A UDP socket on our DTLS port connected to one client (main uses it)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if pmtu_discovery:  # try-mtu-discovery: set DF, let the kernel learn the path MTU
            for level, opt, value in ((socket.IPPROTO_IP, socket.IP_MTU_DISCOVER,
                                       socket.IP_PMTUDISC_DO),
                                      (socket.IPPROTO_IPV6, socket.IPV6_MTU_DISCOVER,
                                       socket.IPV6_PMTUDISC_DO)):
                try:
                    sock.setsockopt(level, opt, value)
                except OSError:
                    pass
        sock.bind(local)
        sock.connect(peer)
        return os.dup(sock.fileno())
    finally:
        sock.close()
