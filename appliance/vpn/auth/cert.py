"""Client certificates: the user name and groups from a verified certificate."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from .base import _CTRL, MAX_USERNAME_BYTES, SAN_RFC822, CertError, _unique

# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class CertIdentity:
    """Who a verified client certificate says the user is."""

    username: str
    groups: tuple[str, ...] = ()


def cert_identity(cert: x509.Certificate, user_oid: str,
                  group_oid: str | None = None) -> CertIdentity:
    """The user name from ``user_oid`` (a DN attribute OID or ``SAN(rfc822name)``) and the
    groups from every ``group_oid`` attribute; CertError when there is no usable name."""
    names = _cert_values(cert, user_oid)
    if not names:
        raise CertError(f"the certificate has no {user_oid} to take the user name from")
    username = names[0]
    if not username or len(username.encode()) > MAX_USERNAME_BYTES or _CTRL.search(username):
        raise CertError("the certificate's user name is empty, too long or has control "
                        "characters")
    groups = tuple(g for g in _cert_values(cert, group_oid) if g and not _CTRL.search(g)) \
        if group_oid else ()
    return CertIdentity(username, tuple(_unique(groups)))


def _cert_values(cert: x509.Certificate, oid: str) -> list[str]:
    if oid == SAN_RFC822:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return []
        return [str(v) for v in san.value.get_values_for_type(x509.RFC822Name)]
    try:
        attrs = cert.subject.get_attributes_for_oid(ObjectIdentifier(oid))
    except ValueError as exc:
        raise CertError(f"bad OID {oid!r}: {exc}") from None
    values = []
    for attr in attrs:
        value = attr.value
        values.append(value.decode("utf-8", "replace") if isinstance(value, bytes)
                      else str(value))
    return values
