"""AES detection: the answer that picks ChaCha20 first on a Raspberry Pi 4."""

from __future__ import annotations

import pytest

from appliance.vpn.protocol.tls.cpu import aes_in_cpuinfo, openssl_hides_aesni
from appliance.vpn.protocol.tls.priorities import parse_priorities

X86 = "processor\t: 0\nflags\t\t: fpu vme sse2 aes avx pclmulqdq\n"
PI4 = ("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
       "CPU implementer\t: 0x41\nCPU part\t: 0xd08\n")
PI5 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"


@pytest.mark.parametrize(("text", "expected"), [
    (X86, True), (PI4, False), (PI5, True),
    ("flags\t: fpu sse2 aesni_fake\n", False),
    ("model name\t: something\n", None), ("", None),
])
def test_aes_in_cpuinfo(text: str, expected: bool | None) -> None:
    assert aes_in_cpuinfo(text) is expected


@pytest.mark.parametrize(("value", "hidden"), [
    ("~0x200000000000000", True),
    ("~0x200000200000000", True),  # AES-NI and PCLMULQDQ, the usual recipe
    ("~0x200000000000000:~0x0", True),
    ("~0x100000000000000", False),
    ("0x200000000000000", False),  # not the clearing form: left to OpenSSL
    ("~zzz", False), ("", False), (None, False),
])
def test_openssl_ia32cap(value: str | None, hidden: bool) -> None:
    assert openssl_hides_aesni(value) is hidden


def test_no_aes_puts_chacha_first_unless_the_admin_orders() -> None:
    assert parse_priorities("NORMAL", aes_hw=False).ciphers[0] == "CHACHA20-POLY1305"
    assert parse_priorities("NORMAL", aes_hw=True).ciphers[0] == "AES-256-GCM"
    explicit = parse_priorities("NORMAL:-CIPHER-ALL:+AES-128-GCM", aes_hw=False)
    assert explicit.ciphers == ("AES-128-GCM",)
