"""The first routers on the way out, found like traceroute does but without raw sockets: a
UDP datagram with a small TTL, and the ICMP "time exceeded" read from the socket's error
queue (IP_RECVERR).  The hop behind the home router tells what the mapping protocols cannot
when the router hides its WAN address: an address in 100.64.0.0/10 there is the provider's
carrier-grade NAT, a private one another router in the home.
"""

from __future__ import annotations

import select
import socket
import struct
import time

IP_RECVERR = 11
SO_EE_ORIGIN_ICMP = 2
ICMP_TIME_EXCEEDED = 11
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err
PROBE_PORT = 33434  # traceroute's first port: nothing listens there


def hop(target: str, ttl: int, *, timeout: float = 1.0) -> str | None:
    """The address of the router ``ttl`` hops away on the way to ``target`` (None: no
    answer, or ``target`` itself was reached)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.connect((target, PROBE_PORT + ttl))
        try:
            sock.send(b"ocgate-hop-probe")
        except OSError:
            pass
        poller = select.poll()
        poller.register(sock, select.POLLERR)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(left * 1000):
                continue
            try:
                _, ancdata, _, _ = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return None
            for level, kind, data in ancdata:
                if level != socket.IPPROTO_IP or kind != IP_RECVERR:
                    continue
                if len(data) < _EXTENDED_ERR.size + 8:
                    continue
                _, origin, icmp_type, _, _, _, _ = _EXTENDED_ERR.unpack_from(data)
                if origin == SO_EE_ORIGIN_ICMP and icmp_type == ICMP_TIME_EXCEEDED:
                    # the offender: a struct sockaddr_in right after the extended error
                    return socket.inet_ntoa(data[_EXTENDED_ERR.size + 4:
                                                 _EXTENDED_ERR.size + 8])
            return None
    return None
