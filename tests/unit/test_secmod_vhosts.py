"""The sec-mod's virtual hosts: the SNI picks the certificate (before OpenSSL starts), the
login dialogue and the session's host; SIGHUP reloads every host's pair.  The e2e proof
against openconnect and ocserv is tests/e2e/test_vhosts.py."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.vpn import ipc
from appliance.vpn.config import parse_config
from appliance.vpn.protocol.tls.handshake import ServerHandshake
from appliance.vpn.secmod.login import AuthState
from appliance.vpn.secmod.server import Handshake, SecMod
from tests.support.harness import write_passwd
from tests.support.tls import pump_handshake, self_signed_files


@pytest.fixture
def secmod(tmp_path: Path) -> Iterator[SecMod]:
    lines = []
    for name, user in (("", "alice"), ("alpha.test", "ann"), ("beta.test", "ben")):
        d = tmp_path / (name or "default")
        d.mkdir()
        cert, key = self_signed_files(d)
        write_passwd(d / "pw", {user: f"{user}-pw"})
        lines += ([f"[vhost:{name}]"] if name else []) + [
            f'auth = "plain[passwd={d}/pw]"', f"server-cert = {cert}", f"server-key = {key}",
            "ipv4-network = 203.0.113.0/26" if not name else "ipv4-network = 203.0.113.64/26"]
    main_a, main_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sm = SecMod(parse_config("\n".join(lines) + "\n"), str(tmp_path / "sec.sock"), main_a)
    yield sm
    for sock in (main_a, main_b, sm.listener):
        sock.close()


def _handshake(sm: SecMod, state: AuthState, sni: str | None) -> tuple[bytes, Handshake]:
    """A stdlib client asking for ``sni``; returns the certificate it was shown (DER)."""
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(cin, cout, server_hostname=sni)
    a, b = socket.socketpair()
    holder: list[Handshake] = []
    hs = ServerHandshake(sm.hosts[""].ctx,
                         lambda hello: sm._choose(holder[0], state, "198.18.0.2", hello))
    holder.append(Handshake(a, b, hs, time.monotonic() + 5))
    pump_handshake(client, cin, cout, hs)
    a.close()
    b.close()
    der = client.getpeercert(binary_form=True)
    assert hs.done and der is not None
    assert holder[0].chain == (der,)  # what /cert.pem and the worker are told
    return der, holder[0]


@pytest.mark.parametrize("sni, host", [("alpha.test", "alpha.test"), ("BETA.Test", "beta.test"),
                                       ("other.test", ""), (None, "")])
def test_sni_picks_the_certificate_and_the_login(secmod: SecMod, sni: str | None,
                                                 host: str) -> None:
    state = AuthState()
    der, _ = _handshake(secmod, state, sni)
    assert state.vhost == host
    assert der == secmod.hosts[host].credentials.chain_der[0]
    own = {"": "alice", "alpha.test": "ann", "beta.test": "ben"}
    for name, user in own.items():
        login = secmod._login(state)
        login.auth_init(state, ipc.AuthInit(user, None, "198.18.0.2", "test"))
        done = login.auth_cont(state, f"{user}-pw")
        assert (done.status == "ok") == (name == host), (user, done)
        if done.status == "ok":
            info = secmod._main_request(ipc.SessionOpen(done.cookie, "198.18.0.2"))
            assert isinstance(info, ipc.SessionInfo) and info.ok and info.vhost == host


def test_sighup_reloads_every_host(secmod: SecMod, tmp_path: Path) -> None:
    before = {name: host.credentials.sha1 for name, host in secmod.hosts.items()}
    self_signed_files(tmp_path / "beta.test")  # a new pair on the same paths
    reply = secmod._main_request(ipc.TlsReload())
    assert isinstance(reply, ipc.TlsReloaded) and reply.ok
    assert secmod.hosts["beta.test"].credentials.sha1 != before["beta.test"]
    assert secmod.hosts["alpha.test"].credentials.sha1 == before["alpha.test"]
    state = AuthState()
    der, _ = _handshake(secmod, state, "beta.test")
    assert der == secmod.hosts["beta.test"].credentials.chain_der[0]
    # a host whose new pair does not load keeps its old one; the answer names it
    (tmp_path / "alpha.test" / "key.pem").write_text("not a key\n")
    reply = secmod._main_request(ipc.TlsReload())
    assert isinstance(reply, ipc.TlsReloaded) and not reply.ok and "alpha.test" in reply.reason
    assert secmod.hosts["alpha.test"].credentials.sha1 == before["alpha.test"]
