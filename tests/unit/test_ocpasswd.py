"""The ocpasswd-compatible CLI, run as a subprocess like an admin or a script would.

Where Debian's /usr/bin/ocpasswd (ocserv 1.1.6) is installed, the same invocations are
also run against it and exit codes, messages and resulting files are compared.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.vpn import ocpasswd
from appliance.vpn.passwd import load_passwd, parse_passwd, verify_password
from tests.prereqs import needs_command

REPO = Path(__file__).resolve().parents[2]
REAL_OCPASSWD = shutil.which("ocpasswd")
_HASH_RE = re.compile(r"\$5\$[0-9A-Za-z./]{16}\$[0-9A-Za-z./]{43}")


def run(
    args: list[str], stdin: bytes = b"", real: bool = False
) -> subprocess.CompletedProcess[bytes]:
    if real:  # argv[0] "ocpasswd" so getopt's messages carry the bare name, as ours do
        command, executable = ["ocpasswd"], REAL_OCPASSWD
    else:
        command, executable = [sys.executable, "-m", "appliance.vpn.ocpasswd"], None
    return subprocess.run(
        command + args,
        executable=executable,
        input=stdin,
        capture_output=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )


def test_set_password_from_stdin(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    result = run(["-c", str(path), "alice"], b"s3cret pass\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"" and result.stderr == b""
    text = path.read_text()
    assert re.fullmatch(r"alice:\*:" + _HASH_RE.pattern + "\n", text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = load_passwd(path)["alice"]
    assert verify_password(entry, "s3cret pass")
    assert not verify_password(entry, "s3cret pass\n")


def test_group_and_replace_keeps_other_lines(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("zed:*:H0\nalice:old:H1\nbob:*:H2\n")
    result = run(["alice", "--groupname=sales,eng", "--pass", str(path)], b"pw\n")
    assert result.returncode == 0, result.stderr
    lines = path.read_text().splitlines()
    assert lines[0] == "zed:*:H0" and lines[2] == "bob:*:H2"
    assert lines[1].startswith("alice:sales,eng:$5$")
    entry = load_passwd(path)["alice"]
    assert entry.groups == ["sales", "eng"]
    assert verify_password(entry, "pw")


def test_lock_unlock_delete(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("alice:*:H1\nbob:*:H2\n")
    assert run(["-l", "-c", str(path), "alice"]).returncode == 0
    assert path.read_text() == "alice:*:!H1\nbob:*:H2\n"
    assert run(["--lock", "-c", str(path), "alice"]).returncode == 0
    assert path.read_text() == "alice:*:!H1\nbob:*:H2\n"
    assert run(["-u", "-c", str(path), "alice"]).returncode == 0
    assert path.read_text() == "alice:*:H1\nbob:*:H2\n"
    assert run(["-d", "-c", str(path), "bob"]).returncode == 0
    assert path.read_text() == "alice:*:H1\n"
    assert run(["-d", "-c", str(path), "nobody"]).returncode == 0
    assert path.read_text() == "alice:*:H1\n"


def test_locked_user_cannot_log_in(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    run(["-c", str(path), "alice"], b"pw\n")
    run(["-l", "-c", str(path), "alice"])
    entry = load_passwd(path)["alice"]
    assert entry.locked and not verify_password(entry, "pw")
    run(["-u", "-c", str(path), "alice"])
    assert verify_password(load_passwd(path)["alice"], "pw")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["-c", "{f}", "alice"], b"", b"Please specify a password\n"),
        (["-c", "{f}", "alice"], b"\n", b"Please specify a password\n"),
        (["-c", "{f}", "alice"], b"x", b"Please specify a password\n"),
        (
            ["-c", "{f}", "-c", "{f}", "alice"],
            b"pw\n",
            b"-c option cannot be specified multiple time\n",
        ),
        (
            ["-g", "a", "-g", "b", "-c", "{f}", "alice"],
            b"pw\n",
            b"-g option cannot be specified multiple time\n",
        ),
        (["-l", "-c", "{f}.missing", "alice"], b"", b"Cannot open '{f}.missing' for reading.\n"),
        (["-d", "-c", "{f}.missing", "alice"], b"", b"Cannot open '{f}.missing' for reading.\n"),
    ],
)
def test_error_messages_and_exit_codes(
    tmp_path: Path, args: list[str], stdin: bytes, message: bytes
) -> None:
    path = str(tmp_path / "ocpasswd")
    args = [a.replace("{f}", path) for a in args]
    result = run(args, stdin)
    assert result.returncode == 1
    assert result.stderr == message.replace(b"{f}", path.encode())
    assert not (tmp_path / "ocpasswd").exists()


def test_file_locked_by_tmp(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("alice:*:H1\n")
    (tmp_path / "ocpasswd.tmp").write_text("")
    for args, stdin in ((["alice"], b"pw\n"), (["-l", "alice"], b""), (["-d", "alice"], b"")):
        result = run(["-c", str(path), *args], stdin)
        assert result.returncode == 1
        assert result.stderr == f"file '{path}' is locked.\n".encode()
    assert path.read_text() == "alice:*:H1\n"


@pytest.mark.parametrize(
    "args", [[], ["a", "b"], ["-d", "-l", "alice"], ["-dl", "alice"], ["-u", "--delete", "x"]]
)
def test_usage_errors(args: list[str], tmp_path: Path) -> None:
    result = run(["-c", str(tmp_path / "f"), *args])
    assert result.returncode == 1
    assert b"Usage:" in result.stderr


def test_help_and_version() -> None:
    for flag in ("-h", "--help", "--he"):
        result = run([flag])
        assert result.returncode == 0
        assert b"--passwd=file" in result.stderr and b"--unlock" in result.stderr
    for flag in ("-v", "--version"):
        result = run([flag])
        assert result.returncode == 0
        assert result.stderr.startswith(b"ocpasswd")


def test_unknown_options_are_reported_and_ignored(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    result = run(["-x", "--bogus", "-c", str(path), "--delete=1", "alice"], b"pw\n")
    assert result.returncode == 0
    assert result.stderr == (
        b"ocpasswd: invalid option -- 'x'\n"
        b"ocpasswd: unrecognized option '--bogus'\n"
        b"ocpasswd: option '--delete' doesn't allow an argument\n"
    )
    assert verify_password(load_passwd(path)["alice"], "pw")
    result = run(["-c"])  # never without -c FILE here: that would edit /etc/ocserv/ocpasswd
    assert result.returncode == 1
    assert result.stderr.startswith(b"ocpasswd: option requires an argument -- 'c'\n")
    result = run(["--passwd"])
    assert result.stderr.startswith(b"ocpasswd: option '--passwd' requires an argument\n")


def test_double_dash_and_bundled_value(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    assert run([f"-c{path}", "-gops", "--", "-dash-user"], b"pw\n").returncode == 0
    assert parse_passwd(path.read_text())["-dash-user"].groups == ["ops"]


@pytest.mark.parametrize("args", [["a:b"], ["-g", "x:y", "ok"], ["-g", "", "ok"]])
def test_refuses_names_that_corrupt_the_file(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "ocpasswd"
    result = run(["-c", str(path), *args], b"pw\n")
    assert result.returncode == 1
    assert b"Invalid" in result.stderr
    assert not path.exists()


def test_binary_password_bytes_are_hashed_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    assert run(["-c", str(path), "u"], b"caf\xe9\r\n").returncode == 0
    entry = load_passwd(path)["u"]
    assert verify_password(entry, b"caf\xe9\r")  # like ocpasswd: only the LF is removed


def test_main_in_process_with_tty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["tty-pass", "tty-pass", "a", "b", "", ""])
    monkeypatch.setattr(ocpasswd.getpass, "getpass", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", Tty())
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    path = str(tmp_path / "f")
    assert ocpasswd.main(["-c", path, "alice"]) == 0
    assert verify_password(load_passwd(path)["alice"], "tty-pass")
    assert ocpasswd.main(["-c", path, "bob"]) == 1
    assert err.getvalue().endswith("Passwords do not match\n")
    assert ocpasswd.main(["-c", path, "carol"]) == 1
    assert err.getvalue().endswith("Please specify a password\n")
    assert set(load_passwd(path)) == {"alice"}


# --------------------------------------------------------------- against the original


def _normalise(data: bytes) -> bytes:
    return _HASH_RE.sub("HASH", data.decode()).encode()


SCENARIOS: list[tuple[list[str], bytes]] = [
    (["alice"], b"pw\n"),
    (["-g", "sales", "bob"], b"pw2\n"),
    (["-g", "x", "alice"], b"pw3\n"),
    (["-l", "bob"], b""),
    (["-l", "bob"], b""),
    (["-u", "bob"], b""),
    (["-u", "alice"], b""),
    (["-d", "alice"], b""),
    (["-d", "ghost"], b""),
    (["carol"], b"\n"),
    (["carol"], b"y"),
    (["carol"], b"yz"),
    (["-x", "dave"], b"pw\n"),
    (["-d", "-u", "dave"], b""),
    (["-c", "/nonexistent/dir/file", "-l", "dave"], b""),
]


@needs_command("ocpasswd", "ocserv")
def test_same_behaviour_as_ocserv_ocpasswd(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    seed = "# header\nzed:*:H0\nlonely\nerin:g1, g2:!H9\n"
    for path in (ours, theirs):
        path.write_text(seed)
        path.chmod(0o600)  # ocpasswd resets the mode to 0600; we keep an existing mode
    for args, stdin in SCENARIOS:
        ours_result = run(["-c", str(ours), *args] if "-c" not in args else args, stdin)
        their_result = run(
            ["-c", str(theirs), *args] if "-c" not in args else args, stdin, real=True
        )
        assert ours_result.returncode == their_result.returncode, args
        if b"Usage" not in their_result.stderr:
            assert ours_result.stderr == their_result.stderr, args
        assert _normalise(ours.read_bytes()) == _normalise(theirs.read_bytes()), args
        assert stat.S_IMODE(ours.stat().st_mode) == stat.S_IMODE(theirs.stat().st_mode)
    assert sorted(os.listdir(tmp_path)) == ["ours", "theirs"]  # no .tmp left behind


@needs_command("ocpasswd", "ocserv")
def test_we_verify_what_ocserv_ocpasswd_writes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    result = run(["-c", str(path), "-g", "grp", "user"], "pässwörd\n".encode(), real=True)
    assert result.returncode == 0
    entry = load_passwd(path)["user"]
    assert entry.groups == ["grp"]
    assert verify_password(entry, "pässwörd")
    assert not verify_password(entry, "passwörd")
