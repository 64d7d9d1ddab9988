"""Issue #4 abuse limits end to end: ocserv's ban points with the real openconnect."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def extra_conf() -> list[str]:
    # later lines win: the harness turns bans off, this test turns them back on
    return ["max-ban-score = 30", "ban-time = 300", "ban-reset-time = 600"]


def test_wrong_passwords_ban_the_address_only(server, make_client, users):
    attacker = make_client()
    for _ in range(3):  # 3 x (10 for the password + 1 for the connection) >= 30
        result = attacker.authenticate("alice", "not-the-password", check=False)
        assert result.get("COOKIE") is None
    # banned: refused before TLS, so not even the right password helps
    assert attacker.authenticate("alice", users["alice"], check=False).get("COOKIE") is None
    bans = json.loads(server.occtl("-j", "show", "ip", "bans").stdout)
    assert [b["IP"] for b in bans] == [attacker.link.client_ip]
    # another address is still served
    other = make_client(new_link=True)
    assert other.connect("bob", users["bob"])
    # and the administrator can lift the ban
    server.occtl("unban", "ip", attacker.link.client_ip)
    assert attacker.authenticate("alice", users["alice"]).get("COOKIE")
    server.assert_running()
