"""Does this CPU encrypt AES in hardware? It decides our preferred AEAD.

On a Raspberry Pi 4 (Cortex-A72 without the crypto extensions) AES-GCM in software is
several times slower than ChaCha20-Poly1305, while on CPUs with AES instructions it is the
other way round. GnuTLS (hence ocserv) moves ChaCha20 to the front of its default order on
such CPUs; we do the same for TLS and DTLS (docs/tuning.md has the measured figures).

The answer follows what the crypto library will really use: on x86 an ``OPENSSL_ia32cap``
mask that hides AES-NI from OpenSSL counts as "no AES", since OpenSSL then runs AES in
software.
"""

from __future__ import annotations

import functools
import os

_AESNI_BIT = 1 << 57  # CPUID.1:ECX bit 25 in OpenSSL's first capability word


def aes_in_cpuinfo(cpuinfo: str) -> bool | None:
    """True/False from the ``flags`` (x86) or ``Features`` (arm64) lines; None if neither."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return "aes" in value.split()
    return None


def openssl_hides_aesni(ia32cap: str | None) -> bool:
    """Whether an ``OPENSSL_ia32cap`` value of the ``~mask`` form clears the AES-NI bit
    (OPENSSL_ia32cap(3)); other forms are left to OpenSSL and not second-guessed here."""
    first = (ia32cap or "").split(":", 1)[0].strip()
    if not first.startswith("~"):
        return False
    try:
        return bool(int(first[1:], 0) & _AESNI_BIT)
    except ValueError:
        return False  # OpenSSL ignores a value it cannot parse, and so do we


@functools.cache
def aes_accelerated() -> bool:
    """This machine's answer; unknown CPUs are assumed to have AES (the common case)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            found = aes_in_cpuinfo(handle.read())
    except OSError:
        found = None
    if found is None:
        return True
    return found and not openssl_hides_aesni(os.environ.get("OPENSSL_ia32cap"))
