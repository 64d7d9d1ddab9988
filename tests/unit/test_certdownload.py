"""protocol/certdownload.py: which certificate each URL gives, in which form."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from appliance import pki
from appliance.vpn.protocol.certdownload import DER_TYPE, PEM_TYPE, cert_download


def _chain() -> tuple[bytes, bytes, bytes]:
    ca_key, ca = pki.make_ca("download test CA", days=1)
    _key, leaf = pki.make_server_cert(ca_key, ca, names=["vpn.test"], addresses=[],
                                        days=1)
    _other_key, other = pki.make_ca("unrelated CA", days=1)
    return (leaf.public_bytes(Encoding.DER), ca.public_bytes(Encoding.DER),
            other.public_bytes(Encoding.DER))


def test_urls_forms_and_types() -> None:
    leaf, ca, _ = _chain()
    pem = cert_download("/cert.pem", [leaf, ca])
    assert pem is not None and pem.content_type == PEM_TYPE
    assert pem.body is not None and pem.body.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert cert_download("/cert.cer", [leaf, ca]) == cert_download("/cert.cer/x", [leaf])
    der = cert_download("/cert.cer", [leaf])
    assert der is not None and (der.content_type, der.body) == (DER_TYPE, leaf)
    ca_der = cert_download("/ca.cer", [leaf, ca])
    assert ca_der is not None and (ca_der.content_type, ca_der.body) == (DER_TYPE, ca)
    ca_pem = cert_download("/ca.pem", [leaf, ca])
    assert ca_pem is not None and ca_pem.content_type == DER_TYPE  # as ocserv labels it
    assert ca_pem.body is not None and b"BEGIN CERTIFICATE" in ca_pem.body


def test_no_issuer_after_the_leaf_means_no_answer() -> None:
    leaf, _ca, other = _chain()
    for chain in ([leaf], [leaf, other], []):
        got = cert_download("/ca.pem", chain)
        assert got is not None and got.body is None


def test_other_paths_are_not_ours() -> None:
    leaf, ca, _ = _chain()
    for path in ("/cert.pemx", "/ca", "/", "/xcert.pem", "/CA.PEM"):
        assert cert_download(path, [leaf, ca]) is None
