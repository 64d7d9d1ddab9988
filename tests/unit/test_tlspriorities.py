"""tls-priorities: the GnuTLS string's meaning, and what a real OpenSSL client then gets."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL._util import lib

from appliance.vpn.config import ConfigError, parse_config
from appliance.vpn.protocol.tls.credentials import load_credentials
from appliance.vpn.protocol.tls.handshake import (
    HandshakeError,
    ServerHandshake,
    make_server_context,
)
from appliance.vpn.protocol.tls.priorities import TLS12, TLS13, PriorityError, parse_priorities
from tests.support.tls import pump_handshake


def test_ocserv_default_and_sample_strings() -> None:
    default = parse_priorities("NORMAL:%SERVER_PRECEDENCE:%COMPAT")
    assert (default.min_version, default.max_version) == (TLS12, TLS13)
    assert default.server_preference
    assert default.ciphers == ("AES-256-GCM", "CHACHA20-POLY1305", "AES-128-GCM")
    sample = parse_priorities(
        "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1:-VERS-TLS1.3")
    assert (sample.min_version, sample.max_version) == (TLS12, TLS12)
    assert sample.inert == ()


def test_none_base_builds_up_from_nothing() -> None:
    policy = parse_priorities("NONE:+VERS-TLS1.2:+AES-128-GCM:+ECDHE-RSA:+SHA256:+CURVE-SECP256R1"
                              ":+SIGN-ALL:+COMP-NULL")
    assert (policy.min_version, policy.max_version) == (TLS12, TLS12)
    assert policy.ciphers == ("AES-128-GCM",)
    assert policy.groups == ("P-256",)
    assert not policy.server_preference
    assert "ECDHE-RSA" in policy.inert
    assert policy.tls12_cipher_list == "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"


def test_removing_and_reordering_ciphers() -> None:
    policy = parse_priorities("PERFORMANCE:-CHACHA20-POLY1305:+AES-256-GCM")
    assert policy.ciphers == ("AES-128-GCM", "AES-256-GCM")
    assert policy.tls13_suites == "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"
    assert parse_priorities("SECURE256").ciphers == ("AES-256-GCM", "CHACHA20-POLY1305")
    assert parse_priorities("NORMAL:-CIPHER-ALL:+CHACHA20-POLY1305").ciphers == (
        "CHACHA20-POLY1305",)
    assert parse_priorities("NORMAL:-VERS-TLS1.2").min_version == TLS13


@pytest.mark.parametrize(("text", "words"), [
    ("", "empty"),
    ("NORMAL:+FOO-BAR", "'FOO-BAR'"),
    ("NORMAL:%NOPE", "%NOPE"),
    ("BOGUS:+VERS-TLS1.2", "base keyword"),
    ("@SYSTEM", "system-wide"),
    ("NORMAL:-VERS-ALL", "disables both"),
    ("NORMAL:-AES-256-GCM:-AES-128-GCM:-CHACHA20-POLY1305:+AES-128-CBC", "no AES-GCM"),
    ("NONE:+VERS-TLS1.3:+AES-128-GCM", "no elliptic-curve group"),
    ("NORMAL:+GROUP-BRAINPOOL", "unknown group"),
    ("NORMAL:%PROFILE_HIGH", "minimum key sizes. is not implemented"),
    ("NORMAL:-SIGN-RSA-PSS-SHA256", "restricting signature algorithms is not implemented"),
])
def test_bad_strings_name_the_problem(text: str, words: str) -> None:
    with pytest.raises(PriorityError, match=words):
        parse_priorities(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["NORMAL", "NONE", "+VERS-TLS1.3", "-VERS-TLS1.2", "+AES-128-GCM",
                                 "-CIPHER-ALL", "%SERVER_PRECEDENCE", "+GROUP-X25519",
                                 "-GROUP-ALL", "+SHA1", "!", "%", "+", "x"]) | st.text(max_size=8),
                max_size=8))
def test_any_string_gives_a_policy_or_priority_error(tokens: list[str]) -> None:
    try:
        policy = parse_priorities(":".join(tokens))
    except PriorityError:
        return
    assert policy.ciphers and policy.groups and policy.min_version <= policy.max_version


def test_bad_string_is_a_config_error_with_the_line() -> None:
    text = ("auth = plain[passwd=/dev/null]\nipv4-network = 203.0.113.0/24\n"
            "tls-priorities = NORMAL:+TYPO\n")
    with pytest.raises(ConfigError, match=r"test.conf:3: tls-priorities: .*TYPO"):
        parse_config(text, "test.conf")


def test_groups_setter_symbol_is_present() -> None:
    """make_server_context reaches SSL_CTX_set1_curves_list through cryptography's cffi
    bindings; if a new release drops it, this fails before any server does."""
    assert hasattr(lib, "SSL_CTX_set1_curves_list")


def _handshake(certfiles, priorities, client_ciphers=None, version=None):
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        cctx.minimum_version = cctx.maximum_version = version
    if client_ciphers:
        cctx.set_ciphers(client_ciphers)
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(cin, cout, server_hostname="vpn.test")
    hs = ServerHandshake(make_server_context(load_credentials(*certfiles), priorities))
    pump_handshake(client, cin, cout, hs)
    assert hs.result is not None
    return hs.result.description


def test_openssl_client_gets_what_the_string_says(certfiles) -> None:
    # server precedence: the client prefers AES-128, the server's order wins
    client_order = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
    tls12 = ssl.TLSVersion.TLSv1_2
    assert "AES-256-GCM" in _handshake(certfiles, "NORMAL:%SERVER_PRECEDENCE", client_order,
                                       tls12)
    assert "AES-128-GCM" in _handshake(certfiles, "NORMAL", client_order, tls12)
    # version switches
    assert _handshake(certfiles, "NORMAL:-VERS-TLS1.3").startswith("(TLS1.2)")
    assert _handshake(certfiles, "NORMAL").startswith("(TLS1.3)")
    with pytest.raises((HandshakeError, ssl.SSLError)):
        _handshake(certfiles, "NORMAL:-VERS-TLS1.3", version=ssl.TLSVersion.TLSv1_3)
    # a single TLS 1.3 suite
    assert "CHACHA20-POLY1305" in _handshake(certfiles, "NORMAL:-CIPHER-ALL:+CHACHA20-POLY1305")
