"""Issue #4 end to end: certificate, certificate+password, PAM and group selection with the
real openconnect client (docs/protocol.md §2.4.3, §2.6, §2.7).

Every test runs its own server: the authentication set-up is the thing under test. Client
certificates are made by the server's throwaway CA (harness.make_server_files writes it);
"wrong" certificates come from a second CA the server has never seen.
"""

from __future__ import annotations

import ctypes.util
import datetime
import grp
import pwd
import secrets
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from appliance import pki
from tests.prereqs import fail, require_command
from tests.support import harness
from tests.support.harness import Client, ServerFiles, ping
from tests.support.rig import running_rig

UID_OID = "0.9.2342.19200300.100.1.1"
OU_OID = "2.5.4.11"


# ---------------------------------------------------------------- certificates


def _write_pair(directory: Path, name: str, key: pki.PrivateKey,
                cert: x509.Certificate) -> tuple[Path, Path]:
    directory.mkdir(mode=0o700, exist_ok=True)
    cert_path, key_path = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    pki.write_key(key_path, key)
    pki.write_cert(cert_path, cert)
    return cert_path, key_path


def client_cert(files: ServerFiles, username: str, *, groups: Sequence[str] = (),
                email: str | None = None) -> tuple[Path, Path]:
    """A client certificate from the server's CA: CN and UID = username, one OU per group
    and, with ``email``, an rfc822Name SAN."""
    ca_key, ca = pki.load_key(files.ca_key), pki.load_cert(files.ca)
    if not groups and email is None:
        key, cert = pki.make_client_cert(ca_key, ca, username=username, days=2)
    else:
        key = pki.generate_key("ec")
        names = [x509.NameAttribute(NameOID.COMMON_NAME, username),
                 x509.NameAttribute(NameOID.USER_ID, username),
                 *(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, g) for g in groups)]
        now = datetime.datetime.now(datetime.UTC)
        builder = (x509.CertificateBuilder().subject_name(x509.Name(names))
                   .issuer_name(ca.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True))
        if email is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(email)]), False)
        cert = builder.sign(ca_key, hashes.SHA256())
    tag = username + ("-" + "-".join(groups) if groups else "")
    return _write_pair(files.dir / "client-certs", tag, key, cert)


def foreign_cert(files: ServerFiles, username: str) -> tuple[Path, Path]:
    """Same name, but signed by a CA the server does not trust."""
    other_key, other_ca = pki.make_ca("Some other CA", days=2)
    key, cert = pki.make_client_cert(other_key, other_ca, username=username, days=2)
    return _write_pair(files.dir / "client-certs", f"foreign-{username}", key, cert)


def write_crl(files: ServerFiles, revoked: Sequence[Path]) -> None:
    """``crl.pem``: a CRL of the server's CA revoking the certificates in ``revoked``."""
    ca_key, ca = pki.load_key(files.ca_key), pki.load_cert(files.ca)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(now - datetime.timedelta(minutes=5))
               .next_update(now + datetime.timedelta(days=2)))
    for path in revoked:
        serial = pki.load_cert(path).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    crl = builder.sign(ca_key, hashes.SHA256()).public_bytes(Encoding.PEM)
    (files.dir / "crl.pem").write_bytes(crl)


def cert_args(pair: tuple[Path, Path]) -> list[str]:
    return ["-c", str(pair[0]), "-k", str(pair[1])]


def assert_refused(client: Client, reason: str) -> None:
    assert client.returncode not in (0, None), client.log
    assert f"401 {reason}" in client.log, client.log


CA_LINES = ("ca-cert = {ca}", f"cert-user-oid = {UID_OID}")


def test_certificate_only(workdir: Path, users: dict[str, str],
                          opened: list[Client]) -> None:
    """auth = certificate: the init POST is answered with ``complete``; no cert or a cert
    from another CA gets 401 (docs/protocol.md §2.6, §2.7)."""
    with running_rig(users, workdir=workdir, auth=["auth = certificate", *CA_LINES]) as rig:
        client = rig.client("cert")
        opened.append(client)
        # the password is deliberately wrong: it must never be asked for
        assert client.connect("alice", "not-used", extra_args=cert_args(
            client_cert(rig.files, "alice"))), client.log
        assert "Please enter" not in client.log
        assert ping(client.ns, rig.net.inside_ip, count=2).ok
        assert [u["Username"] for u in rig.users()] == ["alice"]
        assert client.disconnect() == 0

        stranger = rig.client("stranger")
        opened.append(stranger)
        assert not stranger.connect("alice", "x", extra_args=cert_args(
            foreign_cert(rig.files, "alice")))
        assert_refused(stranger, "No certificate")

        nocert = rig.client("nocert")
        opened.append(nocert)
        assert not nocert.connect("alice", users["alice"])
        assert_refused(nocert, "No certificate")
        assert "client certificate" in rig.server.log  # the refusals are logged
        rig.server.assert_running()


def test_certificate_revoked_by_crl(workdir: Path, users: dict[str, str],
                                   opened: list[Client]) -> None:
    """crl: a revoked certificate is refused; the file is re-read when it changes."""
    with running_rig(users, workdir=workdir,
                     auth=["auth = certificate", *CA_LINES, "crl = {dir}/crl.pem"],
                     prepare=lambda files: write_crl(files, [])) as rig:
        good = rig.client("good")
        opened.append(good)
        assert good.connect("bob", "x", extra_args=cert_args(client_cert(rig.files, "bob")))
        assert good.disconnect() == 0
        pair = client_cert(rig.files, "alice")
        write_crl(rig.files, [pair[0]])
        bad = rig.client("revoked")
        opened.append(bad)
        assert not bad.connect("alice", "x", extra_args=cert_args(pair))
        assert_refused(bad, "No certificate")
        assert "certificate revoked" in rig.server.log


def test_certificate_and_password(workdir: Path, users: dict[str, str],
                                  opened: list[Client]) -> None:
    """auth = plain + auth = certificate: both are needed, and they must name the same
    user."""
    with running_rig(users, workdir=workdir,
                     auth=['auth = "plain[passwd={passwd}]"', "auth = certificate",
                           *CA_LINES]) as rig:
        alice_cert = cert_args(client_cert(rig.files, "alice"))
        both = rig.client("both")
        opened.append(both)
        assert both.connect("alice", users["alice"], extra_args=alice_cert), both.log
        assert "Please enter your username and password." in both.log or "Username:" in \
            both.log
        assert [u["Username"] for u in rig.users()] == ["alice"]
        assert both.disconnect() == 0

        wrong_pw = rig.client("wrong-pw")
        opened.append(wrong_pw)
        assert not wrong_pw.connect("alice", "wrong", extra_args=alice_cert)
        assert "Login failed" in wrong_pw.log

        other_user = rig.client("other-user")
        opened.append(other_user)
        assert not other_user.connect("bob", users["bob"], extra_args=alice_cert)
        assert_refused(other_user, "Authentication failed")

        password_only = rig.client("password-only")
        opened.append(password_only)
        assert not password_only.connect("alice", users["alice"])
        assert_refused(password_only, "No certificate")
        rig.server.assert_running()


def test_enable_auth_certificate_or_password(workdir: Path, users: dict[str, str],
                                             opened: list[Client]) -> None:
    """enable-auth = certificate: a certificate suffices, otherwise the password form."""
    with running_rig(users, workdir=workdir, auth=['auth = "plain[passwd={passwd}]"',
                                                   "enable-auth = certificate", *CA_LINES]) as rig:
        by_cert = rig.client("by-cert")
        opened.append(by_cert)
        assert by_cert.connect("bob", "wrong-and-unused", extra_args=cert_args(
            client_cert(rig.files, "bob"))), by_cert.log
        assert [u["Username"] for u in rig.users()] == ["bob"]
        assert by_cert.disconnect() == 0

        by_password = rig.client("by-password")
        opened.append(by_password)
        assert by_password.connect("alice", users["alice"]), by_password.log
        assert by_password.disconnect() == 0

        # a certificate the server does not trust is no login, but no obstacle either
        foreign = rig.client("foreign")
        opened.append(foreign)
        assert foreign.connect("alice", users["alice"], extra_args=cert_args(
            foreign_cert(rig.files, "alice"))), foreign.log
        assert foreign.disconnect() == 0


def test_certificate_groups_and_san_user(workdir: Path, users: dict[str, str],
                                         opened: list[Client]) -> None:
    """cert-group-oid (several OUs: a group form first, §2.6) and SAN(rfc822name)."""
    with running_rig(users, workdir=workdir, auth=["auth = certificate", "ca-cert = {ca}",
                                                   "cert-user-oid = SAN(rfc822name)",
                                                   f"cert-group-oid = {OU_OID}"]) as rig:
        pair = client_cert(rig.files, "carol", groups=["staff", "admins"],
                           email="carol@e2e.test")
        first = rig.interactive("groups")
        opened.append(first)
        assert first.answer("x", ["unused", "admins"], extra_args=cert_args(pair)), first.log
        assert "Please select your group." in first.log
        assert "[staff|admins]" in first.log
        row = rig.users()[0]
        assert (row["Username"], row["Groupname"]) == ("carol@e2e.test", "admins")
        assert first.disconnect() == 0

        chosen = rig.client("chosen")
        opened.append(chosen)
        assert chosen.connect("x", "x", extra_args=[*cert_args(pair), "--authgroup",
                                                   "staff"]), chosen.log
        row = rig.users()[0]
        assert (row["Username"], row["Groupname"]) == ("carol@e2e.test", "staff")
        assert chosen.disconnect() == 0



# ---------------------------------------------------------------- PAM

# A one-question PAM module written for these tests: it asks "Verification code:" and
# succeeds when the answer equals its code= argument. No installed module asks a second
# question after pam_unix (pam_exec reuses the password), so an OTP-like step is built
# here. The PAM types are declared by hand: the libpam headers are not installed.
OTP_MODULE_C = r"""
#include <stdlib.h>
#include <string.h>

struct pam_message { int msg_style; const char *msg; };
struct pam_response { char *resp; int resp_retcode; };
struct pam_conv {
    int (*conv)(int, const struct pam_message **, struct pam_response **, void *);
    void *appdata_ptr;
};
typedef struct pam_handle pam_handle_t;
extern int pam_get_item(const pam_handle_t *, int, const void **);

enum { OK = 0, AUTH_ERR = 7, CONV_ERR = 19, ITEM_CONV = 5, ECHO_OFF = 1 };

int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    const char *expected = NULL;
    const struct pam_conv *conv = NULL;
    struct pam_message question = { ECHO_OFF, "Verification code: " };
    const struct pam_message *questions[1] = { &question };
    struct pam_response *answer = NULL;
    int i, ok;

    (void)flags;
    for (i = 0; i < argc; i++)
        if (strncmp(argv[i], "code=", 5) == 0)
            expected = argv[i] + 5;
    if (pam_get_item(pamh, ITEM_CONV, (const void **)&conv) != OK || conv == NULL)
        return CONV_ERR;
    if (conv->conv(1, questions, &answer, conv->appdata_ptr) != OK || answer == NULL)
        return CONV_ERR;
    ok = expected != NULL && answer->resp != NULL && strcmp(answer->resp, expected) == 0;
    free(answer->resp);
    free(answer);
    return ok ? OK : AUTH_ERR;
}

int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh; (void)flags; (void)argc; (void)argv;
    return OK;
}
"""


@dataclass
class UnixUser:
    name: str
    password: str
    group: str  # primary group (useradd's user private group)
    gid: int


def _run(argv: Sequence[str], stdin: str | None = None) -> None:
    subprocess.run(list(argv), input=stdin, text=True, check=True, capture_output=True)


@pytest.fixture
def unix_user() -> Iterator[UnixUser]:
    """A throw-away account in the host's passwd/shadow (PAM runs in the sec-mod, on the
    host's files), removed afterwards."""
    for tool in ("useradd", "chpasswd", "userdel", "groupdel"):
        require_command(tool, "passwd")
    name = f"ocgt{secrets.token_hex(4)}"
    password = "p-" + secrets.token_urlsafe(9)
    _run(["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
          name])
    try:
        _run(["chpasswd"], f"{name}:{password}\n")
        entry = pwd.getpwnam(name)
        yield UnixUser(name, password, grp.getgrgid(entry.pw_gid).gr_name, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


@pytest.fixture
def pam_service() -> Iterator[Callable[[Sequence[str]], str]]:
    """Writes /etc/pam.d/ocgate-e2e-XXXX services; returns their names; removes them."""
    made: list[Path] = []

    def make(auth_lines: Sequence[str]) -> str:
        name = f"ocgate-e2e-{secrets.token_hex(4)}"
        path = Path("/etc/pam.d") / name
        path.write_text("# written by tests/e2e/test_auth_methods.py\n"
                        + "".join(f"{line}\n" for line in auth_lines)
                        + "account required pam_unix.so\n")
        made.append(path)
        return name

    yield make
    for path in made:
        path.unlink(missing_ok=True)


def otp_module(workdir: Path) -> Path:
    require_command("gcc", "gcc")  # builds the test's second-factor PAM module
    source, module = workdir / "pam_ocgt_otp.c", workdir / "pam_ocgt_otp.so"
    source.write_text(OTP_MODULE_C)
    # linked against libpam itself, like every PAM module: python-pam loads libpam with
    # RTLD_LOCAL, so the module cannot borrow pam_get_item from the process
    libpam = ctypes.util.find_library("pam")
    if libpam is None:
        fail("needs libpam (apt packages libpam0g, libpam0g-dev; `make test` installs them)")
    _run(["gcc", "-shared", "-fPIC", "-Wall", "-o", str(module), str(source),
          f"-l:{libpam}"])
    return module


def pam_line(service: str, gid_min: int = 1000) -> str:
    return f'auth = "pam[service={service},gid-min={gid_min}]"'


def test_pam_login(workdir: Path, users: dict[str, str], opened: list[Client],
                   unix_user: UnixUser, pam_service: Callable[[Sequence[str]], str]) -> None:
    """auth = pam: the password goes through a real pam_unix stack in the sec-mod; the
    session's group is the user's primary Unix group."""
    service = pam_service(["auth required pam_unix.so"])
    with running_rig(users, workdir=workdir, auth=[pam_line(service)]) as rig:
        client = rig.client("pam")
        opened.append(client)
        assert client.connect(unix_user.name, unix_user.password), client.log
        assert ping(client.ns, rig.net.inside_ip, count=2).ok
        row = rig.users()[0]
        assert (row["Username"], row["Groupname"]) == (unix_user.name, unix_user.group)
        assert client.disconnect() == 0

        wrong = rig.client("pam-wrong")
        opened.append(wrong)
        assert not wrong.connect(unix_user.name, "wrong-" + unix_user.password)
        assert "Login failed." in wrong.log
        assert not wrong.connect("nosuchuser-" + secrets.token_hex(3), "whatever")
        assert unix_user.password not in rig.server.log
        rig.server.assert_running()


def test_pam_two_step_conversation(workdir: Path, users: dict[str, str],
                                   opened: list[Client], unix_user: UnixUser,
                                   pam_service: Callable[[Sequence[str]], str]) -> None:
    """pam_unix, then a second module asking "Verification code:": each PAM prompt is
    relayed as its own form step (docs/protocol.md §2.4.3), the second as secondary_password."""
    code = str(secrets.randbelow(10**6)).zfill(6)
    module = otp_module(workdir)
    service = pam_service(["auth requisite pam_unix.so", f"auth required {module} code={code}"])
    with running_rig(users, workdir=workdir, auth=[pam_line(service)]) as rig:
        client = rig.interactive("otp")
        opened.append(client)
        assert client.answer(unix_user.name, [unix_user.password, code]), client.log
        assert "Verification code:" in client.log
        assert "Password1:" in client.log
        assert [u["Username"] for u in rig.users()] == [unix_user.name]
        assert client.disconnect() == 0

        # a wrong second answer fails the whole PAM run: the login starts over
        bad = rig.interactive("otp-wrong")
        opened.append(bad)
        assert not bad.answer(unix_user.name, [unix_user.password, "000000x"])
        assert "Verification code:" in bad.log
        assert "Login failed." in bad.log
        assert code not in rig.server.log and unix_user.password not in rig.server.log


def test_pam_gid_min_refuses_low_primary_group(workdir: Path, users: dict[str, str],
                                               opened: list[Client], unix_user: UnixUser,
                                               pam_service: Callable[[Sequence[str]], str]
                                               ) -> None:
    service = pam_service(["auth required pam_unix.so"])
    with running_rig(users, workdir=workdir,
                     auth=[pam_line(service, gid_min=unix_user.gid + 1)]) as rig:
        client = rig.client("lowgid")
        opened.append(client)
        assert not client.connect(unix_user.name, unix_user.password)
        assert "below gid-min" in rig.server.log


# ---------------------------------------------------------------- group selection


def test_select_group_rules(workdir: Path, users: dict[str, str],
                            opened: list[Client]) -> None:
    """select-group with friendly names, default-select-group and auto-select-group
    (docs/protocol.md §2.4.3, §11 items 12 and 26) through openconnect's --authgroup."""

    def groups(files: ServerFiles) -> None:
        harness.write_passwd(files.passwd, users, {"alice": "staff,admins", "bob": "ops"})

    with running_rig(users, workdir=workdir, auth=['auth = "plain[passwd={passwd}]"'],
                     extra_conf=["select-group = staff[Staff members]",
                                 "select-group = admins[Administrators]",
                                 "default-select-group = DEFAULT", "auto-select-group = true"],
                     prepare=groups) as rig:

        def login_group(user: str, authgroup: str) -> str | None:
            client = rig.client(f"{user}-{authgroup.replace(' ', '_')}")
            opened.append(client)
            if not client.connect(user, users[user], extra_args=["--authgroup", authgroup]):
                return None
            row = rig.users()[0]
            assert row["Username"] == user
            assert client.disconnect() == 0
            return row["Groupname"]

        # openconnect matches --authgroup against the labels and submits the value. Not
        # the first option: it re-inits with <group-select>admins</group-select>, which
        # must come first in the next form or it would loop (§11 item 12)
        assert login_group("alice", "Administrators") == "admins"
        assert login_group("alice", "Staff members") == "staff"
        assert login_group("alice", "DEFAULT") == "staff"  # the user's first group
        assert login_group("bob", "ops") == "ops"  # offered by auto-select-group
        assert login_group("bob", "Administrators") is None  # not a member
        assert "not a member of group 'admins'" in rig.server.log


def test_select_group_by_url(workdir: Path, users: dict[str, str],
                             opened: list[Client]) -> None:
    """select-group-by-url (docs/protocol.md §10.2): https://server/GROUP picks the group and
    hides the group list, as AnyConnect profiles with per-group URLs expect."""

    def groups(files: ServerFiles) -> None:
        harness.write_passwd(files.passwd, users, {"alice": "staff,admins", "bob": "ops"})

    with running_rig(users, workdir=workdir, auth=['auth = "plain[passwd={passwd}]"'],
                     extra_conf=["select-group = staff", "select-group = admins",
                                 "select-group-by-url = true"],
                     prepare=groups) as rig:
        alice = rig.client("alice-url")
        opened.append(alice)
        assert alice.connect("alice", users["alice"], url=alice.url.rstrip("/") + "/admins"), \
            alice.log
        row = rig.users()[0]
        assert (row["Username"], row["Groupname"]) == ("alice", "admins")
        assert alice.disconnect() == 0
        bob = rig.client("bob-url")
        opened.append(bob)
        assert not bob.connect("bob", users["bob"], url=bob.url.rstrip("/") + "/admins")
        assert "not a member of group 'admins'" in rig.server.log

