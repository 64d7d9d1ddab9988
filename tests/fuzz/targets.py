"""Fuzz targets: every parser that sees network, user or peer-process input.

One table, used by both the bounded pytest run (tests/unit/test_fuzz_bounded.py) and the
long ``make fuzz`` run (``python3 -m tests.fuzz``), so the two can never drift apart.

A target turns arbitrary bytes into a call of one parser.  Its contract: the call returns,
or raises one of the module's *documented* exception types (``allowed``).  Anything else
is a crash: another exception, a call that runs too long (see engine.py), memory
exhaustion, or a ``ContractViolation`` raised here when a result breaks a promise the
module makes (a decompressor returning more than ``max_out`` bytes, say).

Structured parsers get bytes too: the first byte(s) pick the variant (content type,
chunking, output capacity, form field), the rest is the text.  That keeps every target
usable by a byte-oriented coverage-guided engine (atheris/libFuzzer) as well as by our own
mutational engine.

Nothing from ``appliance`` is imported at module level: the atheris runner must be able to
instrument those modules when it imports them through ``load_targets()``.
"""

from __future__ import annotations

import atexit
import functools
import io
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TRANSCRIPT = Path(__file__).resolve().parent.parent / "unit" / "data" / "ocserv-transcript.txt"


class ContractViolation(AssertionError):
    """A parser returned, but its result breaks the module's documented promise."""


@dataclass(frozen=True)
class Target:
    """One fuzz target: how to call the parser and what a graceful refusal looks like."""

    name: str
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]
    dictionary: tuple[bytes, ...] = ()
    max_len: int = 4096
    what: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def _text(data: bytes) -> str:
    """Bytes -> str keeping every byte (surrogates for non-UTF-8), like a lenient reader."""
    return data.decode("utf-8", "surrogateescape")


def _chunks(data: bytes, size: int) -> list[bytes]:
    size = max(1, size)
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


_CHUNK_SIZES = (1 << 30, 1, 2, 3, 7, 64, 512, 1 << 30)


# ------------------------------------------------------------------------- transcript seeds


@functools.cache
def _transcript_requests() -> list[bytes]:
    """The client's HTTP requests in the anchor transcript (§1 of docs/protocol.md)."""
    if not TRANSCRIPT.exists():
        return []
    requests: list[bytes] = []
    current: list[str] = []
    for line in TRANSCRIPT.read_text(errors="replace").splitlines():
        if line.startswith("> ") or line == ">":
            current.append(line[2:])
        elif current:
            requests.append(_as_http(current))
            current = []
    if current:
        requests.append(_as_http(current))
    return requests


def _as_http(lines: list[str]) -> bytes:
    """Re-join transcript lines: CRLF in the head, the body as it was printed."""
    try:
        blank = lines.index("")
    except ValueError:
        return ("\r\n".join(lines) + "\r\n\r\n").encode()
    head = "\r\n".join(lines[:blank]) + "\r\n\r\n"
    body = "\n".join(lines[blank + 1:])
    return (head + body).encode()


def _request_bodies() -> list[bytes]:
    return [r.split(b"\r\n\r\n", 1)[1] for r in _transcript_requests() if b"\r\n\r\n" in r
            and r.split(b"\r\n\r\n", 1)[1]]


# ------------------------------------------------------------------------------ HTTP


_HTTP_SEEDS = [
    b"GET / HTTP/1.1\r\nHost: vpn\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: vpn\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /auth HTTP/1.0\r\nCookie: webvpn=abc; webvpncontext=x\r\nConnection: keep-alive"
    b"\r\nContent-Length: 0\r\n\r\nGET /profile.xml HTTP/1.1\r\n\r\n",
    b"\r\n\r\nGET /+CSCOE+/logon.html?a=b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn\r\n\r\n\x53\x54\x46\x01\x00\x00\x03\x00",
]
_HTTP_WORDS = (b"\r\n", b"\r\n\r\n", b": ", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"GET ",
               b"POST ", b"CONNECT ", b"Content-Length: ", b"Transfer-Encoding: chunked",
               b"Connection: close", b"Cookie: ", b"Host: ", b"\x00", b"99999999999", b"-1",
               b" \t", b"/CSCOSSLC/tunnel", b"X-CSTP-")


def _run_http(data: bytes) -> object:
    from appliance.vpn.protocol import http

    size = _CHUNK_SIZES[data[0] % len(_CHUNK_SIZES)] if data else 1
    parser = http.RequestParser(max_header_bytes=2048, max_body_bytes=4096)
    for chunk in _chunks(data[1:], size):
        for req in parser.feed(chunk):
            _ = (req.path, req.query, req.keep_alive, req.cookies, req.headers.items())
            if req.method == "CONNECT":
                return parser.remaining()
    return None


# ------------------------------------------------------------------------------ auth XML

_CONTENT_TYPES = (None, "application/x-www-form-urlencoded", "text/xml",
                  "application/xml; charset=utf-8", "text/plain", "multipart/form-data")
_AUTH_SEEDS = [
    b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init">'
    b'<version who="vpn">v9.01</version><device-id>linux-64</device-id>'
    b"<group-select>staff</group-select></config-auth>",
    b'<?xml version="1.0"?><config-auth client="vpn" type="auth-reply"><auth>'
    b"<username>alice</username><password>pw</password></auth></config-auth>",
    b"username=alice&password=secret&group_list=staff",
    b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><config-auth>&a;&a;</config-auth>",
]
_AUTH_WORDS = (b"<config-auth", b"</config-auth>", b"<auth>", b"</auth>", b"<username>",
               b"<password>", b"<group-select>", b"&amp;", b"&#x41;", b"&#1114112;", b"<!--",
               b"-->", b"<![CDATA[", b"]]>", b"=", b"&", b"%00", b"%ZZ", b"<?xml ", b"?>")


def _run_auth(data: bytes) -> object:
    from appliance.vpn.protocol import auth

    ctype = _CONTENT_TYPES[data[0] % len(_CONTENT_TYPES)] if data else None
    reply = auth.parse_auth_body(data[1:], ctype)
    return reply


# ------------------------------------------------------------------------------ CONNECT


_CONNECT_SEEDS = [
    b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn\r\nUser-Agent: Open AnyConnect VPN Agent"
    b" v9.01-3\r\nCookie: webvpn=0123\r\nX-CSTP-Version: 1\r\nX-CSTP-Hostname: box\r\n"
    b"X-CSTP-Accept-Encoding: oc-lz4,lzs\r\nX-CSTP-Base-MTU: 1500\r\nX-CSTP-MTU: 1399\r\n"
    b"X-CSTP-Address-Type: IPv6,IPv4\r\nX-DTLS-Master-Secret: " + b"ab" * 48 + b"\r\n"
    b"X-DTLS-CipherSuite: PSK-NEGOTIATE:AES256-GCM-SHA384\r\nX-DTLS12-CipherSuite: "
    b"ECDHE-RSA-AES256-GCM-SHA384\r\nX-DTLS-Accept-Encoding: oc-lz4,lzs\r\n"
    b"X-CSTP-Full-IPv6-Capability: true\r\nX-AnyConnect-Identifier-Platform: linux-64\r\n\r\n",
    b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nX-CSTP-MTU: -5\r\nX-CSTP-Base-MTU: x\r\n\r\n",
]


def _run_connect(data: bytes) -> object:
    from appliance.vpn.protocol import auth, compression, cstp, http

    parser = http.RequestParser()
    for req in parser.feed(data):
        creq = cstp.parse_connect_request(req.method, req.target, req.headers)
        _ = (creq.wants_ipv4, creq.wants_ipv6, creq.psk_negotiate, creq.wants_dtls,
             creq.is_mobile, creq.is_ios)
        offered = compression.parse_accept_encoding(req.headers.get("X-CSTP-Accept-Encoding")
                                                    or "")
        compression.choose(offered, True)
        auth.classify_agent(req.headers.get("User-Agent"),
                            req.headers.get("X-AnyConnect-Identifier-Platform"))
        auth.match_static(req.path)
    return None


# ------------------------------------------------------------------------------ CSTP frames


def _cstp_seeds() -> list[bytes]:
    from appliance.vpn.protocol import cstp

    return [
        cstp.encode_frame(0, b"\x45" + bytes(27)) + cstp.encode_frame(3) + cstp.encode_frame(4),
        cstp.bye_frame(), cstp.encode_frame(7, b"x" * 30), cstp.encode_frame(8, b"\x00\x01"),
        b"\x00" + cstp.encode_frame(5) * 3,
    ]


def _run_cstp(data: bytes) -> object:
    from appliance.vpn.protocol import cstp

    size = _CHUNK_SIZES[data[0] % len(_CHUNK_SIZES)] if data else 1
    decoder = cstp.FrameDecoder()
    for chunk in _chunks(data[1:], size):
        for ptype, payload in decoder.feed(chunk):
            if ptype == cstp.PacketType.DISCONNECT:
                cstp.parse_bye(payload)
    return decoder.pending


# ------------------------------------------------------------------------------ DTLS

_DTLS_KEY = b"k" * 32


@functools.cache
def _dtls_keys() -> object:
    from appliance.vpn.protocol.dtls.record import DtlsKeys
    from appliance.vpn.protocol.tls.record import CipherInfo

    return DtlsKeys(CipherInfo("AES-256-GCM", 32, "sha384"), _DTLS_KEY, b"salt",
                    _DTLS_KEY, b"salt")


def _dtls_seeds() -> list[bytes]:
    from appliance.vpn.protocol.dtls import record as dtls

    layer = dtls.DtlsRecordLayer(_dtls_keys())  # type: ignore[arg-type]
    records = [layer.seal(dtls.encode_payload(t, d)) for t, d in
               ((dtls.PacketType.DATA, b"\x45" + bytes(40)), (dtls.PacketType.DPD_REQ, b""),
                (dtls.PacketType.KEEPALIVE, b""), (dtls.PacketType.DISCONNECT, b""))]
    return [*records, records[0] + records[1], layer.close_notify(), _client_hello()]


def _run_dtls_records(data: bytes) -> object:
    from appliance.vpn.protocol.dtls import record as dtls

    layer = dtls.DtlsRecordLayer(_dtls_keys(), final_flight=[b"flight"])  # type: ignore[arg-type]
    for plain in layer.open(data):
        dtls.decode_payload(plain)
    for _record in dtls.iter_records(data):
        pass
    try:
        dtls.decode_payload(data)
    except dtls.DtlsError:
        pass
    return layer.dropped


def _client_hello(session_id: bytes = b"\x11" * 32, extensions: bytes = b"") -> bytes:
    body = (b"\xfe\xfd" + b"\x22" * 32 + bytes([len(session_id)]) + session_id + b"\x00"
            + b"\x00\x04\x00\xa9\x00\xa8\x01\x00" + len(extensions).to_bytes(2, "big")
            + extensions)
    hs = (b"\x01" + len(body).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00"
          + len(body).to_bytes(3, "big") + body)
    return b"\x16\xfe\xfd" + bytes(8) + len(hs).to_bytes(2, "big") + hs


def _hello_seeds() -> list[bytes]:
    app_id = (48018).to_bytes(2, "big") + b"\x00\x21\x20" + b"\x33" * 32
    return [_client_hello(), _client_hello(b""), _client_hello(extensions=app_id),
            _client_hello(extensions=b"\x00\x17\x00\x00" + app_id)]


def _run_client_hello(data: bytes) -> object:
    from appliance.vpn.protocol.dtls import record as dtls

    info = dtls.peek_client_hello(data)
    if info is not None:
        _ = (info.app_id, info.zero_random)
    return info


def _tls_hello_seeds() -> list[bytes]:
    """Real ClientHellos from the stdlib (OpenSSL) client: with SNI and ALPN acme-tls/1, with
    neither, and one split over two records."""
    import ssl

    out = []
    for alpn, sni in ((["acme-tls/1"], "vpn.home.test"), (None, None), (["h2", "x"], "a.test")):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = ctx.wrap_bio(cin, cout, server_hostname=sni)
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        out.append(cout.read())
    body = out[0][5:]
    out.append(b"\x16\x03\x01\x00\x30" + body[:48] + b"\x16\x03\x01"
               + (len(body) - 48).to_bytes(2, "big") + body[48:])
    return out


def _run_tls_client_hello(data: bytes) -> object:
    from appliance.vpn.protocol.tls.clienthello import peek_client_hello

    info = peek_client_hello(data)
    if info is not None:
        if info.sni is not None and not info.sni.isascii():
            raise ContractViolation(f"SNI {info.sni!r} is not ASCII")
        if any(not proto for proto in info.alpn):
            raise ContractViolation("an empty ALPN protocol name came through")
    return info


# ------------------------------------------------------------------------------ NAT-PMP, PCP


def _natpmp_seeds() -> list[bytes]:
    import struct

    return [struct.pack("!BBHI4s", 0, 128, 0, 300, bytes([198, 18, 0, 2])),
            struct.pack("!BBHIHHI", 0, 129, 0, 300, 443, 443, 3600),
            struct.pack("!BBHIHHI", 0, 130, 0, 301, 443, 8443, 7200),
            struct.pack("!BBHI", 0, 130, 3, 5), struct.pack("!BBHI", 0, 128, 3, 5)]


def _run_natpmp(data: bytes) -> object:
    from appliance.reach import natpmp

    got = natpmp.decode_response(data)
    if isinstance(got, natpmp.MapResult) and got.result == 0:
        # a success must carry the ports of the datagram, as the manager renews with them
        if (got.internal_port, got.external_port) != \
                (int.from_bytes(data[8:10], "big"), int.from_bytes(data[10:12], "big")):
            raise ContractViolation("NAT-PMP ports differ from the datagram's")
    return got


def _pcp_seeds() -> list[bytes]:
    import struct

    nonce = bytes(range(12))
    wan = b"\x00" * 10 + b"\xff\xff" + bytes([198, 18, 0, 2])
    body = nonce + struct.pack("!B3xHH", 6, 443, 443) + wan
    third_party = struct.pack("!BxH", 1, 16) + b"\x00" * 10 + b"\xff\xff" + bytes(4)
    return [struct.pack("!BBxBII12x", 2, 0x81, 0, 3600, 77) + body,
            struct.pack("!BBxBII12x", 2, 0x81, 0, 3600, 77) + body + third_party,
            struct.pack("!BBxBII12x", 2, 0x81, 8, 30, 77),
            struct.pack("!BBxBII12x", 2, 0x80, 0, 0, 12),
            struct.pack("!BBxBII", 0, 0x81, 1, 0, 0)[:8]]


def _run_pcp(data: bytes) -> object:
    from appliance.reach import pcp

    got = pcp.decode_response(data)
    if got.map is not None and got.map.nonce != data[24:36]:
        raise ContractViolation("the MAP nonce is not the datagram's")  # renewals rely on it
    if sum(4 + ((len(o.data) + 3) & ~3) for o in got.options) > len(data):
        raise ContractViolation("options longer than the datagram")
    return got


# ------------------------------------------------------------------------------ TLS records


@functools.cache
def _tls_keys() -> object:
    from appliance.vpn.protocol.tls.record import CipherInfo, TrafficKeys

    return TrafficKeys(0x0303, CipherInfo("AES-256-GCM", 32, "sha384"), _DTLS_KEY, b"salt",
                       _DTLS_KEY, b"salt", 1, 1)


def _tls_seeds() -> list[bytes]:
    from appliance.vpn.protocol.tls.record import RecordLayer

    layer = RecordLayer(_tls_keys())  # type: ignore[arg-type]
    return [layer.seal(b"GET / HTTP/1.1\r\n\r\n"), layer.seal(b"x" * 300) + layer.seal(b"y"),
            layer.close_notify(), b"\x15\x03\x03\x00\x02\x02\x28"]


def _run_tls_records(data: bytes) -> object:
    from appliance.vpn.protocol.tls.record import RecordLayer

    size = _CHUNK_SIZES[data[0] % len(_CHUNK_SIZES)] if data else 1
    layer = RecordLayer(_tls_keys())  # type: ignore[arg-type]
    for chunk in _chunks(data[1:], size):
        layer.feed(chunk)
    return None


# ------------------------------------------------------------------------------ decompressors

_CAPACITIES = (0, 1, 2, 8, 64, 1400, 1500, 2048, 16384, 65536)


def _plain_samples() -> list[bytes]:
    samples = [b"", b"a", b"abcabcabcabcabc" * 20, bytes(1500), bytes(range(256)) * 4]
    samples += _transcript_requests()[:6]
    return samples


def _lzs_seeds() -> list[bytes]:
    import random

    from appliance.vpn.protocol import lzs
    from tests.fuzz.codec_seeds import lzs_tokens

    rng = random.Random(11)
    return ([bytes([k]) + lzs.encode(p) for k, p in enumerate(_plain_samples())]
            + [bytes([k]) + lzs_tokens(rng) for k in range(10)])


def _lz4_seeds() -> list[bytes]:
    import random

    import lz4.block

    from tests.fuzz.codec_seeds import lz4_sequences

    rng = random.Random(12)
    return ([bytes([k]) + lz4.block.compress(p, store_size=False)
             for k, p in enumerate(_plain_samples())]
            + [bytes([k]) + lz4_sequences(rng) for k in range(10)])


def _decompressor(name: str) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        from appliance.vpn.protocol import lz4, lzs

        decompress = lzs.decompress if name == "lzs" else lz4.decompress
        max_out = _CAPACITIES[data[0] % len(_CAPACITIES)] if data else 0
        out = decompress(data[1:], max_out)
        if not isinstance(out, bytes) or len(out) > max_out:
            raise ContractViolation(f"{name} returned {len(out)} bytes, limit {max_out}")
        return out
    return run


def _run_compression(data: bytes) -> object:
    from appliance.vpn.protocol import compression

    text = _text(data[1:])
    kind = data[0] % 3 if data else 0
    if kind == 0:
        return compression.choose(compression.parse_accept_encoding(text), True)
    if kind == 1:
        return compression.parse_priority_option(text)
    algo = "lzs" if len(data) > 1 and data[1] & 1 else "oc-lz4"
    comp = compression.Compressor(algo)
    out = comp.decompress(data[2:], 1500)
    if len(out) > 1500:
        raise ContractViolation(f"Compressor({algo}) returned {len(out)} bytes, limit 1500")
    return out


# ------------------------------------------------------------------------------ config files

_CONF_SEED = """\
# ocserv.conf seed
auth = "plain[passwd=/etc/ocserv/ocpasswd]"
enable-auth = "certificate"
tcp-port = 443
udp-port = 443
run-as-user = nobody
run-as-group = daemon
socket-file = /run/ocserv.socket
server-cert = /etc/ocserv/server-cert.pem
server-key = /etc/ocserv/server-key.pem
ca-cert = /etc/ocserv/ca.pem
isolate-workers = true
max-clients = 16
max-same-clients = 2
rate-limit-ms = 100
keepalive = 32400
dpd = 90
mobile-dpd = 1800
switch-to-tcp-timeout = 25
try-mtu-discovery = false
cert-user-oid = 0.9.2342.19200300.100.1.1
tls-priorities = "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0"
auth-timeout = 240
min-reauth-time = 300
max-ban-score = 80
ban-reset-time = 1200
cookie-timeout = 300
deny-roaming = false
rekey-time = 172800
rekey-method = ssl
use-occtl = true
pid-file = /run/ocserv.pid
device = vpns
predictable-ips = true
default-domain = example.com
ipv4-network = 192.168.1.0
ipv4-netmask = 255.255.255.0
ipv6-network = fda9:4efe:7e3b:03ea::/48
ipv6-subnet-prefix = 64
dns = 192.168.1.2
route = 10.10.10.0/255.255.255.0
route = 192.168.0.0/16
no-route = 192.168.5.0/255.255.255.0
compression = true
no-compress-limit = 256
compression-algo-priority = lzs:95
config-per-user = /etc/ocserv/config-per-user/
select-group = group1[My Group]
cisco-client-compat = true
dtls-legacy = true
[vhost:www.example.com]
auth = "plain[passwd=/etc/ocserv/www.passwd]"
server-cert = /etc/ocserv/www-cert.pem
server-key = /etc/ocserv/www-key.pem
ipv4-network = 192.168.2.0/24
dns = 192.168.2.1
tcp-port = 8443
"""
_USER_SEED = ("route = 10.0.0.0/8\nno-route = 10.1.0.0/16\ndns = 1.1.1.1\n"
              "explicit-ipv4 = 192.168.1.44\nrx-data-per-sec = 20000\nidle-timeout = 60\n"
              "restrict-user-to-routes = true\nipv4-network = 10.9.0.0/24\nroute = default\n")
_CONF_WORDS = (b"\n", b" = ", b"=", b"#", b"[vhost:", b"]", b'"', b"auth", b"plain[", b"pam",
               b"certificate", b"route", b"default", b"/24", b"255.255.255.0", b"::/0",
               b"true", b"false", b"-1", b"99999999999999999999", b"ipv4-network",
               b"ipv6-network", b"\\", b"include", b"[", b"gssapi", b"radius[config=",
               b"select-group", b"compression-algo-priority", b"lzs:95", b"\x00")


def _run_config(data: bytes) -> object:
    from appliance.vpn import config

    kind = data[0] % 3 if data else 0
    text = _text(data[1:])
    if kind == 0:
        return config.parse_config(text, "fuzz.conf")
    if kind == 1:
        return config.parse_user_config(text, "fuzz-user", ipv6=bool(data[0] & 4))
    try:
        return config.parse_auth_method(text.strip(), accounting=bool(data[0] & 4))
    except config.ConfigError:
        raise
    except ValueError as exc:  # documented: "raises ValueError"
        raise config.ConfigError(str(exc)) from None


def _config_seeds() -> list[bytes]:
    return [b"\x00" + _CONF_SEED.encode(), b"\x01" + _USER_SEED.encode(),
            b'\x02plain[passwd=/etc/ocpasswd,otp=/etc/otp]', b"\x02certificate",
            b'\x05radius[config=/etc/radcli/radiusclient.conf,groupconfig=true]',
            b"\x02pam[gid-min=1000]"]


# ------------------------------------------------------------------------------ ocpasswd


def _run_passwd(data: bytes) -> object:
    from appliance.vpn import passwd

    entries = passwd.parse_passwd(_text(data))
    for entry in entries.values():
        _ = entry.locked
        passwd.format_entry(entry)
    return entries


_PASSWD_SEEDS = [
    b"alice:staff:$5$salt$hash\nbob:*:$6$abc$def\n!carol:*:$1$x$y\ndave:g1,g2:!$5$a$b\n",
    b"# comment\n\nerin::\nfrank:*:*\n",
]


# ------------------------------------------------------------------------------ OTP users file

_OTP_KEY = "3132333435363738393031323334353637383930"
_OTP_NOW = 1_700_000_000.0


def _run_otp(data: bytes) -> object:
    """``file \\0 answer``; the promise: a code accepted once is refused the next time."""
    from appliance.vpn.auth import otp

    text, _, answer = _text(data).partition("\0")
    verified = bool(data[:1]) and data[0] & 1 == 1
    verdict = otp.check(otp.parse_usersfile(text), "alice", answer, _OTP_NOW,
                        password_verified=verified)
    if verdict.ok:
        if verdict.text is None:
            raise ContractViolation("accepted without a file to write back")
        again = otp.check(otp.parse_usersfile(verdict.text), "alice", answer,
                          _OTP_NOW + 1, password_verified=verified)
        if again.ok:
            raise ContractViolation("the same code was accepted twice")
    return verdict


_OTP_SEEDS = [
    f"HOTP alice - {_OTP_KEY}\n\0755224".encode(),
    f"# c\nHOTP/T30/8 alice 12 {_OTP_KEY} 3 1 2023-11-14T23:13:20L\r\n\x0012".encode(),
    f"HOTP/T60 alice + {_OTP_KEY}\nHOTP bob - 00\n\x00000000".encode(),
]


# ------------------------------------------------------------------------------ control socket

_CONTROL_SEEDS = [
    b'{"v":1,"cmd":"show status"}', b'{"v":1,"cmd":"show user","args":{"name":"alice"}}',
    b'{"v":1,"cmd":"disconnect id","args":{"id":12}}', b'{"v":1,"cmd":"unban ip",'
    b'"args":{"ip":"198.51.100.7"}}', b'{"v":1,"cmd":"show session","args":{"sid":"ab12"}}',
    b'{"v":1,"cmd":"hello"}', b'[1,2,{"a":null}]',
]
_JSON_WORDS = (b"{", b"}", b"[", b"]", b'"', b":", b",", b"null", b"true", b"1e999",
               b"-0", b"NaN", b"Infinity", b"\\u0000", b"\\ud800", b'"v"', b'"cmd"', b'"args"')


def _run_control(data: bytes) -> object:
    from appliance.vpn import control

    return control.parse_request(data)


# ------------------------------------------------------------------------------ IPC


def _ipc_seeds() -> list[bytes]:
    from appliance.vpn import ipc

    return [ipc.encode(ipc.AuthInit("alice", None, "198.51.100.1", "openconnect")),
            b'{"type":"AuthCont","password":"pw"}', b'{"type":"Ack"}',
            b'{"type":"SessionClose","sid":"x"}',
            b'{"type":"Terminate"}', b'{"type":"TlsHandshake","remote_ip":"198.51.100.1"}']


def _run_ipc(data: bytes) -> object:
    from appliance.vpn import ipc

    return ipc.decode(data)


_CONTROL_RECORDS = ("UserInfo", "SessionInfo", "BanInfo", "StatusInfo")


def _typed_seeds() -> list[bytes]:
    """A valid object for every IPC message and control record, and the small bad ones."""
    from appliance.vpn import ipc, wire
    from tests.fuzz import ipc_variants

    seeds = [b"\x00" + wire.dumps(ipc_variants.sample(cls))
             for cls in ipc.registered().values()]
    seeds += [b"\x00" + data for _, data in ipc_variants.variants() if len(data) < 2048]
    seeds += [bytes([2, i, j]) + text for i in range(len(ipc.registered())) for j in range(3)
              for text in (b"0", b'"x"', b"null", b"[]")]
    from appliance.vpn import control

    seeds += [bytes([1, i]) + wire.dumps(ipc_variants.sample_fields(getattr(control, name)))
              for i, name in enumerate(_CONTROL_RECORDS)]
    return seeds


_KIND_NAMES = {str: "string", bool: "bool", int: "int", float: "float", type(None): "null",
               list: "list", dict: "dict"}


def _fits(hint: object, value: object) -> bool:
    """Whether a decoded value has the declared type, judged independently of the codec
    (ipc_variants.accepted_kinds), through lists, dicts and nested records."""
    import dataclasses
    import types
    import typing

    from tests.fuzz import ipc_variants

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(arm, value) for arm in args)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        fields = typing.get_type_hints(hint)
        return type(value) is hint and all(_fits(fields[name], getattr(value, name))
                                           for name in fields)
    if _KIND_NAMES.get(type(value)) not in ipc_variants.accepted_kinds(hint):
        return False
    if hint is float and type(value) is not float:
        return False  # the decoder turns a JSON integer into a float
    if origin is list:
        return all(_fits(args[0], item) for item in value)  # type: ignore[attr-defined]
    if origin is dict:
        return all(type(k) is str and _fits(args[1], v)
                   for k, v in value.items())  # type: ignore[attr-defined]
    return True


def _run_typed(data: bytes) -> object:
    """The typed decoder (wire.py) behind both IPC and the control protocol. Byte 0 picks
    IPC (the rest is a datagram) or a control record (byte 1 picks which). A record that
    comes back must have the declared types and survive a re-encode unchanged."""
    from appliance.vpn import control, ipc, wire

    if data[:1] == b"\x02" and len(data) > 2:
        data = b"\x00" + _one_field(data[1], data[2], data[3:])
    if data[:1] == b"\x01":
        cls = getattr(control, _CONTROL_RECORDS[data[1] % len(_CONTROL_RECORDS)] if
                      len(data) > 1 else "UserInfo")
        record = control.from_wire(cls, wire.loads(data[2:]) if len(data) > 2 else None)
        again = control.from_wire(cls, wire.loads(wire.dumps(wire.to_obj(record))))
    else:
        record = ipc.decode(data[1:])
        again = ipc.decode(ipc.encode(record))
    if not _fits(type(record), record):
        raise ContractViolation(f"{type(record).__name__} came back with a wrong type")
    if again != record:
        raise ContractViolation(f"{type(record).__name__} changed on a re-encode")
    return record


def _one_field(which: int, field_no: int, text: bytes) -> bytes:
    """A valid sample of message ``which`` with field ``field_no`` replaced by the raw JSON
    ``text``: most inputs then reach the field checks instead of dying in the parser."""
    import dataclasses

    from appliance.vpn import ipc, wire
    from tests.fuzz import ipc_variants

    classes = list(ipc.registered().values())
    cls = classes[which % len(classes)]
    sample = ipc_variants.sample(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if not names:
        return wire.dumps(sample)
    name = names[field_no % len(names)]
    head = wire.dumps({k: v for k, v in sample.items() if k != name})
    return head[:-1] + b',"' + name.encode() + b'":' + text + b"}"


def _typed_allowed() -> tuple[type[BaseException], ...]:
    from appliance.vpn.control import ControlError
    from appliance.vpn.ipc import IpcError
    from appliance.vpn.wire import WireError

    return (IpcError, ControlError, WireError)


# ------------------------------------------------------------------------------ web forms

_FORM_SEEDS = [b"\x00alice", b"\x01ocgate", b"\x02vpn.example.com", b"\x03[2001:db8::1]",
               b"\x04a.example, b.example;c", b"\x051.1.1.1 9.9.9.9",
               b"\x0610.0.0.0/8, 2001:db8::/32", b"\x07alice@example.org",
               b"\x0810.0.0.0/8\x001.1.1.1\x00192.168.1.4\x00100000\x000",
               b"\x09staff, admins", b"\x0atcp-port = 443\n",
               b"\x0bon\x00rfc2136\x00vpn.home.test\x00198.18.100.53\x00home.test\x00k\x00"
               b"\x00on\x00staging\x00\x00me@example.org\x00c2VjcmV0\x00\x00\x00",
               b"\x0bon\x00duckdns\x00myvpn\x00\x00\x00\x00https://dd.test\x00on\x00custom"
               b"\x00https://ca.test/dir\x00\x00\x00\x00\x00tok"]


def _run_forms(data: bytes) -> object:
    from appliance.firstboot import forms
    from appliance.webui import settingsform, userstore

    kind = data[0] % 12 if data else 0
    text = _text(data[1:])
    wizard = (forms.parse_username, forms.parse_label, forms.parse_dns_name, forms.parse_host,
              forms.parse_name_list, forms.parse_dns_servers, forms.parse_routes)
    if kind < len(wizard):
        return wizard[kind](text)
    if kind == 7:
        return userstore.check_username(text)
    if kind == 8:
        fields = (text.split("\x00") + [""] * 5)[:5]
        return userstore.parse_settings_form(*fields)
    if kind == 9:
        return userstore.parse_groups(text)
    if kind == 11:
        return _reach_form(text)
    if len(text) > 2000:
        text = text[:2000]
    return settingsform.validate_text(text, "fuzz.conf"), settingsform.warnings_for(text, "f")


def _reach_form(text: str) -> object:
    """firstboot/reachform.py: never raises; what it accepts must survive reach.json."""
    import json

    from appliance.firstboot import reachform
    from appliance.reach.settings import ReachSettings

    names = reachform.FIELDS + reachform.SECRET_FIELDS
    form = dict(zip(names, text.split("\x00"), strict=False))
    got = reachform.parse_reach_form(form, {})
    if not got.errors:
        again = ReachSettings.from_json(json.loads(got.settings.to_json()))
        if again != got.settings:
            raise ContractViolation(f"reach settings changed through reach.json: {again}")
        if got.settings.acme and not got.settings.name:
            raise ContractViolation("ACME accepted without a public name")
    return got


def _forms_allowed() -> tuple[type[BaseException], ...]:
    from appliance.firstboot.forms import FormError
    from appliance.webui.userstore import UserStoreError

    return (FormError, UserStoreError)


# ------------------------------------------------------------------------------ backups


def _scratch_dir(prefix: str) -> Path:
    """A temporary folder removed when the process exits (the samples are cached for the
    whole run, so a with-block cannot own them)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def _backup_layout() -> object:
    """A throw-away state folder; plan_restore only computes paths inside it."""
    from appliance.state import StateLayout

    return StateLayout.at(_scratch_dir("ocg-fuzz-backup-"))


@functools.cache
def _backup_sample() -> bytes:
    """A real backup: certificates, passwords and configuration of a made-up appliance."""
    from appliance import pki
    from appliance.vpn.passwd import hash_password
    from appliance.webui.backup import make_backup

    src = _scratch_dir("ocg-fuzz-src-")
    from appliance.state import StateLayout

    src_layout = StateLayout.at(src)
    (src / "certs" / "clients").mkdir(parents=True)
    (src / "config-per-user").mkdir()
    ca_key, ca = pki.make_ca("fuzz CA", days=2)
    key, cert = pki.make_server_cert(ca_key, ca, names=["vpn.fuzz.test"], addresses=[],
                                     days=2)
    (src / "certs" / "server-cert.pem").write_bytes(pki.cert_pem(cert))
    (src / "certs" / "server-key.pem").write_bytes(pki.key_pem(key))
    (src / "ocserv.conf").write_text(_CONF_SEED.replace("[vhost:www.example.com]", "#")
                                     .replace("/etc/ocserv/", f"{src}/"))
    (src / "ocpasswd").write_text("alice:*:$5$a$b\n")
    (src / "admin.passwd").write_text(f"admin:*:{hash_password('x')}\n")
    (src / "config-per-user" / "alice").write_text(_USER_SEED)
    return make_backup(src_layout)


def _run_backup_archive(data: bytes) -> object:
    from appliance.webui import backup

    return backup.plan_restore(data, _backup_layout())  # type: ignore[arg-type]


def _members_from(data: bytes) -> bytes:
    """Bytes -> a well-formed tar.gz whose members come from the input.

    Raw mutations of a gzip stream almost always die at the CRC check; wrapping the fuzzed
    manifest and files in a valid archive lets the input reach the validation code.
    Members are separated by NUL NUL; each is ``name NUL content``.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for part in data.split(b"\x00\x00")[:32]:
            name, _, content = part.partition(b"\x00")
            info = tarfile.TarInfo("ocgate-backup/" + name.decode("latin-1")[:200])
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _run_backup_members(data: bytes) -> object:
    from appliance.webui import backup

    return backup.plan_restore(_members_from(data), _backup_layout())  # type: ignore[arg-type]


def _members_seeds() -> list[bytes]:
    import json

    sample = _backup_sample()
    out = []
    with tarfile.open(fileobj=io.BytesIO(sample), mode="r:gz") as tar:
        parts = []
        for member in tar:
            handle = tar.extractfile(member)
            content = handle.read() if handle else b""
            parts.append(member.name.removeprefix("ocgate-backup/").encode() + b"\x00" + content)
        out.append(b"\x00\x00".join(parts))
    manifest = {"format": "ocgate-backup", "version": 1, "files": {"ocserv.conf": "00"}}
    out.append(b"manifest.json\x00" + json.dumps(manifest).encode()
               + b"\x00\x00files/ocserv.conf\x00auth = certificate\n")
    return out


def _backup_allowed() -> tuple[type[BaseException], ...]:
    from appliance.webui.backup import BackupError

    return (BackupError,)


# ------------------------------------------------------------------------------ the table


def _allowed(module: str, *names: str) -> Callable[[], tuple[type[BaseException], ...]]:
    def load() -> tuple[type[BaseException], ...]:
        import importlib

        mod = importlib.import_module(module)
        return tuple(getattr(mod, name) for name in names)
    return load


def _static(seeds: list[bytes]) -> Callable[[], list[bytes]]:
    return lambda: list(seeds)


def _with_transcript(seeds: list[bytes], prefix: bytes = b"") -> Callable[[], list[bytes]]:
    return lambda: [prefix + s for s in seeds + _transcript_requests()]


@dataclass(frozen=True)
class _Spec:
    name: str
    run: Callable[[bytes], object]
    allowed: Callable[[], tuple[type[BaseException], ...]]
    seeds: Callable[[], list[bytes]]
    dictionary: tuple[bytes, ...] = ()
    max_len: int = 4096
    what: str = ""


_SPECS: list[_Spec] = [
    _Spec("http_request", _run_http, _allowed("appliance.vpn.protocol.http", "HttpError"),
          _with_transcript(_HTTP_SEEDS, b"\x00"), _HTTP_WORDS, 8192,
          "protocol/http.py RequestParser.feed, chunked"),
    _Spec("auth_body", _run_auth, _allowed("appliance.vpn.protocol.auth", "AuthParseError"),
          lambda: [bytes([3]) + b for b in _AUTH_SEEDS + _request_bodies()]
          + [b"\x01" + _AUTH_SEEDS[2]], _AUTH_WORDS, 8192,
          "protocol/auth.py parse_auth_body (XML and form bodies)"),
    _Spec("connect_headers", _run_connect,
          lambda: _connect_allowed(),
          _static(_CONNECT_SEEDS), _HTTP_WORDS + (b"X-CSTP-", b"X-DTLS-", b"oc-lz4", b"lzs",
                                                  b"PSK-NEGOTIATE", b"IPv6", b"IPv4"), 8192,
          "protocol/cstp.py parse_connect_request (+ compression.choose, classify_agent)"),
    _Spec("cstp_frames", _run_cstp, _allowed("appliance.vpn.protocol.cstp", "CstpError"),
          lambda: [b"\x00" + s for s in _cstp_seeds()], (b"STF\x01",), 8192,
          "protocol/cstp.py FrameDecoder.feed, parse_bye"),
    _Spec("dtls_records", _run_dtls_records,
          _allowed("appliance.vpn.protocol.dtls.record", "DtlsError", "DtlsClosed"), _dtls_seeds,
          (b"\x17\xfe\xfd", b"\x15\xfe\xfd", b"\x16\xfe\xfd", b"\x00\x01"), 4096,
          "protocol/dtls/record.py DtlsRecordLayer.open, iter_records, decode_payload"),
    _Spec("dtls_client_hello", _run_client_hello,
          _allowed("appliance.vpn.protocol.dtls.record", "DtlsError"), _hello_seeds,
          (b"\x16\xfe\xfd", b"\x16\xfe\xff", b"\xbb\x92", b"\x00\x17"), 2048,
          "protocol/dtls/record.py peek_client_hello (protocol/dtls/handshake.py routing peek)"),
    _Spec("tls_client_hello", _run_tls_client_hello,
          _allowed("appliance.vpn.protocol.tls.clienthello", "ClientHelloError"),
          _tls_hello_seeds, (b"\x16\x03\x01", b"\x00\x10", b"\x00\x00", b"acme-tls/1"),
          4096, "protocol/tls/clienthello.py peek_client_hello (the sec-mod's ALPN peek)"),
    _Spec("natpmp_response", _run_natpmp, _allowed("appliance.reach.natpmp", "NatPmpError"),
          _natpmp_seeds, (b"\x00\x80", b"\x00\x81", b"\x00\x82", b"\x01\xbb"), 64,
          "reach/natpmp.py decode_response (gateway answers on UDP 5351)"),
    _Spec("pcp_response", _run_pcp, _allowed("appliance.reach.pcp", "PcpError"), _pcp_seeds,
          (b"\x02\x81", b"\x02\x80", b"\x01\x00\x00\x10", b"\xff\xff"), 1200,
          "reach/pcp.py decode_response (MAP, ANNOUNCE, options)"),
    _Spec("tls_records", _run_tls_records,
          _allowed("appliance.vpn.protocol.tls.record", "TlsRecordError", "TlsClosed"),
          lambda: [b"\x00" + s for s in _tls_seeds()], (b"\x17\x03\x03", b"\x15\x03\x03"), 8192,
          "protocol/tls/record.py RecordLayer.feed (worker's TLS after hand-over)"),
    _Spec("lzs", _decompressor("lzs"), _allowed("appliance.vpn.protocol.lzs", "LzsError"),
          _lzs_seeds, (), 4096, "protocol/lzs.py decompress, output <= max_out"),
    _Spec("lz4", _decompressor("lz4"), _allowed("appliance.vpn.protocol.lz4", "Lz4Error"),
          _lz4_seeds, (), 4096, "protocol/lz4.py decompress, output <= max_out"),
    _Spec("compression", _run_compression,
          lambda: _compression_allowed(),
          _static([b"\x00oc-lz4,lzs, deflate", b"\x01lzs:95", b"\x01oc-lz4:-3:x",
                   b"\x02\x01" + bytes(20)]), (b"lzs", b"oc-lz4", b",", b":"), 2048,
          "protocol/compression.py accept-encoding, priority option, Compressor.decompress"),
    _Spec("config", _run_config, _allowed("appliance.vpn.config", "ConfigError"),
          _config_seeds, _CONF_WORDS, 8192,
          "config/ parse_config, parse_user_config, parse_auth_method"),
    _Spec("ocpasswd", _run_passwd, _allowed("appliance.vpn.passwd", "PasswdError"),
          _static(_PASSWD_SEEDS), (b":", b"\n", b"!", b"*", b"$5$", b","), 4096,
          "passwd.py parse_passwd, format_entry"),
    _Spec("otp_usersfile", _run_otp, lambda: (), _static(_OTP_SEEDS),
          (b"HOTP", b"/T30", b"/T60", b"/E", b"/8", b" alice ", b" - ", b" + ", b"\t",
           b"\0", b"2023-10-29T02:30:00L", _OTP_KEY.encode()), 4096,
          "auth/otp.py parse_usersfile, check (a code is never accepted twice)"),
    _Spec("control_request", _run_control, _allowed("appliance.vpn.control", "ControlError"),
          _static(_CONTROL_SEEDS), _JSON_WORDS, 4096, "control/protocol.py parse_request"),
    _Spec("ipc_decode", _run_ipc, _allowed("appliance.vpn.ipc", "IpcError"), _ipc_seeds,
          _JSON_WORDS + (b'"type"', b'"Ack"', b'"AuthInit"'), 65536, "ipc.py decode"),
    _Spec("typed_decode", _run_typed, _typed_allowed, _typed_seeds,
          _JSON_WORDS + (b'"type"', b'"settings"', b'"WorkerStats"', b'"ConnectRequest"',
                         b'"ConnectGrant"', b"[[", b"-1", b"1.5", b"\\u0000",
                         b"18446744073709551616"), 8192,
          "wire.py typed records: every IPC message, control.from_wire records"),
    _Spec("web_forms", _run_forms, _forms_allowed, _static(_FORM_SEEDS),
          (b",", b" ", b"/", b".", b":", b"\x00", b"xn--", b"@"), 2048,
          "firstboot/forms.py, reachform.py, webui/userstore.py, webui/settingsform.py validators"),
    _Spec("backup_archive", _run_backup_archive, _backup_allowed,
          lambda: [_backup_sample(), b"\x1f\x8b\x08\x00" + bytes(20)], (b"\x1f\x8b",),
          1 << 16, "webui/backup.py plan_restore on the raw upload"),
    _Spec("backup_members", _run_backup_members, _backup_allowed, _members_seeds,
          (b"\x00\x00", b"\x00", b"manifest.json", b"files/", b"certs/", b"ocserv.conf",
           b"ocpasswd", b"admin.passwd", b"../", b"config-per-user/"), 1 << 15,
          "webui/backup.py plan_restore on well-formed archives with fuzzed members"),
]


def _connect_allowed() -> tuple[type[BaseException], ...]:
    from appliance.vpn.protocol.cstp import CstpError
    from appliance.vpn.protocol.http import HttpError

    return (HttpError, CstpError)


def _compression_allowed() -> tuple[type[BaseException], ...]:
    from appliance.vpn.protocol.compression import CompressionError
    from appliance.vpn.protocol.lz4 import Lz4Error
    from appliance.vpn.protocol.lzs import LzsError

    return (CompressionError, LzsError, Lz4Error)


def _optional_specs() -> list[_Spec]:
    """The protocol extensions' parsers (optional_targets.py)."""
    from tests.fuzz import optional_targets

    return optional_targets.specs(_Spec)


@functools.cache
def load_targets() -> dict[str, Target]:
    """Build the table (imports the parser modules, so an engine can instrument them)."""
    specs = _SPECS + _optional_specs()
    return {s.name: Target(s.name, s.run, s.allowed(), s.seeds, s.dictionary, s.max_len,
                           s.what) for s in specs}


def target_names() -> list[str]:
    return [s.name for s in _SPECS + _optional_specs()]


def seed_words(seeds: list[bytes]) -> list[bytes]:
    """Tokens cut from the seeds: a cheap dictionary for inputs with a text grammar."""
    words: set[bytes] = set()
    for seed in seeds:
        words.update(w for w in re.split(rb"[\s=:;,&<>\"']+", seed) if 1 < len(w) < 40)
    return sorted(words)[:400]
