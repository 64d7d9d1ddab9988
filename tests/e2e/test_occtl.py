"""Issue #5 end to end: occtl against the live server while real openconnect clients run.

What scripts written for ocserv's occtl read must be there with the same names: this is
checked against the fields ocserv 1.1.6 prints (docs/protocol.md §9).
"""

from __future__ import annotations

import json
import time

from tests.support.harness import ping

OCSERV_USER_FIELDS = {
    "ID", "Username", "Groupname", "State", "vhost", "Device", "MTU", "Remote IP",
    "Location", "Local Device IP", "IPv4", "P-t-P IPv4", "User-Agent", "RX", "TX", "_RX",
    "_TX", "Average RX", "Average TX", "DPD", "KeepAlive", "Hostname", "Connected at",
    "_Connected at", "Full session", "Session", "TLS ciphersuite", "DTLS cipher", "DNS",
    "Routes",
}


def _json(server, *args: str):
    proc = server.occtl("-j", *args)
    return json.loads(proc.stdout)


def test_show_users_has_ocserv_fields(server, make_client, users):
    client = make_client()
    assert client.connect("alice", users["alice"], no_dtls=False)
    assert client.wait_dtls()
    assert ping(client.ns, client.net.inside_ip, count=3).ok
    deadline = time.monotonic() + 15
    while True:  # DTLS cipher and counters arrive with the worker's periodic report
        rows = _json(server, "show", "users")
        if rows and rows[0].get("DTLS cipher") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(rows) == 1
    row = rows[0]
    missing = OCSERV_USER_FIELDS - set(row)
    assert not missing, f"fields ocserv prints but we do not: {sorted(missing)}"
    assert row["Username"] == "alice"
    assert row["IPv4"] == client.address()
    assert row["P-t-P IPv4"] == "203.0.113.1"
    assert row["Remote IP"] == client.link.client_ip
    assert row["Device"].startswith(server.files.device)
    assert "(DTLS1.2)-(PSK)-" in row["DTLS cipher"]
    assert row["TLS ciphersuite"].startswith("(TLS1.")
    assert isinstance(row["ID"], int)
    status = _json(server, "show", "status")
    assert status["Status"] == "online" and status["Active sessions"] == 1
    sessions = _json(server, "show", "sessions", "all")
    assert [s["Username"] for s in sessions] == ["alice"]
    text = server.occtl("show", "users").stdout
    assert "alice" in text and client.address() in text
    assert server.occtl("show", "user", "nobody-here", check=False).returncode != 0


def test_disconnect_user_ends_client_fast_and_frees_the_cookie(server, make_client, users):
    client = make_client()
    cookie = client.authenticate("bob", users["bob"])["COOKIE"]
    assert client.connect_with_cookie(cookie)
    address = client.address()
    started = time.monotonic()
    out = server.occtl("disconnect", "user", "bob").stdout
    assert "bob" in out
    code = client.wait_exit(timeout=5)
    elapsed = time.monotonic() - started
    assert code is not None and elapsed < 1.5, f"client exited after {elapsed:.2f} s"
    assert "Session terminated by server" in client.log or "server disconnect" in client.log
    # ocserv invalidates the cookie on an admin disconnect (docs/protocol.md §7.6)
    assert not client.connect_with_cookie(cookie)
    assert _json(server, "show", "users") == []
    # the lease went back: a fresh login gets an address again and works
    assert client.connect("bob", users["bob"])
    assert client.address() == address  # predictable-ips: same user, same address
    server.assert_running()
