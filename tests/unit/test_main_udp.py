"""main/udp.py: the per-client DTLS socket main hands to a worker."""

from __future__ import annotations

import os
import socket

from appliance.vpn.main import udp


def _opened(pmtu: bool, family: int, host: str) -> socket.socket:
    with socket.socket(family, socket.SOCK_DGRAM) as peer:
        peer.bind((host, 0))
        fd = udp.udp_socket_for((host, 0), peer.getsockname()[:2], family, pmtu_discovery=pmtu)
        return socket.socket(fileno=fd)


def test_pmtu_discovery_sets_dont_fragment() -> None:
    """try-mtu-discovery = true: DF on (IP_PMTUDISC_DO), for IPv4 and IPv6 sockets alike."""
    with _opened(True, socket.AF_INET, "127.0.0.1") as sock:
        assert sock.getsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER) == udp.PMTUDISC_DO
    with _opened(True, socket.AF_INET6, "::1") as sock:
        assert sock.getsockopt(socket.IPPROTO_IPV6, udp.IPV6_MTU_DISCOVER) == udp.PMTUDISC_DO


def test_without_pmtu_discovery_the_kernel_default_stays() -> None:
    with _opened(False, socket.AF_INET, "127.0.0.1") as sock:
        assert sock.getsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER) != udp.PMTUDISC_DO
        assert sock.getpeername()[0] == "127.0.0.1"
        assert os.get_inheritable(sock.fileno()) is False
