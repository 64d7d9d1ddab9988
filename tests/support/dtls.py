"""DTLS checks shared by the DTLS e2e modules: what crossed the wire, read from counters.

:class:`Wire` is a ``netdev`` nftables table on a client's veth that counts the TCP (TLS)
and UDP bytes exchanged with the server's port and can drop UDP or re-map the client's UDP
port; ``/proc/<pid>/net/snmp`` counts the datagrams the client namespace moved.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from tests.support import harness
from tests.support.harness import Client, TransferResult, transfer
from tests.support.netns import Link, Netns
from tests.support.rig import Rig

MB = 1_000_000
DTLS_PORT = harness.HTTPS_PORT
#: MTU for base MTU 1500 over IPv4 with AES-256-GCM (docs/protocol.md 3.4): 1500 - 28 - 38.
DTLS_MTU = 1434
#: Control traffic the TLS channel may carry while DTLS moves the data (DPD, keepalives).
TLS_IDLE_BYTES = 64 * 1024
ESTABLISHED = "Established DTLS connection"
DEAD_PEER = "DTLS Dead Peer Detection detected dead peer"


# ---------------------------------------------------------------- counters on the wire


@dataclass(frozen=True)
class Traffic:
    """One reading of a client namespace's counters; subtract two for what happened between."""

    tls_in: int  # TCP bytes from the server's port 443 (wire bytes, headers included)
    tls_out: int  # TCP bytes to it
    udp_in: int  # UDP bytes from the server's port 443 that got past the block rules
    udp_out: int  # UDP bytes to it that got past the block rules
    udp_dropped: int  # UDP datagrams the block rules dropped (both directions)
    dgrams_in: int  # UDP datagrams delivered to sockets in the namespace (/proc/net/snmp)
    dgrams_out: int  # UDP datagrams sent by sockets in the namespace
    rcvbuf_errors: int  # UDP datagrams lost because a socket's receive buffer was full

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))


def udp_snmp(pid: int) -> dict[str, int]:
    """The ``Udp:`` counters of the namespace ``pid`` lives in (no process is spawned)."""
    rows = [
        line.split()[1:]
        for line in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
        if line.startswith("Udp:")
    ]
    return dict(zip(rows[0], map(int, rows[1]), strict=True))


class Wire:
    """nftables on a client's veth: byte counters, a UDP switch and a port-rewriting NAT.

    Chains run in the order block -> nat -> count, so the counters show only what really
    crossed the wire, seen with the server's port (which the NAT never touches).
    """

    TABLE = "ocgwire"

    def __init__(self, link: Link, pid: int) -> None:
        self.link = link
        self.ns: Netns = link.ns
        self.pid = pid  # openconnect, for its namespace's /proc/net/snmp
        server = link.server_ip
        self._nft(
            f"""
table netdev {self.TABLE} {{
    counter tls_in {{}}
    counter tls_out {{}}
    counter udp_in {{}}
    counter udp_out {{}}
    counter udp_dropped {{}}
    chain block_in {{}}
    chain block_out {{}}
    chain nat_in {{}}
    chain nat_out {{}}
    chain ingress {{
        type filter hook ingress device "{link.client_if}" priority 0; policy accept;
        jump block_in
        jump nat_in
        ip saddr {server} tcp sport {DTLS_PORT} counter name tls_in
        ip saddr {server} udp sport {DTLS_PORT} counter name udp_in
    }}
    chain egress {{
        type filter hook egress device "{link.client_if}" priority 0; policy accept;
        jump block_out
        jump nat_out
        ip daddr {server} tcp dport {DTLS_PORT} counter name tls_out
        ip daddr {server} udp dport {DTLS_PORT} counter name udp_out
    }}
}}
"""
        )

    def _nft(self, script: str) -> None:
        self.ns.run(["nft", "-f", "-"], input=script)

    def read(self) -> Traffic:
        out = self.ns.run(["nft", "-j", "list", "counters", "table", "netdev", self.TABLE]).stdout
        counters = {
            item["counter"]["name"]: item["counter"]
            for item in json.loads(out)["nftables"]
            if "counter" in item
        }
        snmp = udp_snmp(self.pid)
        return Traffic(
            tls_in=counters["tls_in"]["bytes"],
            tls_out=counters["tls_out"]["bytes"],
            udp_in=counters["udp_in"]["bytes"],
            udp_out=counters["udp_out"]["bytes"],
            udp_dropped=counters["udp_dropped"]["packets"],
            dgrams_in=snmp["InDatagrams"],
            dgrams_out=snmp["OutDatagrams"],
            rcvbuf_errors=snmp["RcvbufErrors"],
        )

    def block_udp(self) -> None:
        """Lose every UDP datagram between the client and the server's port, both ways."""
        server, table = self.link.server_ip, self.TABLE
        self._nft(
            f"add rule netdev {table} block_in ip saddr {server} udp sport {DTLS_PORT} "
            "counter name udp_dropped drop\n"
            f"add rule netdev {table} block_out ip daddr {server} udp dport {DTLS_PORT} "
            "counter name udp_dropped drop\n"
        )

    def unblock_udp(self) -> None:
        self._nft(
            f"flush chain netdev {self.TABLE} block_in\nflush chain netdev {self.TABLE} block_out\n"
        )

    def remap_udp_port(self, inside: int, outside: int, retired: Sequence[int]) -> None:
        """Act as a NAT that now maps the client's UDP port ``inside`` to ``outside``.

        Stateless, so the switch is instantaneous (no conntrack entry has to expire): the
        server sees the datagrams come from ``outside``, its replies to ``outside`` are
        mapped back, and replies to the ``retired`` mappings (the client's own port
        included) are lost, as a real NAT forgets an old mapping.
        """
        server, table = self.link.server_ip, self.TABLE
        dead = ", ".join(str(p) for p in sorted({inside, *retired} - {outside}))
        self._nft(
            f"flush chain netdev {table} nat_in\n"
            f"flush chain netdev {table} nat_out\n"
            f"add rule netdev {table} nat_out ip daddr {server} udp dport {DTLS_PORT} "
            f"udp sport {inside} udp sport set {outside}\n"
            f"add rule netdev {table} nat_in ip saddr {server} udp sport {DTLS_PORT} "
            f"udp dport {{ {dead} }} drop\n"
            f"add rule netdev {table} nat_in ip saddr {server} udp sport {DTLS_PORT} "
            f"udp dport {outside} udp dport set {inside}\n"
        )


def dtls_headers(log: str) -> dict[str, str]:
    """The X-DTLS-* headers of the CONNECT response, as ``openconnect -v`` prints them."""
    start = log.find("Got CONNECT response")
    assert start >= 0, log
    headers: dict[str, str] = {}
    for line in log[start:].splitlines()[1:]:
        if line.startswith("CSTP connected"):
            break
        name, sep, value = line.partition(": ")
        if sep and name.startswith("X-DTLS"):
            headers[name] = value
    return headers


def tun_mtu(client: Client) -> int:
    return int(json.loads(client.ns.ip("-j", "link", "show", "dev", client.tun).stdout)[0]["mtu"])


def assert_over_udp(delta: Traffic, nbytes: int, direction: str, what: str) -> None:
    """``nbytes`` went ``direction`` in UDP datagrams while TLS only carried control traffic."""
    datagrams = nbytes // DTLS_MTU
    moved = delta.dgrams_in if direction == "down" else delta.dgrams_out
    assert moved >= datagrams, f"{what}: only {moved} UDP datagrams for {nbytes} bytes: {delta}"
    assert delta.tls_in + delta.tls_out < TLS_IDLE_BYTES, f"{what}: data went over TLS: {delta}"


def checked_transfer(
    rig: Rig, nbytes: int, direction: str, link: Link | None = None, timeout: float = 60.0
) -> TransferResult:
    result = transfer(rig.net, nbytes, direction, link=link, timeout=timeout)
    assert result.sha_sent == result.sha_received, f"{direction} {nbytes} B: SHA-256 mismatch"
    return result


def assert_healthy(rig: Rig) -> None:
    """The server still runs and never logged a traceback (every test ends with this)."""
    rig.server.assert_running()
    lines = rig.server.log.splitlines()
    crash = next((n for n, line in enumerate(lines) if "Traceback" in line), None)
    assert crash is None, "\n".join(lines[crash : crash + 30])
