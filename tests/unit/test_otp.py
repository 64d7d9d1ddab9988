"""auth/otp.py: RFC 4226/6238 vectors, liboath's users-file format, window, replay and PINs.

The last tests hand the same file back and forth between auth/otp.py and the real liboath
(Debian's liboath0, which ocserv uses): each must read what the other wrote, and neither
may accept a code the other already used.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.vpn.auth import otp
from appliance.vpn.auth.otp import check, hotp, local_epoch, parse_usersfile, totp

RFC_KEY = b"12345678901234567890"
KEY_HEX = RFC_KEY.hex()
NOW = 1_700_000_000.0  # a fixed clock: 2023-11-14T22:13:20Z


# ---------------------------------------------------------------- the algorithms


def test_rfc4226_appendix_d() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922",
                "162583", "399871", "520489"]
    assert [hotp(RFC_KEY, c) for c in range(10)] == expected


@pytest.mark.parametrize("digest, key", [
    ("sha1", RFC_KEY),
    ("sha256", b"12345678901234567890123456789012"),
    ("sha512", b"1234567890123456789012345678901234567890123456789012345678901234"),
])
def test_rfc6238_appendix_b(digest: str, key: bytes) -> None:
    times = [59, 1111111109, 1111111111, 1234567890, 2000000000, 20000000000]
    expected = {
        "sha1": ["94287082", "07081804", "14050471", "89005924", "69279037", "65353130"],
        "sha256": ["46119246", "68084774", "67062674", "91819424", "90698825", "77737706"],
        "sha512": ["90693936", "25091201", "99943326", "93441116", "38618901", "47863826"],
    }[digest]
    assert [totp(key, t, 30, 8, digest) for t in times] == expected


def test_hotp_counter_range() -> None:
    with pytest.raises(ValueError):
        hotp(RFC_KEY, -1)
    with pytest.raises(ValueError):
        hotp(RFC_KEY, 1 << 64)


# ---------------------------------------------------------------- the file


def users(text: str) -> otp.UsersFile:
    return parse_usersfile(text)


def verify(text: str, answer: str, user: str = "alice", now: float = NOW,
           password_verified: bool = True, **kw: object) -> otp.OtpVerdict:
    return check(users(text), user, answer, now, password_verified=password_verified,
                 stamp=lambda t: "2023-11-14T23:13:20L", **kw)  # type: ignore[arg-type]


def test_types_and_digits() -> None:
    f = users(f"HOTP a - {KEY_HEX}\nHOTP/E b - {KEY_HEX}\nHOTP/E/8 c - {KEY_HEX}\n"
              f"HOTP/T30 d - {KEY_HEX}\nHOTP/T60/7 e + {KEY_HEX}\nHOTP/T30/8 f 1234 "
              f"{KEY_HEX}\n")
    assert not f.errors
    assert [(t.user, t.step, t.digits, t.pin) for t in f.tokens] == [
        ("a", 0, 6, "-"), ("b", 0, 6, "-"), ("c", 0, 8, "-"), ("d", 30, 6, "-"),
        ("e", 60, 7, "+"), ("f", 30, 8, "1234")]


@pytest.mark.parametrize("line, fragment", [
    (f"TOTP alice - {KEY_HEX}", "unknown token type"),
    (f"HOTP/T90 alice - {KEY_HEX}", "unknown token type"),
    (f"HOTP/E/9 alice - {KEY_HEX}", "unknown token type"),
    ("HOTP alice -", "expected TYPE USER PIN SECRET"),
    ("HOTP alice - 123", "hex digits"),
    ("HOTP alice - zz", "hex digits"),
    (f"HOTP alice - {KEY_HEX} x", "counter field is not a number"),
    (f"HOTP alice - {KEY_HEX} -1", "counter field is not a number"),
    (f"HOTP alice - {KEY_HEX} 3 755224", "no time stamp"),
    (f"HOTP alice - {KEY_HEX} 3 755224 yesterday", "bad time stamp"),
    (f"HOTP/T30 alice - {KEY_HEX} 0", "needs the last code and time"),
    (f"HOTP alice - {KEY_HEX} 3 755224 2023-11-14T23:13:20L more", "unexpected text"),
])
def test_malformed_line_disables_its_user_only(line: str, fragment: str) -> None:
    text = f"{line}\nHOTP bob - {KEY_HEX}\n"
    result = verify(text, hotp(RFC_KEY, 0))
    assert not result.ok and fragment in result.reason and result.line == 1
    assert verify(text, hotp(RFC_KEY, 0), user="bob").ok  # the other user is unharmed


def test_line_without_a_user_disables_everyone() -> None:
    text = f"garbage\nHOTP bob - {KEY_HEX}\n"
    result = verify(text, hotp(RFC_KEY, 0), user="bob")
    assert not result.ok and result.line == 1


def test_unknown_user_and_no_file_lines() -> None:
    assert verify("# only a comment\n\n", "755224").reason.startswith("no token")
    assert not verify(f"HOTP bob - {KEY_HEX}\n", "755224").ok


# ---------------------------------------------------------------- HOTP


def test_hotp_rewrites_only_its_line_and_never_takes_a_code_twice() -> None:
    text = (f"# tokens\r\nHOTP bob - {KEY_HEX} 7\r\n\nHOTP alice  -\t{KEY_HEX}\r\n"
            "# end, no newline")
    first = verify(text, hotp(RFC_KEY, 3))
    assert first.ok and first.line == 4 and first.text is not None
    assert first.text.splitlines(keepends=True) == [
        "# tokens\r\n", f"HOTP bob - {KEY_HEX} 7\r\n", "\n",
        f"HOTP alice  -\t{KEY_HEX}\t3\t{hotp(RFC_KEY, 3)}\t2023-11-14T23:13:20L\r\n",
        "# end, no newline"]
    again = verify(first.text, hotp(RFC_KEY, 3))
    assert not again.ok and "replayed" in again.reason
    assert not verify(first.text, hotp(RFC_KEY, 2)).ok  # older than the last one used
    assert not verify(first.text, hotp(RFC_KEY, 1)).ok
    later = verify(first.text, hotp(RFC_KEY, 4))
    assert later.ok and later.text is not None
    assert not verify(later.text, hotp(RFC_KEY, 4)).ok


def test_hotp_window_is_twenty_ahead() -> None:
    text = f"HOTP alice - {KEY_HEX} 5\n"  # a counter without a last code: 5 is unused
    assert verify(text, hotp(RFC_KEY, 5)).ok
    assert verify(text, hotp(RFC_KEY, 25)).ok
    assert not verify(text, hotp(RFC_KEY, 26)).ok
    assert not verify(text, hotp(RFC_KEY, 4)).ok


def test_digits_must_match_the_type() -> None:
    text = f"HOTP/E/8 alice - {KEY_HEX}\n"
    assert verify(text, hotp(RFC_KEY, 0, 8)).ok
    assert not verify(text, hotp(RFC_KEY, 0, 6)).ok
    assert not verify(f"HOTP alice - {KEY_HEX}\n", hotp(RFC_KEY, 0, 8)).ok
    assert not verify(f"HOTP alice - {KEY_HEX}\n", "75522x").ok
    assert not verify(f"HOTP alice - {KEY_HEX}\n", "７５５２２４").ok  # fullwidth digits


def test_several_tokens_for_one_user() -> None:
    other = bytes(range(20))
    text = f"HOTP alice - {KEY_HEX}\nHOTP/T30 alice - {other.hex()}\n"
    result = verify(text, totp(other, NOW))
    assert result.ok and result.line == 2
    assert result.text is not None and result.text.startswith(f"HOTP alice - {KEY_HEX}\n")


# ---------------------------------------------------------------- TOTP


def test_totp_window_is_twenty_steps_each_way() -> None:
    text = f"HOTP/T30 alice - {KEY_HEX}\n"
    for offset in (0, 20, -20):
        assert verify(text, totp(RFC_KEY, NOW + 30 * offset)).ok, offset
    for offset in (21, -21):
        assert not verify(text, totp(RFC_KEY, NOW + 30 * offset)).ok, offset
    assert verify(f"HOTP/T60/8 alice - {KEY_HEX}\n",
                  totp(RFC_KEY, NOW - 60 * 20, 60, 8)).ok


def test_totp_replay_within_the_window_is_refused() -> None:
    text = f"HOTP/T30 alice - {KEY_HEX}\n"
    now = datetime.datetime(2023, 11, 14, 23, 13, 20).timestamp()  # this machine's zone

    def at(t: float, text: str, code: str) -> otp.OtpVerdict:
        return check(users(text), "alice", code, t, password_verified=True)

    first = at(now, text, totp(RFC_KEY, now + 60))  # a code two steps ahead
    assert first.ok and first.text is not None
    assert "\t2\t" in first.text  # the step, relative to the time stamp's, as liboath
    # the same code later, still inside its window: refused
    assert not at(now + 45, first.text, totp(RFC_KEY, now + 60)).ok
    # a code of an earlier step than the one used: refused though never used itself
    assert not at(now + 5, first.text, totp(RFC_KEY, now + 30)).ok
    assert not at(now + 5, first.text, totp(RFC_KEY, now)).ok
    later = at(now + 90, first.text, totp(RFC_KEY, now + 90))
    assert later.ok and later.text is not None
    assert not at(now + 91, later.text, totp(RFC_KEY, now + 90)).ok


def test_ambiguous_local_time_is_read_as_the_later_one(monkeypatch) -> None:
    """In the hour that repeats when DST ends, a stamp could mean either pass: reading the
    earlier would under-count the used step by 120 and let old codes back in."""
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")  # POSIX rule: no tzdata needed
    time.tzset()
    try:
        stamp = datetime.datetime(2023, 10, 29, 2, 30)
        assert local_epoch(stamp) == datetime.datetime(
            2023, 10, 29, 1, 30, tzinfo=datetime.UTC).timestamp()
        # two logins in the second 02:xx: the stamp of the last one reads as the later
        t1 = datetime.datetime(2023, 10, 29, 1, 20, tzinfo=datetime.UTC).timestamp()
        text = f"HOTP/T30 alice - {KEY_HEX}\n"
        first = check(users(text), "alice", totp(RFC_KEY, t1), t1, password_verified=True)
        assert first.ok and first.text is not None and "02:20:00L" in first.text
        second = check(users(first.text), "alice", totp(RFC_KEY, t1 + 300), t1 + 300,
                       password_verified=True)
        assert second.ok and second.text is not None
        assert not check(users(second.text), "alice", totp(RFC_KEY, t1), t1 + 330,
                         password_verified=True).ok
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# ---------------------------------------------------------------- PIN field


def test_pin_field() -> None:
    code = hotp(RFC_KEY, 0)
    assert verify(f"HOTP alice - {KEY_HEX}\n", code).ok
    assert not verify(f"HOTP alice - {KEY_HEX}\n", "1" + code).ok
    # "+": the password was checked elsewhere, here by passwd= in the same login
    assert verify(f"HOTP alice + {KEY_HEX}\n", code).ok
    plus = verify(f"HOTP alice + {KEY_HEX}\n", code, password_verified=False)
    assert not plus.ok and "'+'" in plus.reason
    # a static PIN is typed in front of the code
    pinned = f"HOTP alice s3cret {KEY_HEX}\n"
    ok = verify(pinned, "s3cret" + code)
    assert ok.ok and ok.text is not None and ok.text.split("\t")[2] == code  # no PIN kept
    assert verify(pinned, "wrong" + code).reason == "wrong PIN"
    assert not verify(pinned, code).ok


def test_reasons_never_hold_the_code_or_pin() -> None:
    code = hotp(RFC_KEY, 0)
    for text, answer in ((f"HOTP alice s3cret {KEY_HEX}\n", "s3cre" + code),
                         (f"HOTP alice - {KEY_HEX} 0 {code} 2023-11-14T23:13:20L\n", code)):
        result = verify(text, answer)
        assert not result.ok and code not in result.reason and "s3cret" not in result.reason


# ---------------------------------------------------------------- with the real liboath


@pytest.fixture(scope="module")
def liboath() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("liboath.so.0")
    except OSError:
        pytest.fail("liboath.so.0 is missing: apt-get install oathtool (it brings liboath0)")
    lib.oath_init()
    lib.oath_authenticate_usersfile.argtypes = [
        ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
        ctypes.c_char_p, ctypes.POINTER(ctypes.c_long)]
    lib.oath_authenticate_usersfile.restype = ctypes.c_int
    return lib


@pytest.fixture
def usersfile(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "users.oath"
    yield path


def oath_ok(lib: ctypes.CDLL, path: Path, user: str, code: str) -> bool:
    last = ctypes.c_long(0)
    rc = lib.oath_authenticate_usersfile(str(path).encode(), user.encode(), code.encode(),
                                         otp.WINDOW, None, ctypes.byref(last))
    return rc == 0


def ours(path: Path, user: str, code: str) -> bool:
    result = check(users(path.read_text()), user, code, time.time(), password_verified=True)
    if result.ok:
        assert result.text is not None
        path.write_text(result.text)
    return result.ok


def test_hotp_file_shared_with_liboath(liboath: ctypes.CDLL, usersfile: Path) -> None:
    usersfile.write_text(f"# shared\nHOTP bob - {KEY_HEX}\nHOTP alice - {KEY_HEX}\n")
    assert ours(usersfile, "alice", hotp(RFC_KEY, 3))
    assert not oath_ok(liboath, usersfile, "alice", hotp(RFC_KEY, 3))  # replay for liboath
    assert oath_ok(liboath, usersfile, "alice", hotp(RFC_KEY, 4))
    assert not ours(usersfile, "alice", hotp(RFC_KEY, 4))  # replay for us, liboath wrote it
    assert not ours(usersfile, "alice", hotp(RFC_KEY, 2))
    assert ours(usersfile, "alice", hotp(RFC_KEY, 6))
    assert oath_ok(liboath, usersfile, "bob", hotp(RFC_KEY, 0))  # the other line still works
    assert usersfile.read_text().startswith("# shared\n")


def test_totp_file_shared_with_liboath(liboath: ctypes.CDLL, usersfile: Path) -> None:
    usersfile.write_text(f"HOTP/T30 alice - {KEY_HEX}\n")
    now = time.time()
    assert ours(usersfile, "alice", totp(RFC_KEY, now + 60))
    assert not oath_ok(liboath, usersfile, "alice", totp(RFC_KEY, now + 60))
    assert not oath_ok(liboath, usersfile, "alice", totp(RFC_KEY, now + 30))  # older step
    assert oath_ok(liboath, usersfile, "alice", totp(RFC_KEY, now + 120))
    assert not ours(usersfile, "alice", totp(RFC_KEY, now + 120))
    assert not ours(usersfile, "alice", totp(RFC_KEY, now + 90))
    # liboath 2.6.7 records the step as the old offset plus the new one (2 + 4 here), so
    # what it wrote blocks steps up to +6; we read the file as liboath does
    assert ours(usersfile, "alice", totp(RFC_KEY, now + 210))
    assert os.stat(usersfile).st_size > 0


def test_lines_and_fields_split_like_liboath() -> None:
    """LF ends a line and only " \\t\\r\\n" separate fields (getline, strtok)."""
    f = users(f"HOTP\x1falice - {KEY_HEX}\nHOTP bob\u2028x - {KEY_HEX}\x0bHOTP carol - 00\n")
    assert [t.user for t in f.tokens] == []
    assert [(e.line, e.user) for e in f.errors] == [(0, "-"), (1, "bob\u2028x")]
