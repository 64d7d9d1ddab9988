"""Run the worker's sans-IO code once in main, on made-up input, before anything forks.

Why: Python 3.11 rewrites a function's bytecode in place the first times it runs
(quickening and specialisation), and `cryptography`/OpenSSL, `re`, `struct` and friends
build caches on first use. Done in each worker, every one of those writes lands on a page
it inherited from main and copies it: an idle worker held ~9 MB of private memory while its
Python allocations were ~66 KB. Done here once, before the sec-mod and the workers fork,
the specialised code and the built caches are shared by all of them (docs/performance.md,
"Memory"). Nothing here touches a socket, a file or a real key: the keys are constants, the
input is what a client would send, and every object made is garbage afterwards.
"""

from __future__ import annotations

import logging
import time

from ..protocol import auth, cstp, http
from ..protocol.dtls.record import DtlsKeys, DtlsRecordLayer, decode_payload, encode_payload
from ..protocol.tls.record import RecordLayer, TrafficKeys, cipher_info

log = logging.getLogger(__name__)

ROUNDS = 40  # enough for 3.11's warm-up counters to specialise the hot paths
SUITES = ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
          "ECDHE-RSA-CHACHA20-POLY1305")

_XML_REPLY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" '
              b'type="auth-reply" aggregate-auth-version="2"><version who="vpn">v9.12'
              b'</version><device-id>linux-64</device-id><auth><username>prewarm</username>'
              b'<password>prewarm</password></auth></config-auth>')
_FORM_REPLY = b"username=prewarm&password=pre%20warm"
_HEAD = (b"POST /auth HTTP/1.1\r\nHost: vpn.prewarm.test\r\nUser-Agent: Open AnyConnect VPN "
         b"Agent v9.12\r\nAccept: */*\r\nX-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\n"
         b"Content-Type: %s\r\nContent-Length: %d\r\n\r\n")
_CONNECT = (b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn.prewarm.test\r\nUser-Agent: Open "
            b"AnyConnect VPN Agent v9.12\r\nCookie: webvpn=prewarm\r\nX-CSTP-Version: 1\r\n"
            b"X-CSTP-Hostname: prewarm\r\nX-CSTP-Base-MTU: 1500\r\nX-CSTP-Address-Type: "
            b"IPv6,IPv4\r\nX-DTLS-Master-Secret: " + b"00" * 48 + b"\r\nX-DTLS-CipherSuite: "
            b"PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:OC-DTLS1_2-AES128-GCM\r\n"
            b"X-DTLS-Accept-Encoding: lzs\r\nX-CSTP-Accept-Encoding: lzs,deflate\r\n\r\n")


def prewarm() -> None:
    """Run each worker path ROUNDS times; a failure here is logged and harmless (a worker
    then simply warms up itself)."""
    t0 = time.monotonic()
    try:
        for _ in range(ROUNDS):
            _http_and_auth()
            for suite in SUITES:
                _tls_records(suite)
                _dtls_records(suite)
    except Exception as exc:  # noqa: BLE001 - an optimisation must never stop the server
        log.warning("prewarm failed (%s: %s); workers warm up themselves",
                    type(exc).__name__, exc)
        return
    log.debug("prewarm done in %.0f ms", (time.monotonic() - t0) * 1000)


def _http_and_auth() -> None:
    parser = http.RequestParser()
    data = (_HEAD % (b"text/xml", len(_XML_REPLY)) + _XML_REPLY
            + _HEAD % (b"application/x-www-form-urlencoded", len(_FORM_REPLY)) + _FORM_REPLY
            + _CONNECT)
    for req in parser.feed(data):
        if req.method == "CONNECT":
            cstp.parse_connect_request(req.method, req.target, req.headers)
            continue
        auth.parse_auth_body(req.body, req.headers.get("content-type"))
    auth.render_auth_form(message="Please enter your username.",
                          inputs=[auth.FormInput("text", "username", "Username:"),
                                  auth.FormInput("password", "password", "Password:")],
                          groups=[("a", "A")])
    auth.render_auth_complete(banner="prewarm")
    http.response(200, "OK", [("Content-Type", "text/xml"), ("X-Prewarm", "1")], b"x")


def _tls_records(suite: str) -> None:
    ci = cipher_info(suite)
    key, secret = bytes(ci.key_len), bytes(48 if ci.hash_name == "sha384" else 32)
    for version, iv in ((0x0303, bytes(ci.iv_len12)), (0x0304, bytes(12))):
        keys = TrafficKeys(version, ci, key, iv, key, iv, read_secret=secret,
                           write_secret=secret)
        tx, rx = RecordLayer(keys), RecordLayer(keys)
        frames = [cstp.encode_frame(cstp.PacketType.DATA, bytes(1400)) for _ in range(4)]
        wire = tx.seal(cstp.encode_frame(cstp.PacketType.DPD_REQ)) + tx.seal_many(frames)
        decoder = cstp.FrameDecoder()
        for plain in rx.feed(wire):
            decoder.feed(plain)


def _dtls_records(suite: str) -> None:
    ci = cipher_info(suite)
    key, iv = bytes(ci.key_len), bytes(ci.iv_len12)
    tx, rx = (DtlsRecordLayer(DtlsKeys(ci, key, iv, key, iv)) for _ in range(2))
    datagrams = [tx.seal(encode_payload(cstp.PacketType.DPD_REQ)),
                 *tx.seal_many([encode_payload(cstp.PacketType.DATA, bytes(1400))] * 4)]
    for datagram in datagrams:
        for plain in rx.open(datagram):
            decode_payload(plain)
