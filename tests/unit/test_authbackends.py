"""Authentication back-ends and the security module's login dialogue (issue #4).

The sec-mod dialogue is driven through its real methods with a scripted password back-end,
so multi-step conversations (an OTP after the password, PAM's "Password:" wording, retries)
are checked without a PAM stack; the e2e suite does the same through real PAM modules.
Client certificates go through a real OpenSSL handshake against the stdlib client.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import pki
from appliance.vpn import ipc
from appliance.vpn.auth.base import (
    OTP_PROMPT,
    PASSWORD_PROMPT,
    AuthConfigError,
    CertError,
    Event,
    GroupError,
    Prompt,
    Verdict,
)
from appliance.vpn.auth.cert import CertIdentity, cert_identity
from appliance.vpn.auth.groups import GroupPolicy
from appliance.vpn.auth.otp import hotp
from appliance.vpn.auth.pam import PamAuth
from appliance.vpn.auth.plain import OtpFile, PlainAuth
from appliance.vpn.auth.registry import Method, make_setup
from appliance.vpn.config import AuthMethod, parse_config
from appliance.vpn.protocol.tls.credentials import load_credentials
from appliance.vpn.protocol.tls.handshake import ServerHandshake, make_server_context
from appliance.vpn.secmod.login import AuthState
from appliance.vpn.secmod.server import SecMod
from tests.prereqs import require_root
from tests.support.harness import write_passwd
from tests.support.tls import pump_handshake

UID = "0.9.2342.19200300.100.1.1"
CN = "2.5.4.3"
OU = "2.5.4.11"
NOW = datetime.datetime.now(datetime.UTC)


# ---------------------------------------------------------------- certificates


def make_cert(ca_key: pki.PrivateKey, ca: x509.Certificate, attrs: Sequence[tuple],
              san: Sequence[x509.GeneralName] = ()) -> tuple[pki.PrivateKey, x509.Certificate]:
    key = pki.generate_key("ec")
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(o, v) for o, v in attrs]))
               .issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(hours=1))
               .not_valid_after(NOW + datetime.timedelta(days=1)))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), False)
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def ca() -> tuple[pki.PrivateKey, x509.Certificate]:
    return pki.make_ca("unit CA", days=2)


def test_user_from_uid_cn_and_san(ca) -> None:
    _, cert = make_cert(*ca, [(NameOID.COMMON_NAME, "Alice A"), (NameOID.USER_ID, "alice")],
                        san=[x509.RFC822Name("alice@example.org")])
    assert cert_identity(cert, UID).username == "alice"
    assert cert_identity(cert, CN).username == "Alice A"
    assert cert_identity(cert, "SAN(rfc822name)").username == "alice@example.org"


def test_groups_from_every_ou_in_order(ca) -> None:
    _, cert = make_cert(*ca, [(NameOID.USER_ID, "bob"),
                              (NameOID.ORGANIZATIONAL_UNIT_NAME, "staff"),
                              (NameOID.ORGANIZATIONAL_UNIT_NAME, "admins"),
                              (NameOID.ORGANIZATIONAL_UNIT_NAME, "staff")])
    assert cert_identity(cert, UID, OU) == CertIdentity("bob", ("staff", "admins"))
    assert cert_identity(cert, UID).groups == ()


@pytest.mark.parametrize("attrs,oid", [
    ([(NameOID.COMMON_NAME, "carol")], UID),  # no UID attribute
    ([(NameOID.USER_ID, "bad\nname")], UID),  # control character
    ([(NameOID.USER_ID, "x" * 256)], UID),  # too long
    ([(NameOID.USER_ID, "dave")], "SAN(rfc822name)"),  # no SAN at all
])
def test_unusable_certificate_identity(ca, attrs, oid) -> None:
    _, cert = make_cert(*ca, attrs)
    with pytest.raises(CertError):
        cert_identity(cert, oid)


# ---------------------------------------------------------------- TLS client certificates


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory, ca) -> Path:
    d = tmp_path_factory.mktemp("clientcert")
    ca_key, ca_cert = ca
    key, cert = pki.make_server_cert(ca_key, ca_cert, names=["vpn.test"], addresses=[],
                                     days=2)
    pki.write_key(d / "server-key.pem", key)
    pki.write_cert(d / "server-cert.pem", cert)
    pki.write_cert(d / "ca.pem", ca_cert)
    return d


def handshake(tls_dir: Path, version: ssl.TLSVersion, client_pair=None, crl: Path | None = None):
    ctx = make_server_context(load_credentials(str(tls_dir / "server-cert.pem"),
                                               str(tls_dir / "server-key.pem")),
                              None, str(tls_dir / "ca.pem"), client_certs=True,
                              crl_file=str(crl) if crl else None)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.minimum_version = cctx.maximum_version = version
    if client_pair is not None:
        key, cert = client_pair
        name = f"c{os.urandom(4).hex()}"
        pki.write_key(tls_dir / f"{name}-key.pem", key)
        pki.write_cert(tls_dir / f"{name}-cert.pem", cert)
        cctx.load_cert_chain(tls_dir / f"{name}-cert.pem", tls_dir / f"{name}-key.pem")
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(cin, cout, server_hostname="vpn.test")
    hs = ServerHandshake(ctx)
    pump_handshake(client, cin, cout, hs)
    assert hs.result is not None
    return hs.result


VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.mark.parametrize("version", VERSIONS)
def test_handshake_verifies_client_certificate(tls_dir, ca, version) -> None:
    pair = pki.make_client_cert(*ca, username="alice", days=2)
    result = handshake(tls_dir, version, pair)
    assert result.client_cert_verified and result.client_cert_problem == ""
    cert = x509.load_der_x509_certificate(result.client_cert)
    assert cert_identity(cert, UID).username == "alice"


@pytest.mark.parametrize("version", VERSIONS)
def test_foreign_or_missing_certificate_is_recorded_not_fatal(tls_dir, version) -> None:
    other = pki.make_ca("other CA", days=2)
    result = handshake(tls_dir, version, pki.make_client_cert(*other, username="alice", days=2))
    assert result.client_cert is not None and not result.client_cert_verified
    assert "local issuer" in result.client_cert_problem
    result = handshake(tls_dir, version)
    assert result.client_cert is None and not result.client_cert_verified


def test_revoked_certificate_is_not_verified(tls_dir, ca) -> None:
    ca_key, ca_cert = ca
    revoked = pki.make_client_cert(ca_key, ca_cert, username="mallory", days=2)
    good = pki.make_client_cert(ca_key, ca_cert, username="alice", days=2)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
           .last_update(NOW - datetime.timedelta(hours=1))
           .next_update(NOW + datetime.timedelta(days=1))
           .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                    .serial_number(revoked[1].serial_number)
                                    .revocation_date(NOW).build())
           .sign(ca_key, hashes.SHA256()))
    path = tls_dir / "crl.pem"
    path.write_bytes(crl.public_bytes(Encoding.PEM))
    bad = handshake(tls_dir, ssl.TLSVersion.TLSv1_2, revoked, crl=path)
    assert not bad.client_cert_verified and "revoked" in bad.client_cert_problem
    assert handshake(tls_dir, ssl.TLSVersion.TLSv1_2, good, crl=path).client_cert_verified


def test_no_certificate_request_without_cert_auth(tls_dir, ca) -> None:
    ctx = make_server_context(load_credentials(str(tls_dir / "server-cert.pem"),
                                               str(tls_dir / "server-key.pem")))
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname, cctx.verify_mode = False, ssl.CERT_NONE
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    hs = ServerHandshake(ctx)
    pump_handshake(cctx.wrap_bio(cin, cout, server_hostname="vpn.test"), cin, cout, hs)
    assert hs.result is not None and hs.result.client_cert is None


# ---------------------------------------------------------------- groups


POLICY = GroupPolicy((("staff", "Staff members"), ("admins", "Administrators")), "Default")


def test_requested_group_accepts_name_or_friendly_label() -> None:
    assert POLICY.requested("staff") == "staff"
    assert POLICY.requested("Administrators") == "admins"  # AnyConnect sends the label
    assert POLICY.requested("Default") is None  # default-select-group
    assert POLICY.requested("") is None and POLICY.requested(None) is None
    assert POLICY.requested("other") == "other"  # judged later, against the user's groups


def test_requested_group_is_listed_first() -> None:
    assert POLICY.options("admins") == [("admins", "Administrators"), ("", "Default"),
                                        ("staff", "Staff members")]
    assert POLICY.options(None, ["ops", "staff"]) == [
        ("", "Default"), ("ops", "ops"), ("staff", "Staff members"),
        ("admins", "Administrators")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), max_size=6),
       st.lists(st.text(min_size=1, max_size=8), max_size=6),
       st.one_of(st.none(), st.text(min_size=1, max_size=8)))
def test_options_invariants(configured, extra, requested) -> None:
    policy = GroupPolicy(tuple((g, g.upper()) for g in dict.fromkeys(configured)))
    options = policy.options(requested, extra)
    values = [v for v, _ in options if v]
    assert len(values) == len(set(values))
    if requested:
        assert options[0][0] == requested
    assert set(values) >= set(configured) | set(extra)


def test_choose_group() -> None:
    assert POLICY.choose(None, ["ops", "staff"]) == "ops"  # the user's default: first
    assert POLICY.choose("staff", ["ops", "staff"]) == "staff"
    assert POLICY.choose(None, []) == ""
    with pytest.raises(GroupError):
        POLICY.choose("admins", ["ops"])
    with pytest.raises(GroupError):
        POLICY.choose("admins", [])


# ---------------------------------------------------------------- set-up


def test_setup_modes() -> None:
    plain = AuthMethod("plain", {"passwd": "/x"})
    cert = AuthMethod("certificate")
    only = make_setup([cert], [], "/ca", UID)
    assert only.cert_required and only.wants_cert and only.password is None
    assert only.select(True) == Method(cert=True, password=False)
    assert only.select(False) is None
    both = make_setup([plain, cert], [], "/ca", UID)
    assert both.cert_required and both.password is not None
    assert both.select(True) == Method(cert=True, password=True)
    assert both.select(False) is None
    either = make_setup([plain], [cert], "/ca", UID)
    assert not either.cert_required and either.wants_cert
    assert either.select(True) == Method(cert=True, password=False)
    assert either.select(False) == Method(cert=False, password=True)
    assert not make_setup([plain], [], None, None).wants_cert
    with pytest.raises(AuthConfigError):
        make_setup([cert], [], None, UID)
    with pytest.raises(AuthConfigError):
        make_setup([AuthMethod("radius", {"config": "/r"})], [], None, None)


def test_enable_auth_password_after_certificate() -> None:
    """ocserv's order: the certificate first when one was verified, else the next method."""
    plain = AuthMethod("plain", {"passwd": "/x"})
    cert = AuthMethod("certificate")
    setup = make_setup([cert], [plain], "/ca", UID)
    assert setup.cert_required and isinstance(setup.password, PlainAuth)
    assert setup.select(True) == Method(cert=True, password=False)
    assert setup.select(False) == Method(cert=False, password=True)
    # certificate AND password, or else the password alone
    mixed = make_setup([cert, AuthMethod("pam")], [cert], "/ca", UID)
    assert mixed.select(True) == Method(cert=True, password=True)
    assert mixed.select(False) is None
    with pytest.raises(AuthConfigError, match="only one password"):
        make_setup([plain], [AuthMethod("pam")], None, None)


def test_plain_conversation(tmp_path: Path) -> None:
    write_passwd(tmp_path / "pw", {"alice": "secret"}, {"alice": "staff,ops"})
    backend = PlainAuth(str(tmp_path / "pw"))
    conv = backend.start("alice", "198.18.0.2", lambda: None)
    assert conv.poll() == Prompt("Please enter your password.")
    assert conv.poll() is None
    conv.answer("secret")
    assert conv.poll() == Verdict(True, ("staff", "ops"))
    wrong = backend.start("alice", "198.18.0.2", lambda: None)
    wrong.poll()
    wrong.answer("nope")
    assert wrong.poll().ok is False
    assert backend.all_groups() == ["staff", "ops"]


# ---------------------------------------------------------------- one-time passwords

KEY = bytes(range(1, 21))


def otp_files(tmp_path: Path, line_for: dict[str, str] | None = None) -> tuple[Path, Path]:
    """ocpasswd with alice (password), carol (empty hash: OTP only); users.oath with HOTP
    tokens for alice and carol."""
    pw, oath = tmp_path / "pw", tmp_path / "users.oath"
    write_passwd(pw, {"alice": "secret"}, {"alice": "staff"})
    with pw.open("a") as fh:
        fh.write("carol:ops:\n")
    oath.write_text("# tokens\n" + "".join(
        (line_for or {}).get(u, f"HOTP {u} - {KEY.hex()}\n") for u in ("alice", "carol")))
    oath.chmod(0o640)
    return pw, oath


def run(conv, *answers: str) -> list[Event]:
    events = [conv.poll()]
    for answer in answers:
        conv.answer(answer)
        events.append(conv.poll())
    return events


def test_plain_password_then_otp(tmp_path: Path) -> None:
    pw, oath = otp_files(tmp_path)
    backend = PlainAuth(str(pw), str(oath))
    events = run(backend.start("alice", "198.18.0.2", lambda: None), "secret", hotp(KEY, 0))
    assert events == [Prompt(PASSWORD_PROMPT), Prompt(OTP_PROMPT, numbered=False),
                      Verdict(True, ("staff",))]
    assert OTP_PROMPT == "Please enter your OTP password."  # ocserv 1.1.6's wording
    text = oath.read_text()
    assert text.startswith("# tokens\n") and f"\t0\t{hotp(KEY, 0)}\t" in text
    assert f"HOTP carol - {KEY.hex()}\n" in text  # the other line untouched
    assert oath.stat().st_mode & 0o777 == 0o640  # the rewrite keeps the file's mode
    # the same code again, after the right password: refused, and no retry
    again = run(backend.start("alice", "198.18.0.2", lambda: None), "secret", hotp(KEY, 0))
    assert again[-1].ok is False and again[-1].retry is False
    assert "replayed" in again[-1].reason and hotp(KEY, 0) not in again[-1].reason
    # a wrong password never reaches the OTP question; it may be retried
    wrong = run(backend.start("alice", "198.18.0.2", lambda: None), "nope")
    assert wrong[-1].ok is False and wrong[-1].retry is True
    assert run(backend.start("alice", "198.18.0.2", lambda: None), "secret",
               hotp(KEY, 1))[-1].ok


def test_plain_otp_only_users(tmp_path: Path) -> None:
    pw, oath = otp_files(tmp_path)
    # an empty hash in ocpasswd: the OTP is the only question, as in ocserv
    events = run(PlainAuth(str(pw), str(oath)).start("carol", "198.18.0.2", lambda: None),
                 hotp(KEY, 0))
    assert events == [Prompt(OTP_PROMPT, numbered=False), Verdict(True, ("ops",))]
    # without passwd= every user is OTP-only, with no groups
    events = run(PlainAuth(None, str(oath)).start("alice", "198.18.0.2", lambda: None),
                 hotp(KEY, 5))
    assert events == [Prompt(OTP_PROMPT, numbered=False), Verdict(True, ())]
    unknown = run(PlainAuth(None, str(oath)).start("mallory", "1", lambda: None), "123456")
    assert unknown[-1].ok is False and unknown[-1].retry is False
    # an empty hash without otp= is no password at all: refused (ocserv would let it in)
    assert run(PlainAuth(str(pw)).start("carol", "1", lambda: None), "")[-1].ok is False


def test_plain_otp_pin_plus_needs_the_password(tmp_path: Path) -> None:
    line = f"HOTP carol + {KEY.hex()}\n"
    pw, oath = otp_files(tmp_path, {"carol": line})
    events = run(PlainAuth(str(pw), str(oath)).start("carol", "1", lambda: None),
                 hotp(KEY, 0))
    assert events[-1].ok is False and "'+'" in events[-1].reason
    assert oath.read_text().count(line) == 1  # nothing recorded for a refusal


def test_otp_file_problems_refuse(tmp_path: Path) -> None:
    pw, _oath = otp_files(tmp_path)
    missing = PlainAuth(str(pw), str(tmp_path / "nope.oath"))
    assert run(missing.start("alice", "1", lambda: None), "secret", hotp(KEY, 0))[-1].ok \
        is False
    (tmp_path / "users.oath.d").mkdir()
    assert not OtpFile(str(tmp_path / "users.oath.d")).verify("alice", hotp(KEY, 0), True).ok


def test_otp_write_failure_refuses(tmp_path: Path, monkeypatch) -> None:
    pw, oath = otp_files(tmp_path)
    from appliance.vpn.auth import plain as authbackends

    def fail(*_args, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(authbackends, "write_atomic", fail)
    result = OtpFile(str(oath)).verify("alice", hotp(KEY, 0), True)
    assert not result.ok and "not writable" in result.reason
    assert f"HOTP alice - {KEY.hex()}\n" in oath.read_text()


def test_otp_file_is_reopened_after_a_concurrent_rewrite(tmp_path: Path) -> None:
    """Two checks racing on one file: the second, waiting for the lock, must read the
    file the first wrote (not the replaced inode it opened), or both would accept."""
    import fcntl
    import threading

    _pw, oath = otp_files(tmp_path)
    holder = os.open(oath, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(
        OtpFile(str(oath)).verify("alice", hotp(KEY, 0), True).ok))
    waiter.start()
    time.sleep(0.1)
    text = oath.read_text()
    # play "the first check": record counter 0 as used, then release the old inode
    from appliance.vpn.auth import otp as otp_mod

    done = otp_mod.check(otp_mod.parse_usersfile(text), "alice", hotp(KEY, 0), time.time(),
                         password_verified=True)
    assert done.ok and done.text is not None
    oath.with_name("new").write_text(done.text)
    os.replace(oath.with_name("new"), oath)
    fcntl.flock(holder, fcntl.LOCK_UN)
    os.close(holder)
    waiter.join(5)
    assert results == [False]  # the waiter saw the recorded use


SECMOD_OTP_CONF = """auth = "plain[passwd={pw},otp={oath}]"
ipv4-network = 192.168.1.0/24
server-cert = {tls}/server-cert.pem
server-key = {tls}/server-key.pem
ban-points-wrong-password = 7
"""


@pytest.fixture
def otp_secmod(tmp_path: Path, tls_dir: Path) -> Iterator[tuple[SecMod, socket.socket]]:
    pw, oath = otp_files(tmp_path)
    main_a, main_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ev_a, ev_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ev_b.setblocking(False)
    cfg = parse_config(SECMOD_OTP_CONF.format(pw=pw, oath=oath, tls=tls_dir))
    sm = SecMod(cfg, str(tmp_path / "sec.sock"), main_a, ev_a)
    yield sm, ev_b
    for sock in (main_a, main_b, ev_a, ev_b, sm.listener):
        sock.close()


def ban_points(events: socket.socket) -> list[int]:
    points = []
    while True:
        try:
            msg, _ = ipc.recv(events)
        except (BlockingIOError, ipc.IpcError):
            return points
        assert isinstance(msg, ipc.BanPoints)
        points.append(msg.points)


def test_secmod_asks_the_otp_as_ocserv(otp_secmod: tuple[SecMod, socket.socket]) -> None:
    sm, events = otp_secmod
    state = AuthState()
    step = init(sm, state, "alice")
    assert (step.message, step.input_name, step.input_label) == (
        "Please enter your password.", "password", "Password:")
    step = sm.login.auth_cont(state, "secret")
    # ocserv's plain module: the OTP is the form's one "password" field, not a numbered one
    assert (step.status, step.message, step.input_name, step.input_label) == (
        "continue", "Please enter your OTP password.", "password", "Password:")
    done = sm.login.auth_cont(state, hotp(KEY, 0))
    assert done.status == "ok" and sm.store.open(done.cookie, time.time()).groupname == "staff"
    assert ban_points(events) == []


def test_secmod_wrong_otp_fails_with_ban_points(otp_secmod: tuple[SecMod, socket.socket]
                                               ) -> None:
    sm, events = otp_secmod
    state = AuthState()
    init(sm, state, "alice")
    sm.login.auth_cont(state, "secret")
    reply = sm.login.auth_cont(state, "000000" if hotp(KEY, 0) != "000000" else "111111")
    assert (reply.status, reply.message) == ("fail", "Authentication failed")
    assert ban_points(events) == [7]
    # a wrong password is retried as before, each try with points
    init(sm, state, "alice")
    reply = sm.login.auth_cont(state, "nope")
    assert reply.status == "continue" and reply.message.startswith("Login failed.")
    assert ban_points(events) == [7]
    # OTP-only user: the first question is the OTP
    state = AuthState()
    step = init(sm, state, "carol")
    assert (step.message, step.input_name) == ("Please enter your OTP password.", "password")
    assert sm.login.auth_cont(state, hotp(KEY, 0)).status == "ok"


# ---------------------------------------------------------------- the sec-mod dialogue


class Scripted:
    """A password back-end asking ``prompts`` in turn; ok when the answers equal
    ``expect``."""

    name = "scripted"

    def __init__(self, prompts: Sequence[str], expect: Sequence[str],
                 groups: Sequence[str] = ()) -> None:
        self.prompts, self.expect, self.groups = list(prompts), list(expect), tuple(groups)
        self.started: list[str] = []

    def start(self, username: str, remote_ip: str, notify) -> ScriptedConversation:
        self.started.append(username)
        return ScriptedConversation(self)

    def all_groups(self) -> list[str]:
        return ["auto1", "auto2"]


class ScriptedConversation:
    def __init__(self, backend: Scripted) -> None:
        self.backend = backend
        self.answers: list[str] = []
        self.events: deque[Event] = deque([Prompt(backend.prompts[0])])

    def poll(self) -> Event | None:
        return self.events.popleft() if self.events else None

    def answer(self, text: str) -> None:
        self.answers.append(text)
        if len(self.answers) < len(self.backend.prompts):
            self.events.append(Prompt(self.backend.prompts[len(self.answers)]))
        else:
            ok = self.answers == self.backend.expect
            self.events.append(Verdict(ok, self.backend.groups if ok else ()))

    def close(self) -> None:
        self.events.clear()


@pytest.fixture
def secmod(tmp_path: Path, tls_dir: Path) -> Iterator[SecMod]:
    write_passwd(tmp_path / "pw", {"alice": "secret"})
    text = (f'auth = "plain[passwd={tmp_path}/pw]"\nipv4-network = 192.168.1.0/24\n'
            f"server-cert = {tls_dir}/server-cert.pem\nserver-key = {tls_dir}/server-key.pem\n"
            "select-group = staff[Staff members]\nselect-group = admins\n")
    main_a, main_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sm = SecMod(parse_config(text), str(tmp_path / "sec.sock"), main_a)
    yield sm
    for sock in (main_a, main_b, sm.listener):
        sock.close()


def init(sm: SecMod, state: AuthState, username: str = "", group: str | None = None):
    return sm.login.auth_init(state, ipc.AuthInit(username, group, "198.18.0.2", "test"))


def test_two_step_conversation_is_relayed_as_forms(secmod: SecMod) -> None:
    secmod.setup.password = Scripted(["Password: ", "Verification code: "], ["pw", "123456"],
                                     ["staff"])
    state = AuthState()
    first = init(secmod, state)
    assert (first.status, first.form) == ("continue", "login")
    assert first.groups == [["staff", "Staff members"], ["admins", "admins"]]
    step = init(secmod, state, "alice")
    # PAM's bare "Password:" reads as ocserv's sentence
    assert (step.form, step.message, step.input_name) == ("password",
                                                          "Please enter your password.",
                                                          "password")
    step = secmod.login.auth_cont(state, "pw")
    assert (step.status, step.message) == ("continue", "Verification code:")
    assert (step.input_name, step.input_label) == ("secondary_password", "Password1:")
    done = secmod.login.auth_cont(state, "123456")
    assert done.status == "ok" and done.cookie
    session = secmod.store.open(done.cookie, time.time())
    assert session is not None and (session.username, session.groupname) == ("alice", "staff")


def test_session_keeps_the_login_requests_device_identifiers(secmod: SecMod) -> None:
    """DEVICE_TYPE / DEVICE_PLATFORM come from the login, whatever the CONNECT says."""
    secmod.setup.password = Scripted(["Password:"], ["pw"])
    state = AuthState()
    secmod.login.auth_init(state, ipc.AuthInit("alice", None, "198.18.0.2", "test",
                                               "Pixel 8", "android"))
    done = secmod.login.auth_cont(state, "pw")
    assert done.status == "ok"
    info = secmod._main_request(ipc.SessionOpen(done.cookie, "198.18.0.2"))
    assert isinstance(info, ipc.SessionInfo) and info.ok
    assert (info.device_type, info.platform) == ("Pixel 8", "android")


def test_wrong_answer_restarts_then_fails_after_three(secmod: SecMod) -> None:
    backend = Scripted(["Password:", "Code:"], ["pw", "1"])
    secmod.setup.password = backend
    state = AuthState()
    init(secmod, state, "alice")
    for attempt in range(1, 4):
        secmod.login.auth_cont(state, "pw")
        reply = secmod.login.auth_cont(state, "wrong")
        if attempt < 3:
            assert reply.status == "continue"
            assert reply.message == "Login failed.\nPlease enter your password."
            assert reply.input_name == "password"
    assert reply.status == "fail" and reply.message == "Authentication failed"
    assert len(backend.started) == 3 and secmod.login.auth_failures == 3


def test_answer_without_question_fails(secmod: SecMod) -> None:
    assert secmod.login.auth_cont(AuthState(), "pw").status == "fail"


def test_group_rules_in_the_dialogue(secmod: SecMod) -> None:
    secmod.setup.password = Scripted(["Password:"], ["pw"], ["ops", "staff"])
    state = AuthState()
    form = init(secmod, state, "", "Staff members")  # friendly name accepted
    assert form.groups[0] == ["staff", "Staff members"]  # requested group first
    init(secmod, state, "alice", "Staff members")
    done = secmod.login.auth_cont(state, "pw")
    assert secmod.store.open(done.cookie, time.time()).groupname == "staff"
    init(secmod, state, "alice", "admins")  # not a member
    assert secmod.login.auth_cont(state, "pw").status == "fail"
    init(secmod, state, "alice")  # no group asked for: the user's first one
    done = secmod.login.auth_cont(state, "pw")
    assert secmod.store.open(done.cookie, time.time()).groupname == "ops"


def test_certificate_modes(secmod: SecMod) -> None:
    secmod.setup.password = Scripted(["Password:"], ["pw"])
    secmod.setup.methods = (Method(cert=True, password=True),)  # cert AND pw
    state = AuthState()
    assert init(secmod, state, "alice").message == "No certificate"
    state.cert = CertIdentity("alice")  # as _note_certificate would after a handshake
    assert init(secmod, state).form == "login"
    assert init(secmod, state, "bob").status == "fail"  # the cert names someone else
    init(secmod, state, "alice")
    assert secmod.login.auth_cont(state, "pw").status == "ok"

    secmod.setup.methods = (Method(cert=False, password=True),  # cert OR pw
                            Method(cert=True, password=False))
    assert init(secmod, AuthState()).form == "login"
    reply = init(secmod, state)
    assert reply.status == "ok"
    assert secmod.store.open(reply.cookie, time.time()).username == "alice"

    secmod.setup.methods = (Method(cert=True, password=False),)  # cert only
    secmod.setup.password = None
    multi = AuthState(cert=CertIdentity("carol", ("staff", "admins")))
    reply = init(secmod, multi)
    assert (reply.form, reply.message) == ("group", "Please select your group.")
    assert init(secmod, multi, "", "admins").status == "ok"
    assert init(secmod, multi, "", "root").status == "fail"


def test_a_worker_gets_one_handshake(secmod: SecMod) -> None:
    """The certificate identity belongs to the connection's only handshake: a second
    TlsHandshake on the same channel is refused before anything is read."""
    worker, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a, b = socket.socketpair()
    try:
        secmod.workers[worker] = AuthState()
        secmod._start_handshake(worker, ipc.TlsHandshake("198.18.0.2"), [os.dup(a.fileno())])
        assert secmod.workers[worker].handshakes == 1
        secmod._start_handshake(worker, ipc.TlsHandshake("198.18.0.2"), [os.dup(a.fileno())])
        reply, _ = ipc.recv(peer)
        assert isinstance(reply, ipc.TlsResult) and not reply.ok
        assert reply.reason == "one handshake per connection"
    finally:
        for h in list(secmod.handshakes.values()):
            secmod._end_handshake(h, None)
        for sock in (worker, peer, a, b):
            sock.close()


# ---------------------------------------------------------------- PAM (real libpam)


@pytest.fixture
def pam_service() -> Iterator[str]:
    require_root("the test writes a service into /etc/pam.d")
    name = f"ocgate-unit-{os.urandom(4).hex()}"
    path = Path("/etc/pam.d") / name
    path.write_text("auth required pam_permit.so\naccount required pam_permit.so\n")
    yield name
    path.unlink(missing_ok=True)


def wait_event(conv, timeout: float = 10.0) -> Event:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = conv.poll()
        if event is not None:
            return event
        time.sleep(0.01)
    raise AssertionError("no PAM event")


def test_pam_thread_verdict_groups_and_gid_min(pam_service: str) -> None:
    woken: list[int] = []
    conv = PamAuth(pam_service, gid_min=0).start("root", "198.18.0.2",
                                                 lambda: woken.append(1))
    verdict = wait_event(conv)
    assert verdict == Verdict(True, ("root",)) and woken
    refused = wait_event(PamAuth(pam_service, gid_min=1).start("root", "x", lambda: None))
    assert not refused.ok and "gid-min" in refused.reason


def test_pam_abandoned_conversation_frees_its_slot(pam_service: str, tmp_path: Path) -> None:
    Path(f"/etc/pam.d/{pam_service}").write_text(
        "auth required pam_unix.so\naccount required pam_permit.so\n")
    backend = PamAuth(pam_service, answer_timeout=5.0)
    conv = backend.start("root", "198.18.0.2", lambda: None)
    assert isinstance(wait_event(conv), Prompt)  # pam_unix asks for the password
    conv.close()
    time.sleep(0.5)
    assert conv.poll() is None  # no verdict after close
    assert backend._slots.acquire(blocking=False)  # the thread gave its slot back
    backend._slots.release()
