"""Where ACME challenge answers wait for the CA's validation request.

- HTTP-01 (RFC 8555 8.3): ``HttpChallenges`` maps tokens to key authorizations and a tiny
  HTTP responder on port 80 serves ``/.well-known/acme-challenge/<token>`` and nothing else.
- TLS-ALPN-01 (RFC 8737): ``AlpnChallengeStore`` keeps one self-signed challenge certificate
  per SNI name, in files the sec-mod can read.  The sec-mod, which runs the TLS handshakes on
  the VPN port, answers a ClientHello offering ALPN ``acme-tls/1`` with the certificate
  ``lookup(sni)`` returns, and closes after the handshake (docs/reachability.md).
"""

from __future__ import annotations

import datetime
import hashlib
import http.server
import logging
import os
import re
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from ..atomicfile import write_atomic

log = logging.getLogger(__name__)

ACME_TLS_ALPN = b"acme-tls/1"
ID_PE_ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]"
                   r"([a-z0-9-]{0,61}[a-z0-9])?$")


# ------------------------------------------------------------------ HTTP-01
class HttpChallenges:
    def __init__(self) -> None:
        self._answers: dict[str, str] = {}
        self._lock = threading.Lock()

    def put(self, token: str, key_authorization: str) -> None:
        if not _TOKEN.match(token):
            raise ValueError("an ACME token is base64url")
        with self._lock:
            self._answers[token] = key_authorization

    def remove(self, token: str) -> None:
        with self._lock:
            self._answers.pop(token, None)

    def answer(self, path: str) -> str | None:
        prefix = "/.well-known/acme-challenge/"
        if not path.startswith(prefix):
            return None
        with self._lock:
            return self._answers.get(path[len(prefix):])


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up our own name (getfqdn), which stalls for the
        # resolver's timeout where no DNS server answers; the name is not needed.
        import socketserver
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), \
            int(self.server_address[1])


def serve_http01(store: HttpChallenges, address: str = "", port: int = 80) -> _Server:
    """Start the port-80 responder in a thread; ``shutdown()`` + ``server_close()`` stop it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = store.answer(self.path)
            self.send_response(200 if body is not None else 404)
            data = (body or "").encode()
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            log.info("reach acme http-01 from=%s path_found=%s", self.client_address[0],
                     body is not None)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _Server((address, port), Handler)
    threading.Thread(target=server.serve_forever, name="acme-http01", daemon=True).start()
    return server


# ------------------------------------------------------------------ TLS-ALPN-01
def alpn_challenge_certificate(name: str, key_authorization: str) -> tuple[bytes, bytes]:
    """RFC 8737 section 3: self-signed, the name as its only SAN, and the critical
    acmeIdentifier extension holding SHA-256(key authorization) as a DER OCTET STRING."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER,
                                                      b"\x04\x20" + digest), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


ALPN_STORE_DIR = "acme-alpn"  # beside the server certificate: STATE/certs/acme-alpn/


def store_beside(server_cert: str | Path) -> AlpnChallengeStore:
    """The store the sec-mod of a server using ``server_cert`` reads: no setting to keep in
    step, and the certificate the challenge ends in is installed in the same folder."""
    return AlpnChallengeStore(Path(server_cert).resolve().parent / ALPN_STORE_DIR)


class AlpnChallengeStore:
    """One ``<name>.pem`` (certificate then key, mode 0600) per name being validated."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        name = name.lower().rstrip(".")
        if not _NAME.match(name):
            raise ValueError(f"not a DNS name: {name!r}")
        return self.directory / f"{name}.pem"

    def put(self, name: str, key_authorization: str) -> None:
        cert, key = alpn_challenge_certificate(name, key_authorization)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self._path(name), cert + key, 0o600)

    def remove(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass

    def lookup(self, sni: str) -> tuple[bytes, bytes] | None:
        """What the sec-mod calls for a ClientHello with ALPN acme-tls/1: (cert PEM, key
        PEM) for that SNI name, or None (then it must fail the handshake)."""
        try:
            data = self._path(sni).read_bytes()
        except (OSError, ValueError):
            return None
        cut = data.find(b"-----BEGIN PRIVATE KEY-----")
        return (data[:cut], data[cut:]) if cut > 0 else None
