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
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID

from appliance import pki
from appliance.reach import acmecert
from tests.prereqs import needs_command, require_command
from tests.support.harness import (
    Client,
    Server,
    ServerFiles,
    ServerStartError,
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
            replace_auth: bool = False) -> tuple[ServerFiles, Server]:
    """Files for ``kind`` with ``extra`` lines (which bring their own ``auth`` lines with
    ``replace_auth``), and the server, not started yet."""
    files = make_server_files(workdir / kind, net, users=USERS, extra_conf=extra or [])
    if replace_auth:
        lines = [line for line in files.conf_lines if not line.startswith("auth = \"plain")]
        files.conf_lines = lines
        files.conf.write_text("\n".join(lines) + "\n")
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


# ---------------------------------------------------------------- 2. certificate downloads


def _curl(net: TestNet, files: ServerFiles, path: str) -> tuple[int, dict[str, str], bytes]:
    """curl over TLS, pinning the server key: (exit code, header fields, body)."""
    out = files.dir / "curl"
    out.mkdir(exist_ok=True)
    head, body = out / "head", out / "body"
    for f in (head, body):
        f.unlink(missing_ok=True)
    pin = "sha256//" + files.pin.removeprefix("pin-sha256:")
    proc = net.primary.ns.run(
        [require_command("curl", "curl"), "-sS", "--http1.1", "-k", "--pinnedpubkey", pin,
         "--max-time", "10", "-D", str(head), "-o", str(body),
         f"https://{net.primary.server_ip}{path}"], check=False, timeout=20)
    fields: dict[str, str] = {}
    lines = head.read_text().splitlines() if head.exists() else []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    if lines:
        fields[":status"] = lines[0].strip()
    return proc.returncode, fields, body.read_bytes() if body.exists() else b""


@pytest.mark.parametrize("kind", KINDS)
def test_certificate_downloads_as_ocserv(net: TestNet, workdir: Path, kind: str) -> None:
    """/cert.pem|cer: the served certificate; /ca.pem|cer: the one after it in server-cert
    if it is the issuer, else the connection closes unanswered; no login needed."""
    files, server = _server(net, workdir, kind)
    server.start()
    leaf, ca = pki.load_cert(files.cert), pki.load_cert(files.ca)

    rc, head, body = _curl(net, files, "/cert.pem")
    assert rc == 0, (rc, head)
    assert head[":status"] == "HTTP/1.1 200 OK"
    assert head["content-type"] == "application/x-pem-file"
    assert head["x-transcend-version"] == "1"
    assert head["connection"].lower() == "keep-alive"
    assert int(head["content-length"]) == len(body)
    assert body == leaf.public_bytes(Encoding.PEM)
    rc, head, body = _curl(net, files, "/cert.cer?x=1")
    assert (rc, head["content-type"]) == (0, "application/pkix-cert")
    assert body == leaf.public_bytes(Encoding.DER)
    for path in ("/ca.pem", "/ca.cer"):  # server-cert holds no CA certificate
        rc, head, body = _curl(net, files, path)
        assert rc == 52 and not head and not body, (path, rc, head, body)  # empty reply

    time.sleep(1.1)  # ocserv notices a changed file by its mtime (seconds)
    pki.write_cert(files.cert, leaf, ca)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while (got := _curl(net, files, "/ca.pem"))[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    rc, head, body = got
    assert rc == 0, (rc, head)
    assert head["content-type"] == "application/pkix-cert"
    assert body == ca.public_bytes(Encoding.PEM)
    rc, head, body = _curl(net, files, "/ca.cer")
    assert (rc, head["content-type"]) == (0, "application/pkix-cert")
    assert body == ca.public_bytes(Encoding.DER)
    rc, head, body = _curl(net, files, "/cert.pem")
    assert body == leaf.public_bytes(Encoding.PEM)
    server.assert_running()


# ---------------------------------------------------------------- 3. CRL from a CA without cRLSign


def _ca_without_crl_sign(files: ServerFiles) -> None:
    """Replace the client-certificate CA (ca-cert) by one whose keyUsage has keyCertSign
    but not cRLSign, as many home-made CAs have; the server's own certificate is pinned
    and stays as it is."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA without cRLSign")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True,
                                       crl_sign=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(key, hashes.SHA256()))
    pki.write_key(files.ca_key, key)
    pki.write_cert(files.ca, ca)


def _client_pair(files: ServerFiles, user: str) -> tuple[Path, Path]:
    ca_key, ca = pki.load_key(files.ca_key), pki.load_cert(files.ca)
    key, cert = pki.make_client_cert(ca_key, ca, username=user, days=2)
    d = files.dir / "client-certs"
    d.mkdir(mode=0o700, exist_ok=True)
    pki.write_key(d / f"{user}-key.pem", key)
    pki.write_cert(d / f"{user}-cert.pem", cert)
    return d / f"{user}-cert.pem", d / f"{user}-key.pem"


def _write_crl(files: ServerFiles, revoked: list[Path]) -> Path:
    ca_key, ca = pki.load_key(files.ca_key), pki.load_cert(files.ca)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(now - datetime.timedelta(minutes=5))
               .next_update(now + datetime.timedelta(days=2)))
    for path in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(pki.load_cert(path).serial_number)
            .revocation_date(now).build())
    crl = files.dir / "crl.pem"
    crl.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(Encoding.PEM))  # type: ignore[arg-type]
    return crl


@pytest.mark.parametrize("kind", KINDS)
def test_crl_of_a_ca_without_crl_sign(net: TestNet, workdir: Path, opened: list[Client],
                                      kind: str) -> None:
    """GnuTLS does not ask the CRL's issuer for cRLSign; the CRL must still revoke."""
    crl = workdir / kind / "crl.pem"
    files, server = _server(net, workdir, kind, [
        "auth = certificate", f"ca-cert = {workdir / kind / 'ca-cert.pem'}",
        "cert-user-oid = 0.9.2342.19200300.100.1.1", f"crl = {crl}"], replace_auth=True)
    _ca_without_crl_sign(files)
    good, revoked = _client_pair(files, "bob"), _client_pair(files, "alice")
    _write_crl(files, [revoked[0]])
    server.start()

    ok = _client(net, files, opened, "good-cert")
    assert ok.connect("bob", "unused", extra_args=["-c", str(good[0]), "-k", str(good[1])]), \
        ok.log[-3000:] + server.log[-3000:]
    assert ping(ok.ns, net.inside_ip, count=2).ok
    bad = _client(net, files, opened, "revoked-cert")
    assert not bad.connect("alice", "unused",
                           extra_args=["-c", str(revoked[0]), "-k", str(revoked[1])])
    assert "401" in bad.log or "certificate" in bad.log.lower(), bad.log[-2000:]
    server.assert_running()


# ---------------------------------------------------------------- 4. encrypted server key


def _encrypt_key(files: ServerFiles, pin: str) -> None:
    """server-key as encrypted PKCS#8 PEM (what `openssl pkcs8 -topk8` writes)."""
    key = pki.load_key(files.key)
    files.key.write_bytes(key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(pin.encode())))
    assert b"ENCRYPTED PRIVATE KEY" in files.key.read_bytes()


def _set_lines(files: ServerFiles, lines: list[str]) -> None:
    body = [line for line in files.conf_lines
            if not line.startswith(("key-pin", "pin-file"))] + lines
    files.conf.write_text("\n".join(body) + "\n")


def _start_fails(server: Server) -> tuple[int, str]:
    """The server stops during its start (both open their listeners before the sec-mod
    loads the key, so it may be seen listening first): exit code and log. ocserv 1.1.6
    exits with 0 when its sec-mod died; OCGate with 1, for the service manager."""
    try:
        server.start()
    except ServerStartError:
        pass
    assert server.proc is not None
    try:
        code = server.proc.wait(15)
    except subprocess.TimeoutExpired:
        server.stop()
        raise AssertionError(f"server still runs:\n{server.log[-3000:]}") from None
    return code, server.log


@pytest.mark.parametrize("kind", KINDS)
def test_encrypted_server_key_with_key_pin(net: TestNet, workdir: Path, opened: list[Client],
                                           kind: str) -> None:
    files, server = _server(net, workdir, kind)
    _encrypt_key(files, "right pin 1234")

    _set_lines(files, ["key-pin = right pin 1234"])
    server.start()
    client = _client(net, files, opened, "with-key-pin")
    assert client.connect("alice", USERS["alice"]), client.log[-3000:] + server.log[-3000:]
    assert ping(client.ns, net.inside_ip, count=2).ok
    client.close()
    server.stop()

    pin_file = files.dir / "key.pin"
    pin_file.write_text("right pin 1234\n")
    pin_file.chmod(0o600)
    _set_lines(files, [f"pin-file = {pin_file}"])
    server.start()
    client = _client(net, files, opened, "with-pin-file")
    assert client.connect("alice", USERS["alice"]), client.log[-3000:] + server.log[-3000:]
    client.close()
    server.stop()

    _set_lines(files, ["key-pin = wrong pin"])
    code_wrong, wrong = _start_fails(server)
    _set_lines(files, [])
    code_missing, missing = _start_fails(server)
    for log in (wrong, missing):
        assert "pass phrase" not in log.lower(), log  # never a console prompt
    if kind == "ocserv":
        # main notices the dead sec-mod by SIGCHLD or by its closed socket, whichever first
        assert "Decryption has failed" in wrong and (
            "secmod died" in wrong or "command socket for sec-mod closed" in wrong), wrong
    else:  # the message is ours; that the server stops is ocserv's behaviour too
        assert code_wrong == code_missing == 1
        line = files.conf.read_text().splitlines().index(f"server-key = {files.key}") + 1
        assert f"{files.conf}:{line}: server-key {files.key}: wrong key-pin" in wrong, wrong
        assert f"{files.conf}:{line}: server-key {files.key} is encrypted and neither " \
            "key-pin nor pin-file is set" in missing, missing


# ---------------------------------------------------------------- 5. TLS 1.2 resumption


def _gnutls_resume(net: TestNet) -> str:
    """gnutls-cli --resume (TLS 1.2): a session, then a second connection that resumes it
    and asks for the login page over it (not /cert.pem: ocserv has no certificate to give
    on a resumed session and closes the connection)."""
    cli = require_command("gnutls-cli", "gnutls-bin")
    request = r"GET / HTTP/1.1\r\nHost: vpn.e2e.test\r\n\r\n"
    script = (f"(printf '{request}'; sleep 3) | {cli} --insecure --resume --priority "
              f"NORMAL:-VERS-ALL:+VERS-TLS1.2 -p 443 {net.primary.server_ip}")
    proc = net.primary.ns.run(["sh", "-c", script], check=False, timeout=30)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_tls12_session_resumption(net: TestNet, workdir: Path, kind: str) -> None:
    """A TLS 1.2 client that reconnects resumes its session (abbreviated handshake), and
    the resumed connection carries requests."""
    files, server = _server(net, workdir, kind)
    server.start()
    out = _gnutls_resume(net)
    assert "This is a resumed session" in out, out
    resumed = out[out.index("This is a resumed session"):]
    assert "HTTP/1.1 200 OK" in resumed and "<auth id" in resumed, out
    if kind == "ocgate":
        assert "TLS session resumed for" in server.log
    server.assert_running()
