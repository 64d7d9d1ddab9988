"""Issue 17, "Certificates and TLS": what an ocserv admin's certificate files and scripts
hit, run against OCGate and Debian's ocserv 1.1.6 in the same test, so that the expected
behaviour is ocserv's.

- SIGHUP / occtl reload after the certificate and key were replaced on disk;
- ``/cert.pem``, ``/cert.cer``, ``/ca.pem``, ``/ca.cer``;
- a CRL whose CA certificate lacks cRLSign;
- an encrypted server key with ``key-pin``.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import pki
from appliance.reach import acmecert
from tests.prereqs import needs_command
from tests.support.harness import (
    Client,
    Server,
    ServerFiles,
    make_server_files,
    ping,
    server_command,
)
from tests.support.netns import TestNet

pytestmark = [needs_command("ocserv", "ocserv"), needs_command("occtl", "ocserv")]

KINDS = ("ocgate", "ocserv")
USERS = {"alice": "alice-tls-pw", "bob": "bob-tls-pw"}


@pytest.fixture
def opened() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def _server(net: TestNet, workdir: Path, kind: str, extra: list[str] | None = None,
            **kwargs: object) -> tuple[ServerFiles, Server]:
    files = make_server_files(workdir / kind, net, users=USERS, extra_conf=extra or [],
                              **kwargs)  # type: ignore[arg-type]
    return files, Server(net, files, server_command(kind))


def _new_pair(files: ServerFiles, net: TestNet, name: str) -> tuple[bytes, bytes, str]:
    """A fresh key and certificate from the same CA: (key PEM, cert PEM, pin-sha256)."""
    ca_key, ca = pki.load_key(files.ca_key), pki.load_cert(files.ca)
    key, cert = pki.make_server_cert(ca_key, ca, names=[name], addresses=[net.server_ip],
                                     days=2)
    return pki.key_pem(key), pki.cert_pem(cert), pki.pin_sha256(cert)


def _client(net: TestNet, files: ServerFiles, opened: list[Client], name: str,
            pin: str | None = None) -> Client:
    client = Client(net, dataclasses.replace(files, pin=pin or files.pin), name=name)
    opened.append(client)
    return client


def _connects_with_pin(net: TestNet, files: ServerFiles, opened: list[Client], name: str,
                       pin: str, user: str = "bob", tries: int = 1) -> Client:
    """openconnect pinning ``pin`` logs in (``tries`` attempts a second apart: ocserv applies
    SIGHUP asynchronously)."""
    client = _client(net, files, opened, name, pin)
    for _ in range(tries):
        if client.connect(user, USERS[user]):
            return client
        time.sleep(1.0)
    raise AssertionError(f"{name}: no login pinning {pin}:\n{client.log[-3000:]}")


# ---------------------------------------------------------------- 1. reload the pair


@pytest.mark.parametrize("kind", KINDS)
def test_replaced_pair_is_served_after_sighup_and_sessions_stay(
        net: TestNet, workdir: Path, opened: list[Client], kind: str) -> None:
    files, server = _server(net, workdir, kind)
    server.start()
    first = _client(net, files, opened, "first")
    assert first.connect("alice", USERS["alice"]), first.log[-3000:]
    time.sleep(1.1)  # ocserv reloads a key file only if its mtime is past the last load

    key_pem, cert_pem, pin = _new_pair(files, net, "renewed.e2e.test")
    files.key.write_bytes(key_pem)
    files.cert.write_bytes(cert_pem)
    before = _client(net, files, opened, "before-hup", pin)
    assert not before.connect("bob", USERS["bob"]), "the new pair is in use before SIGHUP"
    assert files.pin in before.log, before.log[-2000:]  # openconnect names what it was shown

    assert server.pid is not None
    os.kill(server.pid, signal.SIGHUP)
    _connects_with_pin(net, files, opened, "after-hup", pin, tries=5)
    old = _client(net, files, opened, "old-pin")
    assert not old.connect("bob", USERS["bob"]), "the replaced certificate is still served"
    assert pin in old.log, old.log[-2000:]
    assert ping(first.ns, net.inside_ip, count=3).ok, "the first session lost its traffic"
    assert first.running

    # the same once more through occtl reload
    time.sleep(1.1)
    key_pem, cert_pem, pin2 = _new_pair(files, net, "again.e2e.test")
    files.key.write_bytes(key_pem)
    files.cert.write_bytes(cert_pem)
    server.occtl("reload")
    _connects_with_pin(net, files, opened, "after-occtl", pin2, tries=5)
    assert ping(first.ns, net.inside_ip, count=2).ok
    server.assert_running()


def test_acme_install_reloads_the_running_server(net: TestNet, workdir: Path,
                                                 opened: list[Client]) -> None:
    """appliance/reach/acmecert.install with the occtl socket: the renewed pair is in use."""
    files, server = _server(net, workdir, "ocgate")
    server.start()
    first = _client(net, files, opened, "first")
    assert first.connect("alice", USERS["alice"]), first.log[-3000:]
    key_pem, cert_pem, pin = _new_pair(files, net, "acme.e2e.test")
    now = datetime.datetime.now(datetime.UTC)
    issued = acmecert.Issued(cert_pem, key_pem, now, now + datetime.timedelta(days=2))
    message = acmecert.install(issued, files.cert, files.key, str(files.occtl_socket))
    assert "reloaded" in message
    _connects_with_pin(net, files, opened, "renewed", pin)
    assert ping(first.ns, net.inside_ip, count=2).ok

    # a pair that does not load (key of another certificate) is refused and the old one stays
    other_key, _cert, _pin = _new_pair(files, net, "mismatch.e2e.test")
    broken = acmecert.Issued(cert_pem, other_key, now, now + datetime.timedelta(days=2))
    with pytest.raises(acmecert.ReloadError, match="not reloaded"):
        acmecert.install(broken, files.cert, files.key, str(files.occtl_socket))
    _connects_with_pin(net, files, opened, "still-renewed", pin)
    server.assert_running()
