"""The ocpasswd plain password file: parsing like ocserv, crypt verification, atomic writes."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn import passwd
from appliance.vpn.passwd import (
    SALT_ALPHABET,
    PasswdEntry,
    PasswdError,
    PasswdLockedError,
    delete_user_text,
    format_passwd,
    hash_password,
    load_passwd,
    lock_user_text,
    parse_passwd,
    set_user_text,
    unlock_user_text,
    verify_password,
    write_passwd_atomic,
)
from tests.prereqs import fail, require_library

# Written by Debian's /usr/bin/ocpasswd 1.1.6 (`echo secret | ocpasswd -c F -g grp alice`).
OCPASSWD_LINE = "alice:grp:$5$uYHwrnxhykQPcDpE$SvilhEknDFjcZm.riAoYXW5ZwB6OruKHtnvXlluxF56\n"
# Reference hashes of "secret", produced by libxcrypt's crypt(3).
MD5 = "$1$saltsalt$9xy1btjgzLYfb7hivXtC//"
SHA512 = (
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq."
    "H91p5hVO1"
)
YESCRYPT = "$y$j9T$abcdefghijklmnop$3dL1LkYnZM.OVXuVdnnaKVDlLYT92dRwOzDZ5XiVCe."
BCRYPT = "$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a"


def test_parse_ocpasswd_output() -> None:
    entries = parse_passwd(OCPASSWD_LINE)
    assert entries == {"alice": PasswdEntry("alice", ["grp"], OCPASSWD_LINE.strip().split(":")[2])}
    assert verify_password(entries["alice"], "secret")
    assert not verify_password(entries["alice"], "Secret")


def test_parse_rules_like_ocserv() -> None:
    text = (
        "abc\n"  # shorter than 5 characters: ignored
        "bob:*:$1$x$y\r\n"  # CRLF tolerated, '*' means no group
        "carol: sales , eng ,x,, ops:HASH:trailing\n"  # trimmed, one-char/empty skipped
        "nohash:grp\n"  # no hash field: not a usable entry
        ":grp:HASH\n"  # empty user name
        "bob:other:SECOND\n"  # first line for a user wins
        "dave::\n"  # empty hash (OTP-only user in ocserv)
        "erin:g1,g2:!$5$abc$def"  # no final newline; locked
    )
    entries = parse_passwd(text)
    assert list(entries) == ["bob", "carol", "dave", "erin"]
    assert entries["bob"] == PasswdEntry("bob", [], "$1$x$y")
    assert entries["carol"] == PasswdEntry("carol", ["sales", "eng", "ops"], "HASH")
    assert entries["dave"].hash == ""
    assert entries["erin"].groups == ["g1", "g2"]
    assert entries["erin"].locked
    assert not entries["bob"].locked


def test_short_last_line_without_newline_is_ignored() -> None:
    assert parse_passwd("a:b:") == {}
    assert parse_passwd("a:b:\n") == {"a": PasswdEntry("a", [], "")}


def test_only_lf_ends_a_line() -> None:
    entries = parse_passwd("u\u2028x:*:H\x0bI\nv\x85:g\x0cg:H2\n")
    assert entries == {
        "u\u2028x": PasswdEntry("u\u2028x", [], "H\x0bI"),
        "v\x85": PasswdEntry("v\x85", ["g\x0cg"], "H2"),
    }


def test_format_round_trip() -> None:
    entries = {
        "alice": PasswdEntry("alice", ["sales", "eng"], "$5$abc$def"),
        "bob": PasswdEntry("bob", [], "!$1$x$y"),
    }
    text = format_passwd(entries)
    assert text == "alice:sales,eng:$5$abc$def\nbob:*:!$1$x$y\n"
    assert parse_passwd(text) == entries


@pytest.mark.parametrize(
    "entry",
    [
        PasswdEntry("a:b", [], "h"),
        PasswdEntry("a\nb", [], "h"),
        PasswdEntry("", [], "h"),
        PasswdEntry("ab", ["x,y"], "h"),
        PasswdEntry("ab", ["x:y"], "h"),
        PasswdEntry("ab", [], "h\n"),
    ],
)
def test_format_refuses_fields_that_would_corrupt_the_file(entry: PasswdEntry) -> None:
    with pytest.raises(PasswdError):
        format_passwd([entry])


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PasswdError, match="cannot read"):
        load_passwd(tmp_path / "nope")


def test_load_keeps_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_bytes(b"caf\xe9:*:HASH\nbob:*:H2\n")
    entries = load_passwd(path)
    assert entries["bob"].hash == "H2"
    write_passwd_atomic(path, entries)
    assert path.read_bytes() == b"caf\xe9:*:HASH\nbob:*:H2\n"


# --------------------------------------------------------------------------- writing


def test_write_atomic_new_file_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    write_passwd_atomic(str(path), [PasswdEntry("alice", [], "$5$a$b")])
    assert path.read_text() == "alice:*:$5$a$b\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "ocpasswd.tmp").exists()


def test_write_atomic_keeps_existing_mode(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("old:*:x\n")
    path.chmod(0o640)
    write_passwd_atomic(path, {"new": PasswdEntry("new", ["grp"], "y")})
    assert path.read_text() == "new:grp:y\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_write_atomic_refuses_when_locked(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("old:*:x\n")
    (tmp_path / "ocpasswd.tmp").write_text("")
    with pytest.raises(PasswdLockedError, match="is locked"):
        write_passwd_atomic(path, [])
    assert path.read_text() == "old:*:x\n"
    assert (tmp_path / "ocpasswd.tmp").exists()  # somebody else's lock is left alone


def test_write_atomic_cleans_up_on_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    with pytest.raises(PasswdError):
        write_passwd_atomic(path, [PasswdEntry("a:b", [], "x")])
    assert not path.exists()
    assert not (tmp_path / "ocpasswd.tmp").exists()


def test_write_atomic_unwritable_directory(tmp_path: Path) -> None:
    with pytest.raises(PasswdError, match="for writing"):
        write_passwd_atomic(tmp_path / "missing-dir" / "ocpasswd", [])


# ------------------------------------------------------------ line-preserving edits


FILE = "# comment line without colon\nalice:a1:H1\nbob:*:H2\nbob:dup:H3\ncarol:c\n"


def test_set_user_replaces_every_line_of_the_user() -> None:
    assert set_user_text(FILE, "bob", "grp", "NEW") == (
        "alice:a1:H1\nbob:grp:NEW\nbob:grp:NEW\ncarol:c\n"
    )


def test_set_user_appends_and_fixes_missing_newline() -> None:
    assert set_user_text("alice:*:H1", "dave", "*", "H4") == "alice:*:H1\ndave:*:H4\n"
    assert set_user_text("", "dave", "g1,g2", "H4") == "dave:g1,g2:H4\n"


def test_delete_lock_unlock() -> None:
    assert delete_user_text(FILE, "bob") == "alice:a1:H1\ncarol:c\n"
    locked = lock_user_text(FILE, "alice")
    assert locked == "alice:a1:!H1\nbob:*:H2\nbob:dup:H3\ncarol:c\n"
    assert lock_user_text(locked, "alice") == locked
    assert unlock_user_text(locked, "alice") == "alice:a1:H1\nbob:*:H2\nbob:dup:H3\ncarol:c\n"
    # A line of the user without a hash field is dropped, as ocpasswd does.
    assert lock_user_text(FILE, "carol") == "alice:a1:H1\nbob:*:H2\nbob:dup:H3\n"
    assert unlock_user_text(FILE, "nobody") == "alice:a1:H1\nbob:*:H2\nbob:dup:H3\ncarol:c\n"


# --------------------------------------------------------------------------- hashing


def test_hash_password_format_like_ocpasswd() -> None:
    value = hash_password("secret")
    prefix, scheme, salt, digest = value.split("$")
    assert (prefix, scheme) == ("", "5")
    assert len(salt) == 16
    assert set(salt) <= set(SALT_ALPHABET)
    assert len(digest) == 43
    assert hash_password("secret") != value  # fresh salt each time
    assert verify_password(PasswdEntry("u", [], value), "secret")
    assert verify_password(PasswdEntry("u", [], hash_password(b"\xff\xfe")), b"\xff\xfe")


def test_hash_verified_by_system_crypt() -> None:
    """What ocserv itself would compute: crypt(password, hash) == hash."""
    crypt_rn = passwd._libcrypt()
    if crypt_rn is None:
        require_library("libcrypt.so.1", "libcrypt1")
        fail("libcrypt.so.1 loads but has no crypt_rn")
    import ctypes

    value = hash_password("pässword").encode()
    buf = ctypes.create_string_buffer(32768)
    assert crypt_rn("pässword".encode(), value, buf, 32768) == value


@pytest.mark.parametrize("value", [MD5, SHA512, OCPASSWD_LINE.split(":")[2].strip()])
def test_verify_passlib_schemes(value: str) -> None:
    assert verify_password(PasswdEntry("u", [], value), "secret")
    assert not verify_password(PasswdEntry("u", [], value), "secret ")


@pytest.mark.parametrize("value", [YESCRYPT, BCRYPT])
def test_verify_libcrypt_schemes(value: str) -> None:
    if passwd._libcrypt() is None:
        assert not verify_password(PasswdEntry("u", [], value), "secret")
        return
    assert verify_password(PasswdEntry("u", [], value), "secret")
    assert not verify_password(PasswdEntry("u", [], value), "wrong")
    assert not verify_password(PasswdEntry("u", [], value), "sec\0ret")


@pytest.mark.parametrize(
    "entry",
    [
        None,
        PasswdEntry("u", [], ""),
        PasswdEntry("u", [], "!" + MD5),
        PasswdEntry("u", [], "$5$broken"),
        PasswdEntry("u", [], "$5$rounds=abc$x$y"),
        PasswdEntry("u", [], "*"),
        PasswdEntry("u", [], "$unknown$x"),
    ],
)
def test_verify_refuses(entry: PasswdEntry | None) -> None:
    assert not verify_password(entry, "secret")
    assert not verify_password(entry, "")
    assert not verify_password(entry, "a\0b")


def test_unknown_user_costs_a_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = passwd.sha256_crypt.verify

    def spy(secret: str | bytes, hash_: str) -> bool:
        calls.append(hash_)
        return bool(real(secret, hash_))

    monkeypatch.setattr(passwd.sha256_crypt, "verify", spy)
    assert not verify_password(None, "secret")
    assert not verify_password(PasswdEntry("u", [], "!" + MD5), "secret")
    assert len(calls) == 2


def test_unknown_user_takes_about_as_long_as_a_real_one() -> None:
    real = PasswdEntry("alice", [], OCPASSWD_LINE.split(":")[2].strip())

    def timed(entry: PasswdEntry | None) -> float:
        start = time.perf_counter()
        for _ in range(20):
            verify_password(entry, "wrong")
        return time.perf_counter() - start

    timed(real)
    known, unknown = timed(real), timed(None)
    assert 0.5 < unknown / known < 2.0


# --------------------------------------------------------------------------- fuzz

_line_parts = st.sampled_from(
    ["alice", "bob", ":", ",", " ", "*", "\n", "\r\n", "\r", "$5$", "!", "grp", "x", "\x00", "é"]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(_line_parts, max_size=60).map("".join)))
def test_fuzz_parse_passwd(text: str) -> None:
    try:
        entries = parse_passwd(text)
    except PasswdError:
        return
    for name, entry in entries.items():
        assert name == entry.username and name
        assert ":" not in name
        assert all(len(group) > 1 and "," not in group for group in entry.groups)


_name = (
    st.text(
        alphabet=st.characters(blacklist_characters=":,\r\n\x00"),
        min_size=2,
        max_size=12,
    )
    .map(str.strip)
    .filter(lambda s: len(s) > 1)
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_name, st.tuples(st.lists(_name, max_size=3), _name), max_size=5))
def test_fuzz_format_parse_round_trip(raw: dict[str, tuple[list[str], str]]) -> None:
    entries = {user: PasswdEntry(user, groups, hash_) for user, (groups, hash_) in raw.items()}
    assert parse_passwd(format_passwd(entries)) == entries


def test_write_then_load(tmp_path: Path) -> None:
    path = tmp_path / "f"
    entries = {"u1": PasswdEntry("u1", ["g1"], hash_password("pw1"))}
    write_passwd_atomic(path, entries)
    loaded = load_passwd(os.fspath(path))
    assert loaded == entries
    assert verify_password(loaded["u1"], "pw1")
