"""Targets for the parsers of the protocol extensions (PROXY protocol, RADIUS, AnyConnect URL
and cookie handling, tls-priorities, the legacy DTLS ClientHello), kept apart from the core
table in targets.py."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- PROXY protocol

_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
_PROXY_SEEDS = [
    b"PROXY TCP4 198.51.100.7 198.51.100.1 51000 443\r\nGET / HTTP/1.1\r\n",
    b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n", b"PROXY UNKNOWN\r\n",
    _V2_SIG + b"\x21\x11\x00\x0c" + bytes([198, 51, 100, 7, 198, 51, 100, 1]) + b"\xc7\x38\x01\xbb",
    _V2_SIG + b"\x21\x21\x00\x24" + bytes(16) + bytes(15) + b"\x01" + b"\xc7\x38\x01\xbb",
    _V2_SIG + b"\x20\x00\x00\x07\x04\x00\x04abcd"[:11],
    _V2_SIG + b"\x21\x11\x00\x13" + bytes(12) + b"\x02\x00\x04host",
]


def _run_proxy(data: bytes) -> object:
    from appliance.vpn.protocol import proxyproto

    result = proxyproto.parse(data)
    if isinstance(result, proxyproto.ProxyHeader):
        _ = result.has_client_address
        if not 0 < result.consumed <= len(data):
            raise AssertionError(f"consumed {result.consumed} of {len(data)} bytes")
    return result


# --------------------------------------------------------------------------- RADIUS

_RADIUS_CONF_SEED = (b"authserver 198.51.100.9:1812\nacctserver 198.51.100.9\n"
                     b"servers /etc/radcli/servers\nradius_timeout 3\nradius_retries 2\n"
                     b"nas-identifier ocgate\nbindaddr *\ndefault_realm example\n"
                     b"\x00\x00198.51.100.9 s3cret\n[2001:db8::9]:1812 other\n")


def _run_radius_conf(data: bytes) -> object:
    from appliance.vpn.auth.radius import conf as radiusconf

    conf, _, servers = data.partition(b"\x00\x00")
    # as radiusconf._read hands them over: UTF-8 with replacement characters
    return radiusconf.parse_radius_conf(conf.decode("utf-8", "replace"), "radiusclient.conf",
                                        servers.decode("utf-8", "replace") or None)


def _radius_seeds() -> list[bytes]:
    from pyrad import packet as rpacket

    from appliance.vpn.auth.radius import auth as radius

    req = rpacket.AuthPacket(code=rpacket.AccessRequest, secret=b"s", dict=radius.dictionary())
    reply = req.CreateReply()
    reply.code = rpacket.AccessAccept
    for name, value in (("Service-Type", "Framed-User"), ("Class", b"OU=staff;"),
                        ("Framed-IP-Address", "198.51.100.20"), ("Session-Timeout", 600),
                        ("Framed-Route", "198.51.100.0/24 0.0.0.0 1")):
        try:
            reply.AddAttribute(name, value)
        except (KeyError, ValueError, TypeError):
            pass
    reply.authenticator = bytes(16)
    return [reply.ReplyPacket(), bytes([2, 1, 0, 20]) + bytes(16)]


def _run_radius_reply(data: bytes) -> object:
    from pyrad import packet as rpacket

    from appliance.vpn.auth.radius import auth as radius

    req = rpacket.AuthPacket(code=rpacket.AccessRequest, secret=b"s", dict=radius.dictionary())
    reply = req.CreateReply(packet=data)
    return radius.parse_accept(reply, True)


def _radius_reply_allowed() -> tuple[type[BaseException], ...]:
    from pyrad import packet as rpacket

    from appliance.vpn.auth.radius.auth import RadiusError

    return (RadiusError, rpacket.PacketError)


# --------------------------------------------------------------------------- AnyConnect


def _run_anyconnect(data: bytes) -> object:
    from appliance.vpn.protocol import anyconnect

    kind = data[0] % 3 if data else 0
    text = data[1:].decode("latin-1")  # as protocol/http.py decodes the request line
    if kind == 0:
        return anyconnect.group_from_url(text, lambda path: path in ("/", "/auth"))
    if kind == 1:
        return anyconnect.session_cookie({"webvpn": text})
    return anyconnect.is_profile_request("GET", text)


# --------------------------------------------------------------------------- tls-priorities


def _run_priorities(data: bytes) -> object:
    from appliance.vpn.protocol.tls import priorities as tlspriorities

    return tlspriorities.parse_priorities(_text(data), aes_hw=bool(len(data) & 1))


def _allowed(module: str, *names: str) -> Callable[[], tuple[type[BaseException], ...]]:
    def load() -> tuple[type[BaseException], ...]:
        mod = importlib.import_module(module)
        return tuple(getattr(mod, name) for name in names)
    return load


def specs(spec: Callable[..., Any]) -> list[Any]:
    """The extension targets, built with targets._Spec."""
    return [
        spec("proxy_header", _run_proxy,
             _allowed("appliance.vpn.protocol.proxyproto", "ProxyProtocolError"),
             lambda: list(_PROXY_SEEDS), (b"PROXY ", b"TCP4 ", b"TCP6 ", b"\r\n",
                                          _V2_SIG, b"\x21\x11", b"\x21\x21"),
             1024, "protocol/proxyproto.py parse (v1 and v2)"),
        spec("radius_conf", _run_radius_conf,
             _allowed("appliance.vpn.auth.radius.conf", "RadiusConfError"),
             lambda: [_RADIUS_CONF_SEED], (b"authserver", b"acctserver", b":",
                                           b"\n", b"[", b"]", b"radius_timeout"),
             4096, "auth/radius/conf.py parse_radius_conf (+ servers file)"),
        spec("radius_reply", _run_radius_reply, _radius_reply_allowed,
             _radius_seeds, (), 4096, "auth/radius/auth.py: pyrad reply decoding + parse_accept"),
        spec("anyconnect_url", _run_anyconnect,
             _allowed("appliance.vpn.protocol.anyconnect", "AnyConnectError"),
             lambda: [b"\x00/staff?x=1", b"\x00/%41%ff", b"\x01abc123",
                      b"\x02/profiles%2Fprofile.xml"], (b"%", b"/", b"?"), 1024,
             "protocol/anyconnect.py group_from_url, session_cookie"),
        spec("tls_priorities", _run_priorities,
             _allowed("appliance.vpn.protocol.tls.priorities", "PriorityError"),
             lambda: [b"NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0",
                      b"SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.2:-RSA",
                      b"PERFORMANCE:-CIPHER-ALL:+AES-128-GCM"],
             (b":", b"+", b"-", b"!", b"%", b"VERS-", b"CIPHER-ALL"), 1024,
             "protocol/tls/priorities.py parse_priorities (tls-priorities option)"),
        spec("dtls_legacy_hello", _run_legacy_hello,
             _allowed("appliance.vpn.protocol.dtls.legacy", "LegacyDtlsError"),
             _legacy_hello_seeds, (b"\x01\x00", b"\xfe\xfd", b"\x01\x00\x00"), 1024,
             "protocol/dtls/legacy.py parse_client_hello (resumption ClientHello)"),
    ]


def _run_legacy_hello(data: bytes) -> object:
    from appliance.vpn.protocol.dtls import legacy as dtlslegacy

    return dtlslegacy.parse_client_hello(data)


def _legacy_hello_seeds() -> list[bytes]:
    """A resumption ClientHello as openconnect sends it: DTLS 1.2, a 32-byte session id,
    the GCM suites, no cookie, null compression."""
    body = (b"\xfe\xfd" + bytes(range(32)) + b"\x20" + bytes(32) + b"\x00"
            + b"\x00\x04\x00\x9d\x00\x9c" + b"\x01\x00")
    header = b"\x01" + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" \
        + len(body).to_bytes(3, "big")
    return [header + body]
