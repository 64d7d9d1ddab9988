"""[vhost:NAME] sections, against OCGate and Debian's ocserv 1.1.6 in the same test.

Two virtual hosts with their own certificate, password file, pool and DNS: openconnect,
connecting by each name (``--resolve`` in the client namespace, names under .test), is
shown that host's certificate, logs in only as that host's users, and gets its address
and DNS; a name no section carries gets the default host. SIGHUP reloads a vhost's pair.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import pki
from tests.prereqs import needs_command
from tests.support.harness import (
    Client,
    Server,
    ServerFiles,
    make_server_files,
    server_command,
    write_passwd,
)
from tests.support.netns import TestNet

pytestmark = [needs_command("ocserv", "ocserv"), needs_command("occtl", "ocserv")]

KINDS = ("ocgate", "ocserv")
DEFAULT_USERS = {"alice": "alice-default-pw"}
HOSTS = {  # name: (users, pool, dns)
    "alpha.test": ({"ann": "ann-alpha-pw"}, "203.0.113.64/26", "198.51.100.61"),
    "beta.test": ({"ben": "ben-beta-pw"}, "203.0.113.128/26", "198.51.100.62"),
}


@dataclasses.dataclass
class Vhost:
    name: str
    cert: Path
    key: Path
    pin: str
    sha1: str  # what the profile cookie (webvpnc sh:) names
    users: dict[str, str]
    pool: ipaddress.IPv4Network
    dns: str


@pytest.fixture
def opened() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def _pair(files: ServerFiles, net: TestNet, name: str) -> tuple[bytes, bytes, str, str]:
    """A new key and certificate for ``name``: (key PEM, cert PEM, pin-sha256, SHA-1)."""
    ca_key, ca = pki.load_key(files.ca_key), pki.load_cert(files.ca)
    key, cert = pki.make_server_cert(ca_key, ca, names=[name], addresses=[net.server_ip],
                                     days=2)
    return (pki.key_pem(key), pki.cert_pem(cert), pki.pin_sha256(cert),
            pki.sha1_fingerprint_hex(cert))


def _setup(net: TestNet, workdir: Path, kind: str) -> tuple[ServerFiles, Server,
                                                           dict[str, Vhost]]:
    files = make_server_files(workdir / kind, net, users=DEFAULT_USERS)
    vhosts: dict[str, Vhost] = {}
    lines = [line.replace("ipv4-netmask = 255.255.255.0", "ipv4-netmask = 255.255.255.192")
             for line in files.conf_lines]  # the default pool: 203.0.113.0/26
    for name, (users, pool, dns) in HOSTS.items():
        key_pem, cert_pem, pin, sha1 = _pair(files, net, name)
        vh = Vhost(name, files.dir / f"{name}-cert.pem", files.dir / f"{name}-key.pem", pin,
                   sha1, users, ipaddress.IPv4Network(pool), dns)
        vh.cert.write_bytes(cert_pem)
        vh.key.write_bytes(key_pem)
        vh.key.chmod(0o600)
        passwd = files.dir / f"{name}.passwd"
        write_passwd(passwd, users)
        lines += [f"[vhost:{name}]", f'auth = "plain[passwd={passwd}]"',
                  f"server-cert = {vh.cert}", f"server-key = {vh.key}",
                  f"ipv4-network = {pool}", f"dns = {dns}",
                  # ignored in a section (the global device is used), but ocserv 1.1.6
                  # answers every CONNECT of a section without it with a 503
                  f"device = {files.device}"]
        vhosts[name] = vh
    files.conf_lines = lines
    files.conf.write_text("\n".join(lines) + "\n")
    return files, Server(net, files, server_command(kind)), vhosts


def _client(net: TestNet, files: ServerFiles, opened: list[Client], label: str,
            host: str | None, pin: str) -> Client:
    client = Client(net, dataclasses.replace(files, pin=pin), name=label)
    if host is not None:
        client.url = f"https://{host}/"
    opened.append(client)
    return client


def _connect(client: Client, host: str | None, user: str, password: str) -> bool:
    extra = [f"--resolve={host}:{client.net.server_ip}"] if host else []
    return client.connect(user, password, extra_args=extra)


@pytest.mark.parametrize("kind", KINDS)
def test_each_name_gets_its_vhost(net: TestNet, workdir: Path, opened: list[Client],
                                  kind: str) -> None:
    files, server, vhosts = _setup(net, workdir, kind)
    server.start()
    default_pool = ipaddress.IPv4Network("203.0.113.0/26")
    for vh in vhosts.values():
        user, password = next(iter(vh.users.items()))
        # the host's own certificate: the default pin is refused, and the log names ours
        wrong = _client(net, files, opened, f"{vh.name}-default-pin", vh.name, files.pin)
        assert not _connect(wrong, vh.name, user, password), wrong.log[-2000:]
        assert vh.pin in wrong.log, wrong.log[-2000:]
        # its users, its pool, its DNS
        ok = _client(net, files, opened, f"{vh.name}-user", vh.name, vh.pin)
        assert _connect(ok, vh.name, user, password), ok.log[-1500:] + server.log[-3000:]
        assert ipaddress.IPv4Address(ok.address()) in vh.pool, ok.address()
        assert ok.env()["INTERNAL_IP4_DNS"].split() == [vh.dns], ok.env()
        assert f"sh:{vh.sha1};" in ok.log, ok.log[-2000:]  # the host's certificate hash
        shown = json.loads(server.occtl("-j", "show", "users").stdout)
        assert [(u["Username"], u["vhost"]) for u in shown] == [(user, vh.name)], shown
        ok.disconnect()
        # no one else's users: the default's, nor the other host's
        for other, secret in [("alice", DEFAULT_USERS["alice"])] + [
                next(iter(o.users.items())) for o in vhosts.values() if o is not vh]:
            foreign = _client(net, files, opened, f"{vh.name}-{other}", vh.name, vh.pin)
            assert not _connect(foreign, vh.name, other, secret), foreign.log[-2000:]
    # an unknown name, and no name (an address): the default host
    for label, host in (("unknown", "other.test"), ("address", None)):
        plain = _client(net, files, opened, label, host, files.pin)
        assert _connect(plain, host, "alice", DEFAULT_USERS["alice"]), plain.log[-3000:]
        assert ipaddress.IPv4Address(plain.address()) in default_pool, plain.address()
        assert plain.env()["INTERNAL_IP4_DNS"].split() == [net.dns]
        plain.disconnect()
        ann = _client(net, files, opened, f"{label}-ann", host, files.pin)
        assert not _connect(ann, host, "ann", HOSTS["alpha.test"][0]["ann"]), ann.log[-2000:]
    server.assert_running()


@pytest.mark.parametrize("kind", KINDS)
def test_sighup_reloads_a_vhost_pair(net: TestNet, workdir: Path, opened: list[Client],
                                     kind: str) -> None:
    files, server, vhosts = _setup(net, workdir, kind)
    server.start()
    vh = vhosts["beta.test"]
    first = _client(net, files, opened, "first", vh.name, vh.pin)
    assert _connect(first, vh.name, "ben", vh.users["ben"]), first.log[-3000:]
    time.sleep(1.1)  # ocserv reloads a key file only if its mtime is past the last load
    key_pem, cert_pem, pin, _sha1 = _pair(files, net, vh.name)
    vh.key.write_bytes(key_pem)
    vh.cert.write_bytes(cert_pem)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGHUP)
    renewed = _client(net, files, opened, "renewed", vh.name, pin)
    for _ in range(5):  # ocserv applies SIGHUP asynchronously
        if _connect(renewed, vh.name, "ben", vh.users["ben"]):
            break
        time.sleep(1.0)
    else:
        raise AssertionError("no login with the reloaded vhost pair:\n" + renewed.log[-3000:])
    old = _client(net, files, opened, "old", vh.name, vh.pin)
    assert not _connect(old, vh.name, "ben", vh.users["ben"]), "the old vhost pair is served"
    assert pin in old.log, old.log[-2000:]
    # the other host and the default one keep theirs
    alpha = vhosts["alpha.test"]
    other = _client(net, files, opened, "alpha", alpha.name, alpha.pin)
    assert _connect(other, alpha.name, "ann", alpha.users["ann"]), other.log[-3000:]
    assert first.running
    server.assert_running()


def test_reload_keeps_the_hosts_the_sec_mod_serves(net: TestNet, workdir: Path,
                                                   opened: list[Client]) -> None:
    """OCGate: a section added, or a host's auth changed, waits for a restart (the sec-mod
    made the hosts' keys and back-ends at start); the reload says so, and clients keep
    being served by the running hosts, never by a half-applied mix."""
    files, server, vhosts = _setup(net, workdir, "ocgate")
    server.start()
    alpha = vhosts["alpha.test"]
    text = files.conf.read_text().replace(f"passwd={files.dir}/alpha.test.passwd",
                                          f"passwd={files.dir}/beta.test.passwd")
    files.conf.write_text(text + "[vhost:gamma.test]\nipv4-network = 203.0.113.192/26\n"
                          f'auth = "plain[passwd={files.passwd}]"\n'
                          f"server-cert = {files.cert}\nserver-key = {files.key}\n")
    out = server.occtl("reload").stdout
    assert "[vhost:…] sections added or removed" in out, out
    # gamma is not served yet: its name gets the default host (its pool, not gamma's)
    gamma = _client(net, files, opened, "gamma", "gamma.test", files.pin)
    assert _connect(gamma, "gamma.test", "alice", DEFAULT_USERS["alice"]), gamma.log[-3000:]
    assert ipaddress.IPv4Address(gamma.address()) in ipaddress.IPv4Network("203.0.113.0/26")
    gamma.disconnect()
    files.conf.write_text(text)
    out = server.occtl("reload").stdout
    assert "auth in [vhost:alpha.test]" in out, out
    ann = _client(net, files, opened, "ann", alpha.name, alpha.pin)
    assert _connect(ann, alpha.name, "ann", alpha.users["ann"]), ann.log[-3000:]
    assert ipaddress.IPv4Address(ann.address()) in alpha.pool
    server.assert_running()
