"""Issue #10 part 2 end to end: legacy (non-PSK) DTLS with the real openconnect 9.01.

openconnect always offers PSK-NEGOTIATE, so the legacy modes show up only when the server
turns PSK off (``dtls-psk = false``: Cisco DTLS 1.2 resumption from X-DTLS12-CipherSuite,
docs/protocol.md 5.5) or when the client is told to offer only legacy names with
``--dtls-ciphers`` / ``--dtls12-ciphers`` (then no PSK-NEGOTIATE is sent at all, and a
``AES*-SHA`` name selects Cisco's pre-standard DTLS 0.9, docs/protocol.md 5.4). openconnect's
"AnyConnect" user agent does not change these headers, so it needs no case of its own.

What moved where is read from counters (the nftables ``Wire`` and /proc/net/snmp of
tests/support/dtls.py), never from log text alone. Running this file with
``OCGATE_E2E_SERVER=ocserv`` checks the same expectations against ocserv 1.1.6.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from tests.support import harness
from tests.support.dtls import (
    DEAD_PEER,
    ESTABLISHED,
    MB,
    Wire,
    assert_healthy,
    assert_over_udp,
    checked_transfer,
    dtls_headers,
    tun_mtu,
    udp_snmp,
)
from tests.support.harness import Client, ping
from tests.support.rig import Clients, Rig


def connect_legacy(client: Client, rig: Rig, user: str, extra: list[str]) -> Wire:
    assert client.connect(user, rig.password(user), no_dtls=False, extra_args=extra), client.log
    assert client.wait_dtls(15.0), f"no DTLS connection:\n{harness.tail_lines(client.log)}"
    assert client.pid is not None
    return Wire(client.link, client.pid)


def established_suite(log: str) -> str:
    """The GnuTLS session description openconnect printed for its DTLS session."""
    found = re.search(r"Established DTLS connection \(using GnuTLS\)\. Ciphersuite (\S+)\.", log)
    assert found, log
    return found.group(1)


def assert_no_mtu_collapse(client: Client, mtu: int) -> None:
    """The client's DPD-based MTU probe got full-size echoes over legacy DTLS (5.6)."""
    log = client.log
    for collapse in ("declare MTU is", "Too long time in MTU detect loop", "DTLS MTU reduced"):
        assert collapse not in log, log
    assert client.env()["INTERNAL_IP4_MTU"] == str(mtu)
    assert tun_mtu(client) == mtu


def test_dtls12_resumption_when_server_disables_psk(
    make_rig: Callable[..., Rig], clients: Clients,
) -> None:
    """Default openconnect options, ``dtls-psk = false``: Cisco DTLS 1.2 resumption."""
    rig = make_rig("legacy12", extra_conf=["dtls-psk = false"], replace_conf={"dpd": "dpd = 2"})
    client = clients.new(rig, "legacy12")
    wire = connect_legacy(client, rig, "alice", [])
    log = client.log

    headers = dtls_headers(log)
    assert "X-DTLS-App-ID" not in headers, headers
    assert re.fullmatch(r"[0-9a-f]{64}", headers.get("X-DTLS-Session-ID", "")), headers
    offered = re.search(r"X-DTLS12-CipherSuite: (\S+)", log)
    assert offered, log
    assert headers.get("X-DTLS12-CipherSuite") in offered.group(1).split(":"), headers
    assert "X-DTLS-CipherSuite" not in headers, headers
    assert headers.get("X-DTLS-MTU") == "1434", headers
    suite = established_suite(log)
    assert suite.startswith("(DTLS1.2)-(") and "PSK" not in suite, suite
    assert suite.endswith("-(AES-256-GCM)"), suite  # same cipher as the TLS session
    assert_no_mtu_collapse(client, 1434)

    assert ping(client.ns, rig.net.inside_ip, count=3).ok
    for direction in ("up", "down"):
        before = wire.read()
        checked_transfer(rig, 5 * MB, direction)
        delta = wire.read() - before
        assert_over_udp(delta, 5 * MB, direction, f"5 MB {direction}")
        print(f"\n[e2e] legacy DTLS 1.2, 5 MB {direction}: {delta}")

    # DPD over the legacy channel: with dpd = 2 the client probes after 2 s of silence and
    # declares the peer dead after 4 s without an answer. Idle for 6 s: answers must come.
    assert client.pid is not None
    idle_from = udp_snmp(client.pid)
    time.sleep(6.0)
    idle = udp_snmp(client.pid)
    assert DEAD_PEER not in client.log, client.log
    assert idle["InDatagrams"] > idle_from["InDatagrams"], (idle_from, idle)
    assert client.log.count(ESTABLISHED) == 1, client.log
    assert ping(client.ns, rig.net.inside_ip, count=2).ok
    assert client.running, client.log
    assert_healthy(rig)
    assert client.disconnect() == 0


@pytest.mark.parametrize(
    ("option", "header", "name", "suite", "mtu"),
    [
        ("--dtls-ciphers=AES128-SHA", "X-DTLS-CipherSuite", "AES128-SHA",
         "(DTLS0.9)-(RSA)-(AES-128-CBC)-(SHA1)", 1406),
        ("--dtls-ciphers=AES256-SHA", "X-DTLS-CipherSuite", "AES256-SHA",
         "(DTLS0.9)-(RSA)-(AES-256-CBC)-(SHA1)", 1406),
        ("--dtls12-ciphers=AES128-GCM-SHA256", "X-DTLS12-CipherSuite", "AES128-GCM-SHA256",
         "(DTLS1.2)-(RSA)-(AES-128-GCM)", 1434),
    ],
)
def test_client_without_psk_gets_the_suite_it_offered(
    make_rig: Callable[..., Rig], clients: Clients,
    option: str, header: str, name: str, suite: str, mtu: int,
) -> None:
    """Server defaults (PSK on, dtls-legacy on); the client offers one legacy name only."""
    rig = make_rig("legacy")
    client = clients.new(rig, "legacy")
    wire = connect_legacy(client, rig, "bob", [option])
    headers = dtls_headers(client.log)
    assert headers.get(header) == name, headers
    assert re.fullmatch(r"[0-9a-f]{64}", headers.get("X-DTLS-Session-ID", "")), headers
    assert headers.get("X-DTLS-MTU") == str(mtu), headers
    assert established_suite(client.log) == suite
    assert_no_mtu_collapse(client, mtu)
    assert ping(client.ns, rig.net.inside_ip, count=2).ok
    for direction in ("up", "down"):
        before = wire.read()
        checked_transfer(rig, 2 * MB, direction)
        assert_over_udp(wire.read() - before, 2 * MB, direction, f"{name} {direction}")
    assert client.running, client.log
    assert_healthy(rig)
    assert client.disconnect() == 0
