"""Byte-level tests of the sans-IO HTTP request parser and response writer."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.protocol.http import Headers, HttpError, Request, RequestParser, response

# The first request openconnect 9.01 sent in the rig transcript (§1), verbatim.
INIT_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<config-auth client="vpn" type="init" aggregate-auth-version="2">'
    b'<version who="vpn">v9.01-3</version><device-id>linux-64</device-id>'
    b"<capabilities><auth-method>single-sign-on-v2</auth-method>"
    b"<auth-method>single-sign-on-external-browser</auth-method></capabilities>"
    b"<group-access>https://198.18.2.11/</group-access></config-auth>\n"
)
INIT_REQUEST = (
    b"POST / HTTP/1.1\r\n"
    b"Host: 198.18.2.11\r\n"
    b"User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n"
    b"Accept: */*\r\n"
    b"Accept-Encoding: identity\r\n"
    b"X-Transcend-Version: 1\r\n"
    b"X-Aggregate-Auth: 1\r\n"
    b"X-Support-HTTP-Auth: true\r\n"
    b"X-Pad: 000000000000000000\r\n"
    b"Content-Type: application/xml; charset=utf-8\r\n"
    b"Content-Length: 366\r\n"
    b"\r\n" + INIT_BODY
)
CONNECT_REQUEST = (
    b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n"
    b"Host: 198.18.2.11\r\n"
    b"User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n"
    b"Cookie: webvpn=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
    b"X-CSTP-Version: 1\r\n"
    b"X-CSTP-Base-MTU: 1500\r\n"
    b"X-CSTP-MTU: 1390\r\n"
    b"\r\n"
)
CSTP_DPD = b"STF\x01\x00\x00\x03\x00"


def test_transcript_init_request_parses() -> None:
    assert len(INIT_BODY) == 366
    [req] = RequestParser().feed(INIT_REQUEST)
    assert (req.method, req.target, req.version) == ("POST", "/", "HTTP/1.1")
    assert req.body == INIT_BODY
    assert req.headers.get("user-agent") == "Open AnyConnect VPN Agent v9.01-3"
    assert req.headers.get("CONTENT-TYPE") == "application/xml; charset=utf-8"
    assert "x-aggregate-auth" in req.headers
    assert req.headers.items()[0] == ("Host", "198.18.2.11")
    assert req.keep_alive


def test_pipelined_keep_alive_requests_in_one_feed() -> None:
    second = INIT_REQUEST.replace(b"POST / ", b"POST /auth ")
    get = b"GET /VPNManifest.xml?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
    reqs = RequestParser().feed(INIT_REQUEST + second + get)
    assert [r.target for r in reqs] == ["/", "/auth", "/VPNManifest.xml?x=1"]
    assert reqs[1].body == INIT_BODY
    assert reqs[2].body == b""
    assert reqs[2].path == "/VPNManifest.xml"
    assert reqs[2].query == "x=1"


def test_every_split_point_gives_the_same_requests() -> None:
    stream = INIT_REQUEST + CONNECT_REQUEST + CSTP_DPD
    whole = RequestParser()
    expected = whole.feed(stream)
    expected_rest = whole.remaining()
    assert expected_rest == CSTP_DPD
    for cut in range(len(stream) + 1):
        parser = RequestParser()
        got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert got == expected, cut
        assert parser.remaining() == expected_rest, cut


def test_byte_by_byte_feed() -> None:
    parser = RequestParser()
    got: list[Request] = []
    for i in range(len(INIT_REQUEST)):
        got += parser.feed(INIT_REQUEST[i : i + 1])
    assert len(got) == 1
    assert got[0].body == INIT_BODY


def test_connect_stops_parsing_and_keeps_the_rest() -> None:
    parser = RequestParser()
    reqs = parser.feed(CONNECT_REQUEST + CSTP_DPD + b"GET / HTTP/1.1\r\n\r\n")
    assert [r.method for r in reqs] == ["CONNECT"]
    assert parser.tunnel
    assert reqs[0].cookies() == {"webvpn": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    assert parser.feed(b"more") == []
    assert parser.remaining() == CSTP_DPD + b"GET / HTTP/1.1\r\n\r\nmore"
    assert parser.remaining() == b""


def test_connect_with_body_is_refused() -> None:
    with pytest.raises(HttpError) as err:
        RequestParser().feed(b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert err.value.status == 400


def test_get_without_length_has_empty_body_and_post_waits_for_body() -> None:
    parser = RequestParser()
    assert parser.feed(b"POST /auth HTTP/1.1\r\nContent-Length: 5\r\n\r\nab") == []
    [req] = parser.feed(b"cdeGET")
    assert req.body == b"abcde"
    assert parser.feed(b" / HTTP/1.0\r\n\r\n")[0].version == "HTTP/1.0"


def test_leading_empty_lines_are_skipped_but_bounded() -> None:
    [req] = RequestParser().feed(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert req.method == "GET"
    with pytest.raises(HttpError) as err:
        RequestParser().feed(b"\r\n" * 100)
    assert err.value.status == 400


def test_cookies_from_several_headers_first_wins() -> None:
    raw = (
        b"GET / HTTP/1.1\r\nCookie: webvpncontext=abc=; junk; a=1\r\n"
        b"cookie: webvpn=XYZ; a=2\r\n\r\n"
    )
    [req] = RequestParser().feed(raw)
    assert req.cookies() == {"webvpncontext": "abc=", "a": "1", "webvpn": "XYZ"}
    assert req.headers.get_all("COOKIE") == ["webvpncontext=abc=; junk; a=1", "webvpn=XYZ; a=2"]


def test_latin1_header_values() -> None:
    [req] = RequestParser().feed(b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n")
    assert req.headers.get("x-name") == "caf\xe9"


def test_connection_semantics() -> None:
    parser = RequestParser()
    reqs = parser.feed(
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
        b"GET / HTTP/1.0\r\n\r\n"
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    )
    assert [r.keep_alive for r in reqs] == [False, False, True]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / HTTPS/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\tfolded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nName : x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\nb\r\n\r\n", 400),
        (b"GET /a\x01 HTTP/1.1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n", 501),
    ],
)
def test_malformed_requests(raw: bytes, status: int) -> None:
    parser = RequestParser()
    with pytest.raises(HttpError) as err:
        parser.feed(raw)
    assert err.value.status == status
    # The parser stays failed: the connection has to be answered and closed.
    with pytest.raises(HttpError):
        parser.feed(b"GET / HTTP/1.1\r\n\r\n")


def test_agreeing_duplicate_content_length_is_accepted() -> None:
    [req] = RequestParser().feed(
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
    )
    assert req.body == b"ok"


def test_header_size_limit() -> None:
    parser = RequestParser(max_header_bytes=100)
    parser.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HttpError) as err:
        parser.feed(b"X-Long: " + b"a" * 100)
    assert err.value.status == 431
    # A complete but oversized head is refused too.
    with pytest.raises(HttpError) as err:
        RequestParser(max_header_bytes=30).feed(b"GET / HTTP/1.1\r\nX-A: 12345678901234\r\n\r\n")
    assert err.value.status == 431


def test_body_limit_is_configurable() -> None:
    assert RequestParser(max_body_bytes=10).feed(
        b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"
    )
    with pytest.raises(HttpError) as err:
        RequestParser(max_body_bytes=10).feed(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
    assert err.value.status == 413


def test_garbage_is_refused_at_the_first_line() -> None:
    parser = RequestParser()
    with pytest.raises(HttpError) as err:
        parser.feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n")
    assert err.value.status == 400


def test_one_megabyte_of_garbage_fails_fast() -> None:
    garbage = os.urandom(1 << 20).replace(b"\r", b"").replace(b"\n", b"")
    for chunk_size in (1, 7, 4096):
        parser = RequestParser()
        start = time.perf_counter()
        with pytest.raises(HttpError) as err:
            for i in range(0, len(garbage), chunk_size):
                parser.feed(garbage[i : i + chunk_size])
        assert err.value.status == 431
        assert time.perf_counter() - start < 2.0


def test_slow_header_drip_is_linear() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"0" * 16000
    parser = RequestParser(max_header_bytes=16384)
    start = time.perf_counter()
    for byte in head:
        assert parser.feed(bytes([byte])) == []
    assert parser.feed(b"\r\n\r\n")[0].headers.get("x-pad") == "0" * 16000
    assert time.perf_counter() - start < 2.0


def test_headers_container() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("X", "y"), ("set-cookie", "b=2")])
    assert headers.get("SET-COOKIE") == "a=1"
    assert headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert headers.get("missing") is None
    assert "x" in headers and "z" not in headers and 3 not in headers
    assert len(headers) == 3
    assert list(headers) == ["Set-Cookie", "X", "set-cookie"]


def test_request_path_and_query() -> None:
    req = Request("GET", "/+CSCOT+/translation-table?type=manifest&x", "HTTP/1.1", Headers(), b"")
    assert req.path == "/+CSCOT+/translation-table"
    assert req.query == "type=manifest&x"
    assert Request("GET", "/", "HTTP/1.1", Headers(), b"").query == ""


# --------------------------------------------------------------------------- response


def test_response_serialisation() -> None:
    out = response(200, "OK", [("Content-Type", "text/xml"), ("X-Transcend-Version", "1")], b"<a/>")
    assert out == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nX-Transcend-Version: 1\r\n"
        b"Content-Length: 4\r\n\r\n<a/>"
    )


def test_response_fills_content_length_in_place() -> None:
    out = response(200, "OK", [("A", "1"), ("Content-Length", "0"), ("B", "2")], b"hello")
    assert out == b"HTTP/1.1 200 OK\r\nA: 1\r\nContent-Length: 5\r\nB: 2\r\n\r\nhello"


def test_response_without_content_length() -> None:
    assert response(200, "CONNECTED", [("X-CSTP-Version", "1")], content_length=False) == (
        b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-Version: 1\r\n\r\n"
    )
    assert response(401, "Authentication failed") == (
        b"HTTP/1.1 401 Authentication failed\r\nContent-Length: 0\r\n\r\n"
    )


def test_response_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="CR, LF"):
        response(200, "OK", [("X-Banner", "a\r\nSet-Cookie: x=y")])
    with pytest.raises(ValueError, match="CR, LF"):
        response(200, "OK\r\n")


def test_response_output_parses_back_as_utf8() -> None:
    out = response(200, "OK", [("X-CSTP-Banner", "Grüße")])
    assert "X-CSTP-Banner: Grüße\r\n".encode() in out


# --------------------------------------------------------------------------- fuzz


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_fuzz_feed_only_raises_http_error(chunks: list[bytes]) -> None:
    parser = RequestParser(max_header_bytes=512, max_body_bytes=256)
    try:
        for chunk in chunks:
            for req in parser.feed(chunk):
                assert isinstance(req, Request)
    except HttpError as exc:
        assert exc.status in (400, 413, 431, 501, 505)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"
_token = st.text(alphabet=_LETTERS, min_size=1, max_size=12)
_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["GET", "POST", "PUT"]),
            st.lists(st.tuples(_token, _value), max_size=5),
            st.binary(max_size=40),
        ),
        min_size=1,
        max_size=4,
    ),
    st.data(),
)
def test_fuzz_roundtrip_pipelined(
    specs: list[tuple[str, list[tuple[str, str]], bytes]], data: st.DataObject
) -> None:
    stream = b""
    for method, fields, body in specs:
        framing = ("content-length", "transfer-encoding")
        fields = [(n, v) for n, v in fields if n.lower() not in framing]
        head = f"{method} /x HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
        stream += head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    parser = RequestParser()
    got: list[Request] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        got += parser.feed(stream[last:cut])
        last = cut
    assert [(r.method, r.body) for r in got] == [(m, b) for m, _, b in specs]
    assert parser.remaining() == b""
