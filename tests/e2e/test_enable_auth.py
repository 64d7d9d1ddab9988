"""Issue #17: ``enable-auth`` alternatives as ocserv 1.1.6 composes them (worker-auth.c):
the ``auth`` lines are one method, each ``enable-auth`` line another; a verified client
certificate picks the first method that uses certificates, and a method that needs a
certificate the client did not give hands over to the next.  Both layouts below mean
"certificate OR password".  Every case runs against ocserv and against OCGate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from appliance import pki
from tests.support.harness import ServerFiles, ping, server_command
from tests.support.rig import Clients, Rig

UID_OID = "0.9.2342.19200300.100.1.1"
CA_LINES = ["ca-cert = {ca}", f"cert-user-oid = {UID_OID}"]
LAYOUTS = {
    "cert-then-password": ["auth = certificate", 'enable-auth = "plain[passwd={passwd}]"'],
    "password-then-cert": ['auth = "plain[passwd={passwd}]"', "enable-auth = certificate"],
}


def client_cert(files: ServerFiles, username: str) -> list[str]:
    """openconnect's -c/-k for a certificate of ``username`` (CN and UID) from the
    server's CA."""
    ca_key, ca = pki.load_key(files.ca_key), pki.load_cert(files.ca)
    key, cert = pki.make_client_cert(ca_key, ca, username=username, days=2)
    folder = files.dir / "client-certs"
    folder.mkdir(mode=0o700, exist_ok=True)
    stem = folder / username
    pki.write_key(Path(f"{stem}-key.pem"), key)
    pki.write_cert(Path(f"{stem}-cert.pem"), cert)
    return ["-c", f"{stem}-cert.pem", "-k", f"{stem}-key.pem"]


@pytest.mark.parametrize("compat", ["true", "false"], ids=["cisco-compat", "no-compat"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kind", ["ocserv", "ocgate"])
def test_certificate_or_password(kind: str, layout: str, compat: str,
                                 make_rig: Callable[..., Rig], clients: Clients,
                                 accounts: dict[str, str]) -> None:
    """Without cisco-client-compat the CONNECT, which openconnect sends on the connection
    that logged in, is held to the method that login used: a password login there needs
    no certificate even when ``auth`` is certificate."""
    rig = make_rig(kind, command=server_command(kind), auth=[*LAYOUTS[layout], *CA_LINES],
                   replace_conf={"cisco-client-compat": f"cisco-client-compat = {compat}"})

    by_cert = clients.new(rig, "by-cert")
    # the password is wrong on purpose: with the certificate it is never asked for
    assert by_cert.connect("alice", "never-asked", extra_args=client_cert(rig.files, "alice"))
    assert "Login failed" not in by_cert.log
    assert ping(by_cert.ns, rig.net.inside_ip, count=2).ok

    by_password = clients.new(rig, "by-password", new_link=True)
    assert by_password.connect("bob", accounts["bob"]), by_password.log
    assert ping(by_password.ns, rig.net.inside_ip, count=2).ok
    assert sorted(u["Username"] for u in rig.users()) == ["alice", "bob"]
    assert by_cert.disconnect() == 0 and by_password.disconnect() == 0

    wrong = clients.new(rig, "wrong-password")
    assert not wrong.connect("carol", "not-her-password")
    assert wrong.returncode not in (0, None)
    assert "Login failed" in wrong.log or "401" in wrong.log, wrong.log

    rig.server.assert_running()
