"""The one-time setup code: format, forgiving input, constant-time check, file handling."""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.firstboot import setupcode
from appliance.firstboot.setupcode import (
    ALPHABET,
    SetupCodeError,
    SetupCodeStore,
    codes_match,
    generate_code,
    normalize,
)


def test_format_and_entropy() -> None:
    codes = {generate_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert re.fullmatch(r"([0-9A-HJKMNP-TV-Z]{4}-){3}[0-9A-HJKMNP-TV-Z]{4}", code)
    assert len(ALPHABET) == 32 and not set("ILOU") & set(ALPHABET)


@pytest.mark.parametrize("typed", ["7kq3-m9xd-2hpw-tf6r", " 7KQ3 M9XD 2HPW TF6R ",
                                   "7KQ3M9XD2HPWTF6R", "7KQ3_M9XD.2HPW-TF6R\n"])
def test_forgiving_input(typed: str) -> None:
    assert codes_match("7KQ3-M9XD-2HPW-TF6R", typed)


def test_look_alikes_map_to_digits() -> None:
    assert normalize("O1IL-0") == "0111" + "0"
    assert codes_match("0111-0000-1111-2222", "OIlL-oOoO-iIiI-2222")
    assert not codes_match("7KQ3-M9XD-2HPW-TF6R", "7KQ3-M9XD-2HPW-TF6S")
    assert not codes_match("7KQ3-M9XD-2HPW-TF6R", "7KQ3-M9XD-2HPW")


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(setupcode.hmac, "compare_digest", spy)
    codes_match("AAAA-AAAA-AAAA-AAAA", "bbbb")
    assert calls == [(b"AAAAAAAAAAAAAAAA", b"BBBB")]


def test_store_creates_once_and_invalidates(tmp_path: Path) -> None:
    store = SetupCodeStore(tmp_path / "boot" / "setup-code.txt")
    assert store.read() is None and not store.verify("anything")
    code = store.ensure()
    assert store.ensure() == code and store.read() == code
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert code in store.path.read_text()
    assert store.verify(code.lower()) and not store.verify("0000-0000-0000-0000")
    store.invalidate()
    assert not store.path.exists() and not store.verify(code)
    store.invalidate()  # idempotent


def test_corrupt_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "setup-code.txt"
    path.write_text("# comment only\nnot-a-code!\n")
    store = SetupCodeStore(path)
    with pytest.raises(SetupCodeError):
        store.read()
    code = store.ensure()
    assert store.read() == code
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(SetupCodeError):
        store.read()
    os.unlink(path)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_hostile_input_never_raises(text: str) -> None:
    assert codes_match("7KQ3-M9XD-2HPW-TF6R", text) in (True, False)
    assert len(normalize(text)) <= 64
