"""The auth exchange against the ocserv 1.1.6 <-> openconnect 9.01 transcript."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.protocol.auth import (
    STATIC_ENDPOINTS,
    AgentInfo,
    AuthParseError,
    AuthReply,
    FormInput,
    auth_response_headers,
    classify_agent,
    match_static,
    parse_auth_body,
    render_auth_complete,
    render_auth_form,
    static_response_headers,
)
from appliance.vpn.protocol.http import RequestParser, response

TRANSCRIPT = Path(__file__).parent / "data" / "ocserv-transcript.txt"

_XML = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_CLIENT_HEAD = (
    b'aggregate-auth-version="2"><version who="vpn">v9.01-3</version>'
    b"<device-id>linux-64</device-id><capabilities>"
    b"<auth-method>single-sign-on-v2</auth-method>"
    b"<auth-method>single-sign-on-external-browser</auth-method></capabilities>"
)
# Client bodies, transcript §1 (Content-Length 366, 362 and 372).  The password was
# redacted in the transcript; its Content-Length says it took 15 bytes on the wire, so
# a 15-byte escaped stand-in keeps the document length exact.
CLIENT_INIT = (
    _XML
    + b'<config-auth client="vpn" type="init" '
    + _CLIENT_HEAD
    + b"<group-access>https://198.18.2.11/</group-access></config-auth>\n"
)
CLIENT_USERNAME = (
    _XML
    + b'<config-auth client="vpn" type="auth-reply" '
    + _CLIENT_HEAD
    + b"<auth><username>alice</username></auth></config-auth>\n"
)
CLIENT_PASSWORD = (
    _XML
    + b'<config-auth client="vpn" type="auth-reply" '
    + _CLIENT_HEAD
    + b"<auth><password>p&lt;ss&amp;w!!</password></auth></config-auth>\n"
)

# Server bodies, transcript §1 and §3, byte for byte (Content-Length 306, 310, 324, 224).
FORM_USERNAME = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<config-auth client="vpn" type="auth-request">\n'
    b'<version who="sg">0.1(1)</version>\n'
    b'<auth id="main">\n'
    b"<message>Please enter your username.</message>\n"
    b'<form method="post" action="/auth">\n'
    b'<input type="text" name="username" label="Username:" />\n'
    b"</form></auth>\n"
    b"</config-auth>"
)
FORM_PASSWORD = FORM_USERNAME.replace(b"username.", b"password.").replace(
    b'<input type="text" name="username" label="Username:" />',
    b'<input type="password" name="password" label="Password:" />',
)
FORM_FAILED = FORM_PASSWORD.replace(b"<message>Please", b"<message>Login failed.\nPlease")
COMPLETE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<config-auth client="vpn" type="complete">\n'
    b'<version who="sg">0.1(1)</version>\n'
    b'<auth id="success">\n'
    b"<title>SSL VPN Service</title><banner>vpnrig test server</banner></auth></config-auth>\n"
)
CERT_SHA1 = "93754B27277D57FD376D2A56A5F9B73D55D54D53"

USERNAME_INPUT = FormInput("text", "username", "Username:")
PASSWORD_INPUT = FormInput("password", "password", "Password:")


def test_embedded_bodies_have_the_transcript_lengths() -> None:
    assert (len(CLIENT_INIT), len(CLIENT_USERNAME), len(CLIENT_PASSWORD)) == (366, 362, 372)
    assert [len(b) for b in (FORM_USERNAME, FORM_PASSWORD, FORM_FAILED, COMPLETE)] == [
        306,
        310,
        324,
        224,
    ]


def _transcript_server_bodies() -> list[bytes]:
    bodies: list[bytes] = []
    current: list[str] = []
    for line in TRANSCRIPT.read_text().split("\n"):
        if line.startswith("< "):
            current.append(line[2:])
        elif current:
            bodies.append("\n".join(current).encode())
            current = []
    return bodies


def test_embedded_bodies_match_the_transcript() -> None:
    bodies = _transcript_server_bodies()
    # The transcript prints bodies line by line; the complete document's final newline
    # is only visible in its Content-Length (224).
    assert bodies[0] == FORM_USERNAME
    assert bodies[1] == FORM_PASSWORD
    assert bodies[2] + b"\n" == COMPLETE
    assert bodies[-1] == FORM_FAILED
    text = TRANSCRIPT.read_bytes()
    assert b"> " + CLIENT_INIT.split(b"\n")[1] in text
    assert b"> " + CLIENT_USERNAME.split(b"\n")[1] in text


# --------------------------------------------------------------------------- rendering


def test_username_form_matches_ocserv() -> None:
    assert render_auth_form(message="Please enter your username.", inputs=[USERNAME_INPUT]) == (
        FORM_USERNAME
    )


def test_password_form_matches_ocserv() -> None:
    assert render_auth_form(message="Please enter your password.", inputs=[PASSWORD_INPUT]) == (
        FORM_PASSWORD
    )


def test_wrong_password_form_matches_ocserv() -> None:
    form = render_auth_form(
        message="Login failed.\nPlease enter your password.", inputs=[PASSWORD_INPUT]
    )
    assert form == FORM_FAILED


def test_complete_matches_ocserv() -> None:
    assert render_auth_complete(banner="vpnrig test server") == COMPLETE
    assert render_auth_complete(banner=None) == COMPLETE.replace(
        b"<banner>vpnrig test server</banner>", b""
    )


def test_form_with_banner_groups_error_and_escaping() -> None:
    form = render_auth_form(
        message="Say <hi> & 'bye'",
        inputs=[USERNAME_INPUT, PASSWORD_INPUT, FormInput("hidden", "state", value='a"b')],
        error="Bad & wrong",
        pre_login_banner="Authorised <users> only",
        groups=[("sales", "Sales Team"), ("", "default"), ("eng", "R&D")],
        auth_id="main",
        action="/auth",
    )
    assert form == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<config-auth client="vpn" type="auth-request">\n'
        b'<version who="sg">0.1(1)</version>\n'
        b'<auth id="main">\n'
        b"<banner>Authorised &lt;users&gt; only</banner>"
        b"<message>Say &lt;hi&gt; &amp; &apos;bye&apos;</message>\n"
        b"<error>Bad &amp; wrong</error>\n"
        b'<form method="post" action="/auth">\n'
        b'<input type="text" name="username" label="Username:" />\n'
        b'<input type="password" name="password" label="Password:" />\n'
        b'<input type="hidden" name="state" value="a&quot;b" />\n'
        b'<select name="group_list" label="Group:">\n'
        b'<option value="sales">Sales Team</option>\n'
        b"<option>default</option>\n"
        b'<option value="eng">R&amp;D</option>\n'
        b"</select>\n"
        b"</form></auth>\n"
        b"</config-auth>"
    )


def test_form_refuses_unknown_input_type() -> None:
    with pytest.raises(ValueError, match="input type"):
        render_auth_form(message="x", inputs=[FormInput("sso", "x")])


def test_first_form_headers_match_ocserv() -> None:
    headers = auth_response_headers(context_cookie=None, context_max_age=None)
    assert response(200, "OK", headers, FORM_USERNAME) == (
        b"HTTP/1.1 200 OK\r\n"
        b"Set-Cookie: webvpncontext=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; "
        b"Secure; HttpOnly\r\n"
        b"Content-Type: text/xml\r\n"
        b"Content-Length: 306\r\n"
        b"X-Transcend-Version: 1\r\n"
        b"\r\n" + FORM_USERNAME
    )


def test_later_form_headers_match_ocserv() -> None:
    sid = "A" * 43 + "="
    headers = auth_response_headers(context_cookie=sid, context_max_age=300)
    assert response(200, "OK", headers, FORM_FAILED) == (
        b"HTTP/1.1 200 OK\r\n"
        b"Set-Cookie: webvpncontext=" + sid.encode() + b"; Max-Age=300; Secure; HttpOnly\r\n"
        b"Content-Type: text/xml\r\n"
        b"Content-Length: 324\r\n"
        b"X-Transcend-Version: 1\r\n"
        b"\r\n" + FORM_FAILED
    )


def test_complete_headers_match_ocserv() -> None:
    sid = "c0ntext/+=" * 4 + "abc="
    cookie = "B" * 43 + "="
    headers = auth_response_headers(
        context_cookie=sid,
        context_max_age=300,
        session_cookie=cookie,
        server_cert_sha1_hex=CERT_SHA1.lower(),
    )
    assert response(200, "OK", headers, COMPLETE) == (
        b"HTTP/1.1 200 OK\r\n"
        b"Connection: Keep-Alive\r\n"
        b"Content-Type: text/xml\r\n"
        b"Content-Length: 224\r\n"
        b"X-Transcend-Version: 1\r\n"
        b"Set-Cookie: webvpncontext=" + sid.encode() + b"; Secure; HttpOnly\r\n"
        b"Set-Cookie: webvpn=" + cookie.encode() + b"; Secure; HttpOnly\r\n"
        b"Set-Cookie: webvpnc=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; Secure; HttpOnly\r\n"
        b"Set-Cookie: webvpnc=bu:/&p:t&iu:1/&sh:" + CERT_SHA1.encode() + b"; path=/; Secure; "
        b"HttpOnly\r\n"
        b"\r\n" + COMPLETE
    )


@pytest.mark.parametrize("bad", ["a;b", "a b", "x\r\n", 'q"', "a,b"])
def test_cookie_values_are_validated(bad: str) -> None:
    with pytest.raises(ValueError):
        auth_response_headers(context_cookie=bad, context_max_age=300)
    with pytest.raises(ValueError):
        auth_response_headers(context_cookie=None, context_max_age=None, session_cookie=bad)


def test_cert_hash_is_validated() -> None:
    with pytest.raises(ValueError, match="40 hex"):
        auth_response_headers(
            context_cookie=None, context_max_age=None, session_cookie="x", server_cert_sha1_hex="zz"
        )


def test_every_set_cookie_has_an_equals_sign() -> None:
    """openconnect treats a Set-Cookie without '=' as a hard error (§2.2)."""
    for headers in (
        auth_response_headers(context_cookie=None, context_max_age=None),
        auth_response_headers(
            context_cookie="x",
            context_max_age=1,
            session_cookie="y",
            server_cert_sha1_hex=CERT_SHA1,
        ),
    ):
        for name, value in headers:
            if name == "Set-Cookie":
                assert "=" in value.split(";")[0]


# --------------------------------------------------------------------------- parsing


def test_parse_transcript_init() -> None:
    reply = parse_auth_body(CLIENT_INIT, "application/xml; charset=utf-8")
    assert reply == AuthReply(kind="init")


def test_parse_transcript_username() -> None:
    reply = parse_auth_body(CLIENT_USERNAME, "application/xml; charset=utf-8")
    assert reply == AuthReply(kind="auth-reply", username="alice")


def test_parse_transcript_password_with_entities() -> None:
    reply = parse_auth_body(CLIENT_PASSWORD, "application/xml; charset=utf-8")
    assert reply.kind == "auth-reply"
    assert reply.password == "p<ss&w!!"
    assert reply.username is None


def test_parse_full_request_through_http_parser() -> None:
    raw = (
        b"POST /auth HTTP/1.1\r\nHost: 198.18.2.11\r\n"
        b"Content-Type: application/xml; charset=utf-8\r\n"
        b"Content-Length: " + str(len(CLIENT_USERNAME)).encode() + b"\r\n\r\n" + CLIENT_USERNAME
    )
    [req] = RequestParser().feed(raw)
    reply = parse_auth_body(req.body, req.headers.get("Content-Type"))
    assert reply.username == "alice"


def test_parse_group_select_and_secondary_password() -> None:
    body = (
        _XML + b'<config-auth client="vpn" type="auth-reply"><auth>'
        b"<username>bob</username><secondary_password>123456</secondary_password></auth>"
        b"<group-select>Sales Team</group-select></config-auth>"
    )
    reply = parse_auth_body(body, None)
    assert (reply.username, reply.password, reply.group) == ("bob", "123456", "Sales Team")


def test_parse_password_prefers_password_element() -> None:
    body = (
        _XML + b"<config-auth type='auth-reply'><auth><new_password>n</new_password>"
        b"<password>p</password></auth></config-auth>"
    )
    assert parse_auth_body(body, None).password == "p"


def test_parse_logout_with_session_token() -> None:
    body = (
        _XML + b'<config-auth client="vpn" type="logout">'
        b"<session-token>ABC=</session-token></config-auth>"
    )
    reply = parse_auth_body(body, "text/xml")
    assert reply == AuthReply(kind="logout", session_token="ABC=")


def test_parse_is_case_insensitive_like_ocserv() -> None:
    body = b"<?xml version='1.0'?><CONFIG-AUTH TYPE=\"auth-reply\"><USERNAME>Eve</USERNAME>"
    body += b"<Password>x</Password></CONFIG-AUTH>"
    reply = parse_auth_body(body, None)
    assert (reply.kind, reply.username, reply.password) == ("auth-reply", "Eve", "x")


def test_parse_xml_without_declaration_and_odd_type() -> None:
    reply = parse_auth_body(b'<config-auth type="weird"><username>u</username></config-auth>', None)
    assert reply.kind == "auth-reply"
    assert reply.username == "u"


def test_parse_empty_elements_and_char_refs() -> None:
    body = _XML + b"<config-auth type='auth-reply'><username>&#x41;&#66;&NBSP;&foo;</username>"
    body += b"<password/></config-auth>"
    reply = parse_auth_body(body, None)
    assert reply.username == "AB &foo;"
    assert reply.password == ""


def test_parse_form_urlencoded() -> None:
    reply = parse_auth_body(
        b"username=al%69ce+x&password=p%26ss%3D%C3%B6&group%5flist=Sales+Team",
        "application/x-www-form-urlencoded",
    )
    assert reply == AuthReply(
        kind="form", username="alice x", password="p&ss=\u00f6", group="Sales Team"
    )


def test_parse_form_variants() -> None:
    reply = parse_auth_body(b"group_list=g&secondary_password=123&username=u", None)
    assert (reply.username, reply.password, reply.group) == ("u", "123", "g")
    assert parse_auth_body(b"username=u&password=", None).password == ""
    assert parse_auth_body(b"foo=bar", None) == AuthReply(kind="form")


def test_parse_empty_body() -> None:
    assert parse_auth_body(b"", None).kind == "empty"
    assert parse_auth_body(b"  \r\n", "text/xml").kind == "empty"


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe garbage",
        b"just some words",
        b"username=a%zz",
        b"username=%C3",
        b"a=b\x00c",
        _XML + b"<config-auth><username>alice",
        _XML + b"<config-auth><password>secret",
        _XML + b"<foo/>",
        _XML + b'<!DOCTYPE x [<!ENTITY a "b">]><config-auth><username>&a;</username>',
        _XML + b"<config-auth><username>a<b/>c</username></config-auth>",
        _XML + b"<config-auth><username>&#0;</username></config-auth>",
        _XML + b"<config-auth><username>&#xD800;</username></config-auth>",
        _XML + b"<config-auth><username>a\x01b</username></config-auth>",
        b"username=a%0Ab",
        _XML + b"<config-auth><username>" + b"u" * 256 + b"</username></config-auth>",
        b"password=" + b"p" * 1025,
        b"password=" + "\u00e9".encode() * 513,
    ],
)
def test_parse_rejects(body: bytes) -> None:
    with pytest.raises(AuthParseError):
        parse_auth_body(body, None)


def test_parse_limits_are_inclusive() -> None:
    reply = parse_auth_body(b"username=" + b"u" * 255 + b"&password=" + b"p" * 1024, None)
    assert len(reply.username or "") == 255
    assert len(reply.password or "") == 1024


def test_parse_large_hostile_bodies_quickly() -> None:
    import time

    bodies = [
        _XML + b"<password" * 7000,
        _XML + b"<" + b"a" * 60000,
        _XML + b"<a" * 30000,
        b"<?xml" + b"&#x" * 20000,
        b"=" * 60000,
    ]
    start = time.perf_counter()
    for body in bodies:
        try:
            parse_auth_body(body, None)
        except AuthParseError:
            pass
    assert time.perf_counter() - start < 2.0


_fragments = st.sampled_from(
    [
        "<?xml",
        "<config-auth",
        " type=",
        '"auth-reply"',
        '"init"',
        ">",
        "</",
        "<username>",
        "</username>",
        "<password",
        "_password>",
        "<group-select>",
        "</group-select>",
        "<session-token>",
        "&amp;",
        "&#x",
        "&#",
        ";",
        "=",
        "&",
        "%",
        "%4",
        "+",
        "username=",
        "password=",
        "group_list=",
        "\x00",
        "\xe9",
        "/>",
        "<!DOCTYPE",
        "a",
        " ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(_fragments, max_size=40).map(lambda parts: "".join(parts).encode("utf-8")),
    ),
    st.sampled_from([None, "text/xml", "application/x-www-form-urlencoded"]),
)
def test_fuzz_parse_auth_body(body: bytes, content_type: str | None) -> None:
    try:
        reply = parse_auth_body(body, content_type)
    except AuthParseError:
        return
    assert reply.kind in ("init", "auth-reply", "logout", "form", "empty")
    for value in (reply.username, reply.password, reply.group, reply.session_token):
        assert value is None or isinstance(value, str)
    if reply.username is not None:
        assert len(reply.username.encode()) <= 255


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=40).filter(lambda s: "\x00" not in s),
    st.text(max_size=40).filter(lambda s: "\x00" not in s),
)
def test_fuzz_form_round_trip(username: str, password: str) -> None:
    """What openconnect --no-xmlpost would send for any credentials parses back."""
    from urllib.parse import urlencode

    username = re.sub(r"[\x00-\x1f\x7f]", "", username)
    body = urlencode({"username": username, "password": password}).encode()
    if not body.strip():
        return
    reply = parse_auth_body(body, "application/x-www-form-urlencoded")
    assert (reply.username, reply.password) == (username, password)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40).filter(lambda s: "\x00" not in s))
def test_fuzz_xml_escape_round_trip(password: str) -> None:
    """Whatever we (or libxml2) escape comes back unchanged."""
    from xml.sax.saxutils import escape

    password = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]", "", password)
    body = _XML + b"<config-auth type='auth-reply'><auth><password>"
    body += escape(password).encode() + b"</password></auth></config-auth>"
    assert parse_auth_body(body, None).password == password


# --------------------------------------------------------------------------- agents


@pytest.mark.parametrize(
    ("ua", "platform", "kind", "mobile"),
    [
        ("Open AnyConnect VPN Agent v9.01-3", None, "openconnect", False),
        ("Open AnyConnect VPN Agent v3.02", None, "openconnect-v3", False),
        ("open anyconnect vpn agent v12", None, "openconnect", False),
        ("Open AnyConnect VPN Agent vX", None, "openconnect-v3", False),
        ("OpenConnect VPN Agent (PalmOS)", None, "openconnect", False),
        ("AnyConnect-compatible OpenConnect VPN Agent v9.12", None, "openconnect", False),
        ("Cisco AnyConnect VPN Agent for Apple iPhone 4.10", None, "anyconnect-ios", False),
        ("Cisco AnyConnect VPN Agent for Windows 4.10.0", None, "anyconnect", False),
        ("AnyConnect Linux_64 4.10.05095", None, "anyconnect", False),
        ("AnyConnect Darwin_i386 4.10", "apple-ios", "anyconnect-ios", True),
        ("AnyConnect Android 4.10", "android", "anyconnect", True),
        ("Clavister OneConnect VPN 1.0", None, "clavister", False),
        ("AnyLink Secure Client 1.0", None, "anylink", False),
        ("Cisco SVC IPPhone Client v1.0", None, "ipphone", False),
        ("curl/8.0", None, "unknown", False),
        (None, None, "unknown", False),
        ("curl/8.0", "Android 13", "unknown", True),
    ],
)
def test_classify_agent(ua: str | None, platform: str | None, kind: str, mobile: bool) -> None:
    assert classify_agent(ua, platform) == AgentInfo(kind, mobile)


# --------------------------------------------------------------------------- static URLs


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/VPNManifest.xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<vpn rev="1.0">\n</vpn>\n'),
        (
            "/+CSCOT+/translation-table?textdomain=AnyConnect&type=manifest",
            b'<?xml version="1.0" encoding="UTF-8"?>\n<vpn rev="1.0">\n</vpn>\n',
        ),
        (
            "/+CSCOT+/oem-customization?app=AnyConnect&type=oem&platform=linux-64&resource-type=x",
            b'<?xml version="1.0" encoding="UTF-8"?>\n<vpn rev="1.0">\n</vpn>\n',
        ),
        ("/1/binaries/update.txt", b"0,0,0000\n"),
        ("/1/Linux_64", b"<html></html>\n"),
        ("/1/Linux/sub", b"<html></html>\n"),
        ("/logout", b"<html></html>\n"),
    ],
)
def test_match_static(path: str, body: bytes) -> None:
    match = match_static(path)
    assert match is not None
    assert match[1] == body


@pytest.mark.parametrize(
    "path", ["/", "/auth", "/VPNManifest.xmlx", "/1/Linux_32", "/logoutnow", "/+CSCOT+/", ""]
)
def test_match_static_misses(path: str) -> None:
    assert match_static(path) is None


def test_static_table_and_headers() -> None:
    assert STATIC_ENDPOINTS["/1/binaries/vpndownloader.sh"] == (
        "application/x-shellscript",
        b"#!/bin/sh\n\nexit 0",
    )
    content_type, body = STATIC_ENDPOINTS["/VPNManifest.xml"]
    assert response(200, "OK", static_response_headers(content_type), body) == (
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nContent-Type: text/xml\r\n"
        b"X-Transcend-Version: 1\r\nContent-Length: 62\r\n\r\n" + body
    )
