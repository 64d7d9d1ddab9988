"""protocol/tls/credentials.py: the server's chain and key, and an encrypted key's PIN."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from appliance import pki
from appliance.vpn.protocol.tls.credentials import (
    KeyLoadError,
    load_credentials,
    read_pin_file,
)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, object]:
    ca_key, ca = pki.make_ca("credentials test CA", days=1)
    key, cert = pki.make_server_cert(ca_key, ca, names=["vpn.test"], addresses=[], days=1)
    pki.write_cert(tmp_path / "cert.pem", cert, ca)
    return tmp_path / "cert.pem", tmp_path / "key.pem", key


@pytest.mark.parametrize("form", [PrivateFormat.PKCS8, PrivateFormat.TraditionalOpenSSL])
def test_encrypted_key_opens_with_its_pin_only(pair, form) -> None:
    cert, keyfile, key = pair
    keyfile.write_bytes(key.private_bytes(Encoding.PEM, form, BestAvailableEncryption(b"s3cret")))
    creds = load_credentials(str(cert), str(keyfile), "s3cret")
    assert len(creds.chain) == 2 and len(creds.chain_der) == 2
    assert creds.sha1 == pki.sha1_fingerprint_hex(creds.chain[0])
    with pytest.raises(KeyLoadError, match="wrong key-pin") as wrong:
        load_credentials(str(cert), str(keyfile), "guess")
    assert "guess" not in str(wrong.value)
    with pytest.raises(KeyLoadError, match="is encrypted and neither key-pin nor pin-file"):
        load_credentials(str(cert), str(keyfile), None)


def test_plain_pem_and_der_keys_need_no_pin(pair) -> None:
    cert, keyfile, key = pair
    for encoding in (Encoding.PEM, Encoding.DER):
        keyfile.write_bytes(key.private_bytes(encoding, PrivateFormat.PKCS8, NoEncryption()))
        assert load_credentials(str(cert), str(keyfile), "ignored").key is not None


def test_unsupported_keys_are_named(pair, tmp_path: Path) -> None:
    cert, _keyfile, _key = pair
    with pytest.raises(KeyLoadError, match="PKCS#11/TPM"):
        load_credentials(str(cert), "pkcs11:token=x;object=y", None)
    blob = tmp_path / "tpm.pem"
    blob.write_text("-----BEGIN TSS KEY BLOB-----\nAAAA\n-----END TSS KEY BLOB-----\n")
    with pytest.raises(KeyLoadError, match="TPM key blobs"):
        load_credentials(str(cert), str(blob), None)
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyLoadError, match="not a private key"):
        load_credentials(str(cert), str(junk), None)


def test_pin_file(tmp_path: Path) -> None:
    (tmp_path / "pin").write_text("1234 5678\nsecond line\n")
    assert read_pin_file(str(tmp_path / "pin")) == "1234 5678"
    (tmp_path / "empty").write_text("")
    with pytest.raises(KeyLoadError, match="is empty"):
        read_pin_file(str(tmp_path / "empty"))
    with pytest.raises(KeyLoadError, match="cannot read pin-file"):
        read_pin_file(str(tmp_path / "absent"))
