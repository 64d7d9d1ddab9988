"""``GET /cert.pem``, ``/cert.cer``, ``/ca.pem`` and ``/ca.cer``, answered as ocserv does.

ocserv hands out the certificate its TLS session presented (``cert``) and the CA that
issued it (``ca``), without asking for a login. The CA is not ``ca-cert`` (that one checks
client certificates): it is the certificate that follows the leaf in ``server-cert``, and
only if it really is the leaf's issuer. Without one, ocserv sends nothing and closes the
connection, and so do we. The chain comes from the sec-mod with the handshake result (it
is the one the client was shown, even across a reload). ``.pem`` is PEM and ``.cer`` DER;
ocserv labels the CA as ``application/pkix-cert`` in both forms, and the server
certificate in PEM as ``application/x-pem-file``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

PEM_TYPE = "application/x-pem-file"
DER_TYPE = "application/pkix-cert"
URLS = ("/cert.pem", "/cert.cer", "/ca.pem", "/ca.cer")


@dataclass(frozen=True)
class CertDownload:
    content_type: str
    body: bytes | None  # None: nothing to send; the connection is closed unanswered


def _matches(path: str, url: str) -> bool:
    """ocserv's URL rule: the URL itself, or it followed by ``/`` (the query is gone)."""
    return path == url or path.startswith(url + "/")


def cert_download(path: str, chain: Sequence[bytes]) -> CertDownload | None:
    """The answer to a GET of ``path`` given the served chain (DER, leaf first); None when
    ``path`` is not one of these URLs."""
    url = next((u for u in URLS if _matches(path, u)), None)
    if url is None:
        return None
    pem = url.endswith(".pem")
    if not chain:
        return CertDownload(DER_TYPE, None)
    if url.startswith("/cert."):
        leaf = chain[0]
        if not pem:
            return CertDownload(DER_TYPE, leaf)
        return CertDownload(PEM_TYPE, x509.load_der_x509_certificate(leaf).public_bytes(
            Encoding.PEM))
    issuer = _issuer(chain)
    if issuer is None:
        return CertDownload(DER_TYPE, None)
    return CertDownload(DER_TYPE, issuer.public_bytes(Encoding.PEM if pem else Encoding.DER))


def _issuer(chain: Sequence[bytes]) -> x509.Certificate | None:
    """The certificate after the leaf, if it names the leaf's issuer (GnuTLS compares the
    names, and so do we)."""
    if len(chain) < 2:
        return None
    try:
        leaf, second = (x509.load_der_x509_certificate(der) for der in chain[:2])
    except ValueError:
        return None
    return second if leaf.issuer == second.subject else None
