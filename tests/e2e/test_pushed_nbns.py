"""Issue #17, the options that only warn: ``nbns`` (and its ``ipv4-nbns`` alias) was
warned about as "not implemented" although OCGate pushes it.  openconnect hands the WINS
servers to vpnc-script as INTERNAL_IP4_NBNS; both servers must send the same ones."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.harness import server_command
from tests.support.rig import Clients, Rig

WINS = ("198.51.100.137", "198.51.100.138")


@pytest.mark.parametrize("kind", ["ocserv", "ocgate"])
def test_nbns_reaches_the_client(kind: str, make_rig: Callable[..., Rig], clients: Clients,
                                 accounts: dict[str, str]) -> None:
    rig = make_rig(kind, command=server_command(kind),
                   extra_conf=[f"nbns = {WINS[0]}", f"ipv4-nbns = {WINS[1]}"])
    client = clients.new(rig, "wins")
    assert client.connect("alice", accounts["alice"]), client.log
    assert client.env()["INTERNAL_IP4_NBNS"].split() == list(WINS)
    if kind == "ocgate":
        assert "is not implemented" not in rig.server.log
    assert client.disconnect() == 0
