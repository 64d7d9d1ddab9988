"""ocserv's ``tls-priorities`` (a GnuTLS priority string) translated to OpenSSL settings.

Admins copy priority strings from ocserv guides, so the same string must mean the same
thing here: which TLS versions, which AEAD ciphers in which order, whose preference wins,
which key-exchange groups. GnuTLS refuses a string with an unknown keyword and ocserv then
does not start; we do the same, naming the keyword, so a typo is not silently ignored.

What cannot be honoured is reported, not faked: our record layer is AEAD-only (docs/protocol.md
§2.1 lists what openconnect offers; every version of it offers AES-GCM), so CBC, CCM and
the like are accepted and have no effect, and versions below TLS 1.2 are never enabled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .record import TLS12, TLS13


class PriorityError(ValueError):
    """The priority string is malformed or leaves nothing usable."""


# GnuTLS cipher name -> (OpenSSL TLS 1.2 suites, OpenSSL TLS 1.3 suite)
_AEADS: dict[str, tuple[tuple[str, ...], str]] = {
    "AES-256-GCM": (("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
                    "TLS_AES_256_GCM_SHA384"),
    "CHACHA20-POLY1305": (("ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"),
                          "TLS_CHACHA20_POLY1305_SHA256"),
    "AES-128-GCM": (("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
                    "TLS_AES_128_GCM_SHA256"),
}

# Cipher order of GnuTLS' base keywords (lib/priority.c), restricted to the AEADs we have.
_NORMAL = ("AES-256-GCM", "CHACHA20-POLY1305", "AES-128-GCM")
_BASES: dict[str, tuple[str, ...]] = {
    "NORMAL": _NORMAL,
    "PFS": _NORMAL,
    "SECURE": _NORMAL,
    "SECURE128": _NORMAL,
    "SECURE192": ("AES-256-GCM", "CHACHA20-POLY1305"),
    "SECURE256": ("AES-256-GCM", "CHACHA20-POLY1305"),
    "SUITEB128": ("AES-128-GCM", "AES-256-GCM"),
    "SUITEB192": ("AES-256-GCM",),
    "PERFORMANCE": ("AES-128-GCM", "CHACHA20-POLY1305", "AES-256-GCM"),
    "LEGACY": _NORMAL,
    "NONE": (),
}

# GnuTLS group names -> OpenSSL names; the finite-field groups have no DHE suite here.
_GROUPS = {"X25519": "X25519", "X448": "X448", "SECP256R1": "P-256", "SECP384R1": "P-384",
           "SECP521R1": "P-521"}
_DEFAULT_GROUPS = ("X25519", "P-256", "P-384", "P-521", "X448")
_FFDHE = {"FFDHE2048", "FFDHE3072", "FFDHE4096", "FFDHE6144", "FFDHE8192"}

# Keyword families GnuTLS knows that have no OpenSSL counterpart in an AEAD-only server.
_NO_EFFECT_CIPHERS = {"AES-128-CBC", "AES-256-CBC", "AES-128-CCM", "AES-256-CCM",
                      "AES-128-CCM-8", "AES-256-CCM-8", "CAMELLIA-128-GCM", "CAMELLIA-256-GCM",
                      "CAMELLIA-128-CBC", "CAMELLIA-256-CBC", "3DES-CBC", "ARCFOUR-128",
                      "GOST28147-TC26Z-CNT", "NULL", "AES-128-CFB8", "AES-256-CFB8"}
_NO_EFFECT_PREFIXES = ("MAC-", "SIGN-", "COMP-", "CTYPE-", "KX-")
_NO_EFFECT_WORDS = {"SHA1", "SHA256", "SHA384", "SHA512", "MD5", "AEAD", "UMAC-96", "UMAC-128",
                    "RSA", "DHE-RSA", "DHE-DSS", "ECDHE-RSA", "ECDHE-ECDSA", "RSA-PSK",
                    "DHE-PSK", "ECDHE-PSK", "PSK", "ANON-DH", "ANON-ECDH", "SRP", "SRP-RSA",
                    "SRP-DSS", "RSA-EXPORT", "VKO-GOST-12", "MAC-ALL", "KX-ALL", "SIGN-ALL",
                    "COMP-ALL", "COMP-NULL", "CTYPE-ALL", "CTYPE-X509", "VERS-DTLS-ALL",
                    "VERS-DTLS1.0", "VERS-DTLS1.2", "VERS-DTLS0.9", "VERS-SSL3.0",
                    "VERS-TLS1.0", "VERS-TLS1.1"}
_FLAGS_NO_EFFECT = {"COMPAT", "DUMBFW", "NO_EXTENSIONS", "NO_TICKETS", "NO_TICKETS_TLS12",
                    "NO_SESSION_HASH", "FORCE_ETM", "NO_ETM", "SAFE_RENEGOTIATION",
                    "UNSAFE_RENEGOTIATION", "PARTIAL_RENEGOTIATION", "DISABLE_SAFE_RENEGOTIATION",
                    "LATEST_RECORD_VERSION", "SSL3_RECORD_VERSION", "VERIFY_ALLOW_SIGN_RSA_MD5",
                    "VERIFY_ALLOW_X509_V1_CA_CRT", "VERIFY_DISABLE_CRL_CHECKS",
                    "STATELESS_COMPRESSION",
                    "ALLOW_SMALL_RECORDS", "NO_STATUS_REQUEST", "NO_SHUFFLE_EXTENSIONS",
                    "PROFILE_LOW", "PROFILE_LEGACY"}
# Understood but not implemented, and ignoring them would accept weaker peers than the
# string asks for (issue 15: fail closed): refused with an explanation.
_FLAGS_REFUSED = {"PROFILE_MEDIUM", "PROFILE_HIGH", "PROFILE_ULTRA", "PROFILE_FUTURE"}


@dataclass(frozen=True)
class TlsPolicy:
    """What OpenSSL is told; ``inert`` lists the keywords that changed nothing here."""

    min_version: int = TLS12
    max_version: int = TLS13
    ciphers: tuple[str, ...] = _NORMAL
    server_preference: bool = False
    groups: tuple[str, ...] = _DEFAULT_GROUPS
    inert: tuple[str, ...] = field(default=())

    @property
    def tls12_cipher_list(self) -> str:
        return ":".join(name for c in self.ciphers for name in _AEADS[c][0])

    @property
    def tls13_suites(self) -> str:
        return ":".join(_AEADS[c][1] for c in self.ciphers)

    @property
    def groups_list(self) -> str:
        return ":".join(self.groups)


@dataclass
class _Builder:
    ciphers: list[str]
    versions: set[int] = field(default_factory=lambda: {TLS12, TLS13})
    groups: list[str] = field(default_factory=lambda: list(_DEFAULT_GROUPS))
    server_preference: bool = False
    inert: list[str] = field(default_factory=list)

    def apply(self, token: str) -> None:
        if token.startswith("%"):
            self._flag(token[1:])
        elif token[:1] in "+-!":
            self._modifier(token[0] != "+", token[1:])
        else:
            raise PriorityError(f"unknown priority keyword {token!r}")

    def _flag(self, name: str) -> None:
        if name == "SERVER_PRECEDENCE":
            self.server_preference = True
        elif name in _FLAGS_REFUSED:
            raise PriorityError(f"'%{name}' (minimum key sizes) is not implemented; remove it")
        elif name not in _FLAGS_NO_EFFECT:
            raise PriorityError(f"unknown priority flag '%{name}'")

    def _modifier(self, remove: bool, name: str) -> None:
        if name.startswith("VERS-"):
            self._version(remove, name)
        elif name in _AEADS or name == "CIPHER-ALL":
            self._cipher(remove, name)
        elif name.startswith(("GROUP-", "CURVE-")):
            self._group(remove, name.split("-", 1)[1])
        elif remove and name.startswith("SIGN-") and "SHA1" not in name \
                and "MD5" not in name:  # OpenSSL 3 never signs with those two anyway
            raise PriorityError(f"'-{name}': restricting signature algorithms is not "
                                "implemented; remove it")
        elif (name in _NO_EFFECT_CIPHERS or name in _NO_EFFECT_WORDS
              or name.startswith(_NO_EFFECT_PREFIXES)):
            self.inert.append(name)
        else:
            raise PriorityError(f"unknown priority keyword {name!r}")

    def _version(self, remove: bool, name: str) -> None:
        targets = {"VERS-TLS1.2": {TLS12}, "VERS-TLS1.3": {TLS13},
                   "VERS-ALL": {TLS12, TLS13}, "VERS-TLS-ALL": {TLS12, TLS13}}.get(name)
        if targets is None:
            if name not in _NO_EFFECT_WORDS:
                raise PriorityError(f"unknown protocol version keyword {name!r}")
            if not remove:
                self.inert.append(name)  # TLS < 1.2 is never enabled
            return
        if remove:
            self.versions -= targets
        else:
            self.versions |= targets

    def _cipher(self, remove: bool, name: str) -> None:
        names = list(_NORMAL) if name == "CIPHER-ALL" else [name]
        for cipher in names:
            if cipher in self.ciphers:
                self.ciphers.remove(cipher)
            if not remove:
                self.ciphers.append(cipher)

    def _group(self, remove: bool, name: str) -> None:
        if name == "ALL":
            self.groups = [] if remove else list(_DEFAULT_GROUPS)
            return
        if name in _FFDHE:
            self.inert.append(f"GROUP-{name}")
            return
        ossl = _GROUPS.get(name)
        if ossl is None:
            raise PriorityError(f"unknown group {name!r}")
        if ossl in self.groups:
            self.groups.remove(ossl)
        if not remove:
            self.groups.append(ossl)


def parse_priorities(text: str, *, aes_hw: bool = True) -> TlsPolicy:
    """Translate a GnuTLS priority string; raises PriorityError naming the bad keyword.

    Without AES instructions (``aes_hw`` False) the base keyword's order starts with
    ChaCha20-Poly1305, as GnuTLS does; explicit ``+CIPHER`` keywords still reorder after.
    """
    tokens = [t.strip() for t in text.split(":") if t.strip()]
    if not tokens:
        raise PriorityError("empty priority string")
    first = tokens[0].upper()
    if first.startswith("@"):
        raise PriorityError("system-wide priority sets (@NAME) are not available here")
    if first not in _BASES:
        raise PriorityError(f"the priority string must start with a base keyword such as "
                            f"NORMAL, SECURE256 or NONE, not {tokens[0]!r}")
    base = list(_BASES[first])
    if not aes_hw and "CHACHA20-POLY1305" in base:
        base.remove("CHACHA20-POLY1305")
        base.insert(0, "CHACHA20-POLY1305")
    builder = _Builder(base)
    if first == "NONE":  # GnuTLS: everything, versions and groups included, must be added
        builder.versions, builder.groups = set(), []
    for token in tokens[1:]:
        builder.apply(token.upper())
    if not builder.versions:
        raise PriorityError("the priority string disables both TLS 1.2 and TLS 1.3")
    if not builder.ciphers:
        raise PriorityError("the priority string leaves no AES-GCM or ChaCha20-Poly1305 "
                            "cipher (the only ones OCGate and openconnect share)")
    if not builder.groups:
        raise PriorityError("the priority string leaves no elliptic-curve group")
    return TlsPolicy(min(builder.versions), max(builder.versions), tuple(builder.ciphers),
                     builder.server_preference, tuple(builder.groups), tuple(builder.inert))
