"""The server's certificate chain and key, read once (the sec-mod is their only reader).

The chain file is parsed here, not by OpenSSL's file loader, so that what the handshakes
serve, what the workers hand out at ``/cert.pem`` and ``/ca.pem`` and the SHA-1 in the
webvpnc cookie all come from the same read, even while an ACME renewal replaces the file.

``server-key`` is read the way ocserv's sec-mod reads it, without ever asking a console.

ocserv tries the PEM key without a PIN and, when it turns out to be encrypted, once more
with ``key-pin`` (or the contents of ``pin-file``). OpenSSL's own file loader would prompt
on the terminal for a passphrase instead, and in a daemon that means a dead sec-mod; here
the key is parsed by ``cryptography`` with the PIN given or none at all, so an encrypted
key without its PIN, or with a wrong one, is a ``KeyLoadError`` that says so.

PKCS#11 and TPM keys (URLs, TSS key blobs) are not supported; they are refused with their
name rather than misread. ``srk-pin`` only ever unlocks a TPM's storage root key, so a
key file does not need it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

ServerKey = (rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
             | ed448.Ed448PrivateKey)

_URL_SCHEMES = ("pkcs11:", "tpmkey:", "system:")


class KeyLoadError(ValueError):
    """The server key cannot be used; the message names why, never the PIN."""


@dataclass(frozen=True)
class Credentials:
    """The leaf certificate, the certificates that follow it in ``server-cert``, the key."""
    chain: tuple[x509.Certificate, ...]
    key: ServerKey

    @property
    def sha1(self) -> str:
        """Upper-case SHA-1 of the leaf (ocserv's webvpnc ``sh:``)."""
        return self.chain[0].fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303

    @functools.cached_property
    def chain_der(self) -> tuple[bytes, ...]:
        """The chain as DER, once per load (every handshake result carries it)."""
        return tuple(cert.public_bytes(serialization.Encoding.DER) for cert in self.chain)


def load_credentials(cert_file: str, key_file: str, pin: str | None = None) -> Credentials:
    """Chain and key; KeyLoadError or ValueError says what is wrong with which file."""
    with open(cert_file, "rb") as handle:
        data = handle.read(1 << 20)
    try:
        chain = (x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                 else [x509.load_der_x509_certificate(data)])
    except ValueError as exc:
        raise ValueError(f"server-cert {cert_file}: no certificate ({exc})") from None
    return Credentials(tuple(chain), load_private_key(key_file, pin))


def read_pin_file(path: str) -> str:
    """The PIN in ``pin-file``: its first line, as ocserv reads it."""
    try:
        with open(path, encoding="utf-8", errors="strict") as handle:
            text = handle.read(4096)
    except (OSError, UnicodeError) as exc:
        raise KeyLoadError(f"cannot read pin-file {path}: {exc}") from None
    pin = text.splitlines()[0] if text else ""
    if not pin:
        raise KeyLoadError(f"pin-file {path} is empty")
    return pin


def load_private_key(path: str, pin: str | None = None) -> ServerKey:
    """The key in ``path`` (PEM, or DER), decrypted with ``pin`` when it is encrypted."""
    key = _decrypt(path, pin)
    if not isinstance(key, ServerKey):
        raise KeyLoadError(f"server-key {path}: a {type(key).__name__} cannot sign TLS "
                           "handshakes")
    return key


def _decrypt(path: str, pin: str | None) -> PrivateKeyTypes:
    if path.startswith(_URL_SCHEMES):
        raise KeyLoadError(f"server-key {path}: PKCS#11/TPM keys are not supported")
    with open(path, "rb") as handle:
        data = handle.read(1 << 20)
    if b"BEGIN TSS KEY BLOB" in data:
        raise KeyLoadError(f"server-key {path}: TPM key blobs are not supported")
    load = (serialization.load_pem_private_key if b"-----BEGIN" in data
            else serialization.load_der_private_key)
    try:
        return load(data, None)
    except TypeError:  # encrypted: only now does the PIN matter
        pass
    except ValueError as exc:
        raise KeyLoadError(f"server-key {path}: not a private key ({exc})") from None
    if not pin:
        raise KeyLoadError(f"server-key {path} is encrypted and neither key-pin nor "
                           "pin-file is set")
    try:
        return load(data, pin.encode())
    except (TypeError, ValueError):
        raise KeyLoadError(f"server-key {path}: wrong key-pin (the key does not "
                           "decrypt with it)") from None
