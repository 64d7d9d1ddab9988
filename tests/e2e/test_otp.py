"""Issue 15: ``auth = plain[passwd=...,otp=...]`` with the real openconnect and codes from
Debian's ``oathtool``, the way ocserv 1.1.6 (liboath) asks for and checks them.

The password comes first, then "Please enter your OTP password."; a user whose ocpasswd
line has no hash (or any user without passwd=) gives the code only.  Codes are never
accepted twice (HOTP counter, TOTP time step), a wrong code ends the login with ban
points.  Run with ``OCGATE_E2E_SERVER=ocserv`` the same tests pin down that ocserv
behaves the same.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support import harness
from tests.support.harness import ServerFiles, ping
from tests.support.rig import InteractiveClient, Rig, running_rig

OTP_PROMPT = "Please enter your OTP password."
AUTH_LINE = 'auth = "plain[passwd={passwd},otp={dir}/users.oath]"'
BANS = ["max-ban-score = 1000", "ban-points-wrong-password = 10",
        "ban-points-connection = 0", "ban-reset-time = 1200"]


def oathtool(*args: str) -> str:
    if shutil.which("oathtool") is None:
        pytest.fail("the 'oathtool' command is missing (apt-get install oathtool)")
    done = subprocess.run(["oathtool", *args], capture_output=True, text=True, check=True,
                          timeout=10)
    return done.stdout.strip()


class Keys:
    """One random secret per user: alice HOTP, bob TOTP (given to oathtool in base32),
    carol 8-digit TOTP and no password (OTP only)."""

    def __init__(self) -> None:
        self.alice, self.bob, self.carol = (secrets.token_bytes(20) for _ in range(3))

    def hotp(self, counter: int) -> str:
        return oathtool("-c", str(counter), self.alice.hex())

    def totp_bob(self, when: str = "now") -> str:
        return oathtool("--totp", "-b", "-N", when, base64.b32encode(self.bob).decode())

    def totp_carol(self) -> str:
        return oathtool("--totp", "-d", "8", self.carol.hex())

    def users_file(self) -> str:
        return (f"# OTP tokens (liboath users file)\n"
                f"HOTP alice - {self.alice.hex()}\n"
                f"HOTP/T30 bob - {self.bob.hex()}\n"
                f"HOTP/T30/8 carol - {self.carol.hex()}\n")


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def rig(workdir: Path, users: dict[str, str], keys: Keys) -> Iterator[Rig]:
    def prepare(files: ServerFiles) -> None:
        harness.write_passwd(files.passwd, users, {"alice": "staff", "bob": "ops"})
        with files.passwd.open("a") as fh:
            fh.write("carol:ops:\n")  # no hash: this user has the one-time password only
        (files.dir / "users.oath").write_text(keys.users_file())
        (files.dir / "users.oath").chmod(0o600)

    with running_rig(users, workdir=workdir, auth=[AUTH_LINE], extra_conf=BANS,
                     prepare=prepare) as made:
        yield made


class Login:
    """One openconnect run answering ``answers`` in turn; ``ok`` once the tunnel is up."""

    def __init__(self, rig: Rig, opened: list[InteractiveClient], name: str, user: str,
                 answers: Sequence[str]) -> None:
        self.client = rig.interactive(name)
        opened.append(self.client)
        self.ok = self.client.answer(user, answers)
        self.log = self.client.log

    def disconnect(self) -> int:
        return self.client.disconnect()


def authenticate(rig: Rig, name: str, user: str, answers: Sequence[str]) -> bool:
    """``openconnect --authenticate`` answering from stdin: a login without a tunnel, so
    that good and bad attempts make the same connections."""
    client = rig.interactive(name)
    argv = ["openconnect", "-v", "--authenticate", "--servercert", rig.files.pin,
            "-u", user, "--passwd-on-stdin", client.url]
    done = client.ns.run(argv, check=False, timeout=30, input="\n".join(answers) + "\n")
    (client.dir / "authenticate.log").write_text(done.stderr)
    return done.returncode == 0 and "COOKIE=" in done.stdout


def score(rig: Rig, ip: str) -> int:
    rows = json.loads(rig.server.occtl("-j", "show", "ip", "ban", "points").stdout or "[]")
    return sum(int(r["Score"]) for r in rows if r["IP"] == ip)


def test_password_then_hotp_and_no_code_twice(rig: Rig, users: dict[str, str], keys: Keys,
                                             opened: list[InteractiveClient]) -> None:
    client = Login(rig, opened, "hotp", "alice", [users["alice"], keys.hotp(0)])
    assert client.ok, client.log
    assert OTP_PROMPT in client.log
    assert ping(client.client.ns, rig.net.inside_ip, count=2).ok
    row = rig.users()[0]
    assert (row["Username"], row["Groupname"]) == ("alice", "staff")
    assert client.disconnect() == 0
    text = (rig.workdir / "users.oath").read_text()
    assert text.startswith("# OTP tokens") and f"\t{keys.hotp(0)}\t" in text

    replay = Login(rig, opened, "hotp-again", "alice", [users["alice"], keys.hotp(0)])
    assert not replay.ok, replay.log
    assert OTP_PROMPT in replay.log  # the password was right; the code was spent

    nxt = Login(rig, opened, "hotp-next", "alice", [users["alice"], keys.hotp(1)])
    assert nxt.ok, nxt.log
    assert nxt.disconnect() == 0

    # the password alone does not log in, and a wrong one never reaches the OTP question
    only = Login(rig, opened, "no-otp", "alice", [users["alice"]])
    assert not only.ok
    wrong = Login(rig, opened, "wrong-pw", "alice", ["wrong-" + users["alice"]])
    assert not wrong.ok and "Login failed." in wrong.log
    assert OTP_PROMPT not in wrong.log
    assert keys.hotp(0) not in rig.server.log and users["alice"] not in rig.server.log
    rig.server.assert_running()


def test_wrong_otp_is_refused_with_ban_points(rig: Rig, users: dict[str, str], keys: Keys
                                             ) -> None:
    ip = rig.net.primary.client_ip
    before = score(rig, ip)
    assert authenticate(rig, "good", "alice", [users["alice"], keys.hotp(0)])
    good = score(rig, ip) - before
    wrong = "000000" if keys.hotp(1) != "000000" else "111111"
    assert not authenticate(rig, "bad", "alice", [users["alice"], wrong])
    bad = score(rig, ip) - before - good
    # ban-points-wrong-password = 10 for the wrong code, on top of what a good login costs
    assert bad - good == 10, (good, bad)
    assert authenticate(rig, "after", "alice", [users["alice"], keys.hotp(1)])


def test_totp_code_reused_is_refused(rig: Rig, users: dict[str, str], keys: Keys,
                                     opened: list[InteractiveClient]) -> None:
    code = keys.totp_bob()
    first = Login(rig, opened, "totp", "bob", [users["bob"], code])
    assert first.ok, first.log
    assert first.disconnect() == 0
    again = Login(rig, opened, "totp-again", "bob", [users["bob"], code])
    assert not again.ok, again.log  # same code, still inside its window
    # the next time step's code is new, and inside the window: accepted
    later = Login(rig, opened, "totp-next", "bob",
                  [users["bob"], keys.totp_bob("now + 30 seconds")])
    assert later.ok, later.log
    assert later.disconnect() == 0


def test_otp_only_user(rig: Rig, keys: Keys, opened: list[InteractiveClient]) -> None:
    """carol has no password hash: the one-time password is the only answer.  (It goes
    into the first form's password field: ocserv 1.1.6 asks for it in a form of its own
    after the username, OCGate's combined first form is ocserv master's, docs/protocol.md
    §2.4.2.)"""
    client = Login(rig, opened, "carol", "carol", [keys.totp_carol()])
    assert client.ok, client.log
    assert "Please enter your password." not in client.log
    row = rig.users()[0]
    assert (row["Username"], row["Groupname"]) == ("carol", "ops")
    assert client.disconnect() == 0
    wrong = "1" * 8 if keys.totp_carol() != "1" * 8 else "2" * 8
    assert not Login(rig, opened, "carol-wrong", "carol", [wrong]).ok


def test_otp_file_without_passwd(workdir: Path, users: dict[str, str], keys: Keys,
                                 opened: list[InteractiveClient]) -> None:
    """auth = plain[otp=FILE]: every user is asked for the one-time password only."""
    def prepare(files: ServerFiles) -> None:
        (files.dir / "users.oath").write_text(keys.users_file())

    with running_rig(users, workdir=workdir, auth=['auth = "plain[otp={dir}/users.oath]"'],
                     prepare=prepare) as rig:
        client = Login(rig, opened, "otp-only", "bob", [keys.totp_bob()])
        assert client.ok, client.log
        assert "Please enter your password." not in client.log
        assert client.disconnect() == 0
        stranger = Login(rig, opened, "stranger", "mallory", ["123456"])
        assert not stranger.ok
