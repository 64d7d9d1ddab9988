"""Password rules: length, common passwords and their variants, names, patterns."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.web.passwords import (
    COMMON_PASSWORDS,
    MAX_LENGTH,
    MIN_LENGTH,
    check_password,
    estimate_bits,
)


@pytest.mark.parametrize("password", [
    "correct horse battery staple",
    "violet Ocean lantern 42 quietly",
    "Tr0ub4dor&3-xylophone",
    "zq8#Lm2!vR5t",
    "mañana-kaffee-Fjord-93",
])
def test_strong_passwords_pass(password: str) -> None:
    result = check_password(password, username="alice")
    assert result.ok, result.problems
    assert result.bits >= 45


@pytest.mark.parametrize("password, reason", [
    ("short1!A", "at least 12"),
    ("password", "at least 12"),
    ("Password1234!", "common"),
    ("P@ssw0rd2024", "common"),
    ("!!qwerty12345", "common"),
    ("passwordpassword", "common"),
    ("raspberrypi123", "common"),
    ("aaaaaaaaaaaaaaaa", "different characters"),
    ("123456789012", "pattern|common"),
    ("qwertyuiopasdf", "pattern|common"),
    ("zxcvbnm,./;'[]", "pattern|common"),
    ("Sunshine2024!", "common"),
    ("abcdefghijklmnop", "pattern"),
    ("alice-is-the-best-1", "user name"),
    ("tab\tinside-password", "Control characters"),
])
def test_weak_passwords_fail_with_a_reason(password: str, reason: str) -> None:
    result = check_password(password, username="alice")
    assert not result.ok
    reasons = reason.lower().split("|")
    assert any(r in p.lower() for p in result.problems for r in reasons), result.problems


def test_context_words_are_refused() -> None:
    assert not check_password("myocgate-router-99", context=["ocgate"]).ok
    assert check_password("myocgate-router-99").ok


def test_length_limits() -> None:
    assert not check_password("x" * (MAX_LENGTH + 1)).ok
    assert any("at least" in p for p in check_password("a1!B" * 2).problems)
    assert MIN_LENGTH == 12


def test_every_common_password_is_refused_even_with_a_suffix() -> None:
    for word in COMMON_PASSWORDS:
        for variant in (word + "24!", "!!" + word.capitalize() + "7", word.upper() + "#1"):
            assert not check_password(variant).ok, variant
        padded = (word * 12)[:max(MIN_LENGTH, len(word))]
        assert not check_password(padded).ok, padded


def test_runs_cost_almost_nothing() -> None:
    assert estimate_bits("abcdefghijkl") < estimate_bits("qzmxnwbvkdle") / 2


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_checker_never_crashes(text: str) -> None:
    result = check_password(text, username=text[:5], context=[text[-4:]])
    assert result.ok == (not result.problems)
    if len(text) < MIN_LENGTH:
        assert not result.ok


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_estimate_is_bounded_by_brute_force(text: str) -> None:
    """Never more than trying every printable character at every position, never zero.

    (It is deliberately not monotonic: appending 'q' to 'ew' makes the keyboard run 'ewq'.)
    """
    bits = estimate_bits(text)
    assert 0 < bits <= len(text) * math.log2(95) + 1e-9
