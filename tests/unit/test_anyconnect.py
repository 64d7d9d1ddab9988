"""AnyConnect specifics with bytes: the profile manifest and webvpnc cookie (docs/protocol.md
§2.4.4), profile/logout/group URLs (§2.9, §11 items 21, 27), and the sec-mod's verdicts
(CONNECT certificate rule §2.6, profile download, logout)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn import ipc
from appliance.vpn.config import parse_config
from appliance.vpn.protocol import anyconnect, auth, http
from appliance.vpn.protocol.anyconnect import (
    AnyConnectError,
    complete_with_profile,
    group_from_url,
    is_profile_request,
    profile_ref,
    session_cookie,
    with_profile_cookie,
)
from appliance.vpn.secmod.anyconnect import (
    APPROVAL_TTL,
    CertGate,
    ProfileCache,
    connect_needs_cert,
    profile_answer,
)
from appliance.vpn.secmod.cookies import SessionStore

PROFILE = b'<?xml version="1.0" encoding="UTF-8"?>\n<AnyConnectProfile></AnyConnectProfile>\n'
CERT_SHA1 = "ab" * 20
NET = "ipv4-network = 203.0.113.0/24\n"
PLAIN = 'auth = "plain[passwd=/etc/ocserv/ocpasswd]"\n' + NET
CERT = "auth = certificate\nca-cert = /x\ncert-user-oid = 2.5.4.3\n" + NET


def _known(path: str) -> bool:
    return path in anyconnect.AUTH_URLS or auth.match_static(path) is not None


def test_profile_ref_is_upper_case_sha1_of_the_bytes() -> None:
    ref = profile_ref("/etc/ocserv/profile.xml", PROFILE)
    assert ref.sha1 == hashlib.sha1(PROFILE).hexdigest().upper()
    assert ref.name == "/etc/ocserv/profile.xml"


@pytest.mark.parametrize("name", ["", "a b.xml", "x;y.xml", "a&b.xml", "<x>.xml"])
def test_profile_names_that_would_break_the_cookie_are_refused(name: str) -> None:
    with pytest.raises(AnyConnectError):
        profile_ref(name, PROFILE)


def test_oversized_profile_is_refused() -> None:
    with pytest.raises(AnyConnectError):
        profile_ref("p.xml", b"x" * (anyconnect.MAX_PROFILE_BYTES + 1))


def test_complete_document_with_and_without_profile() -> None:
    plain = complete_with_profile("Hi", None)
    assert plain == auth.render_auth_complete(banner="Hi")
    ref = profile_ref("profile.xml", PROFILE)
    body = complete_with_profile("Hi", ref).decode()
    assert body.startswith(plain.decode()[: -len("</auth></config-auth>\n")])
    assert body.endswith(
        '</auth>\n<config client="vpn" type="private"><vpn-profile-manifest><vpn rev="1.0">'
        '<file type="profile" service-type="user"><uri>/profiles/profile.xml</uri>'
        f'<hash type="sha1">{ref.sha1}</hash></file></vpn></vpn-profile-manifest>\n'
        "</config></config-auth>")


def test_webvpnc_cookie_carries_file_url_and_hash_for_openconnect() -> None:
    headers = auth.auth_response_headers(context_cookie="ctx", context_max_age=None,
                                         session_cookie="c29tZQ==",
                                         server_cert_sha1_hex=CERT_SHA1)
    assert with_profile_cookie(headers, CERT_SHA1, None) == headers
    ref = profile_ref("profile.xml", PROFILE)
    out = with_profile_cookie(headers, CERT_SHA1, ref)
    cookies = [v for k, v in out if k == "Set-Cookie" and v.startswith("webvpnc=bu:")]
    assert cookies == [
        f"webvpnc=bu:/&p:t&iu:1/&sh:{CERT_SHA1.upper()}&lu:/+CSCOT+/translation-table?"
        f"textdomain%3DAnyConnect%26type%3Dmanifest&fu:profiles%2Fprofile.xml&fh:{ref.sha1}"
        "; path=/; Secure; HttpOnly"]
    # openconnect's parser: fields split at '&', profile URL = bu + fu (auth.c)
    fields = dict(f.split(":", 1) for f in cookies[0].split(";")[0][8:].split("&"))
    assert fields["bu"] + fields["fu"] == "/profiles%2Fprofile.xml"
    assert is_profile_request("GET", fields["bu"] + fields["fu"])
    whole = http.response(200, "OK", out, b"x")
    assert whole.count(b"Set-Cookie: webvpnc=") == 2  # the expiring one stays first


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/profiles/profile.xml", True),
    ("GET", "/profiles%2Fprofile.xml", True),
    ("GET", "/profiles%2fp.xml", True),
    ("GET", "/profiles", True),
    ("POST", "/profiles/profile.xml", False),
    ("GET", "/profilesX", False),
    ("GET", "/1/profiles/x", False),
])
def test_profile_request_matching(method: str, path: str, expected: bool) -> None:
    assert is_profile_request(method, path) is expected


@pytest.mark.parametrize(("path", "group"), [
    ("/sales", "sales"),
    ("/sales?x=1", "sales"),
    ("/Sales%20Team", "Sales Team"),
    ("/", None),
    ("/auth", None),
    ("/VPN", None),
    ("/VPNManifest.xml", None),
    ("", None),
])
def test_group_from_url(path: str, group: str | None) -> None:
    assert group_from_url(path, _known) == group


@pytest.mark.parametrize("path", ["/a%0Ab", "/" + "g" * 300])
def test_group_from_url_refuses_unusable_names(path: str) -> None:
    with pytest.raises(AnyConnectError):
        group_from_url(path, _known)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_group_from_url_never_crashes(path: str) -> None:
    try:
        group = group_from_url(path, _known)
    except AnyConnectError:
        return
    assert group is None or (group and "\n" not in group and "\0" not in group)


def test_session_cookie_from_jar_or_token() -> None:
    assert session_cookie({"webvpn": "abc="}) == "abc="
    assert session_cookie({"webvpn": "abc="}, "tok=") == "tok="
    assert session_cookie({}) is None
    with pytest.raises(AnyConnectError):
        session_cookie({"webvpn": "a;b"})


def test_logout_document_through_the_auth_parser() -> None:
    raw = (b"POST / HTTP/1.1\r\nHost: vpn\r\nContent-Type: text/xml\r\nContent-Length: 120\r\n"
           b"\r\n" + b'<?xml version="1.0" encoding="UTF-8"?><config-auth client="vpn" '
           b'type="logout"><session-token>dG9rZW4=</session-token></config-auth>'.ljust(120))
    (req,) = http.RequestParser().feed(raw)
    reply = auth.parse_auth_body(req.body, req.headers.get("Content-Type"))
    assert reply.kind == "logout"
    assert session_cookie(req.cookies(), reply.session_token) == "dG9rZW4="


# ------------------------------------------------------------------ sec-mod verdicts


@dataclass
class FakeSession:
    sid: str = "s1"
    username: str = "alice"
    groupname: str = ""


def test_connect_rule_follows_cisco_client_compat() -> None:
    off = parse_config(CERT + "cisco-client-compat = false\n")
    on = parse_config(CERT + "cisco-client-compat = true\n")
    assert connect_needs_cert(off, cert_required=True)
    assert not connect_needs_cert(on, cert_required=True)
    assert not connect_needs_cert(off, cert_required=False)
    assert on.dtls_legacy and on.select_group_by_url and on.tls_priorities.endswith(
        ":-VERS-TLS1.3")


def test_cert_gate_requires_the_cookie_owners_certificate() -> None:
    gate = CertGate()
    session = FakeSession()
    assert gate.check("c", None, "alice", True, 0.0) == "cookie is not valid"
    assert "no certificate" in gate.check("c", session, None, True, 0.0)
    assert "'bob'" in gate.check("c", session, "bob", True, 0.0)
    assert not gate.admit("c", True, 1.0)  # refusals leave no approval behind
    assert gate.check("c", session, "alice", True, 0.0) == ""
    assert gate.admit("c", True, 1.0)
    assert not gate.admit("c", True, 1.0)  # used once
    assert gate.admit("c", False, 1.0)  # no rule: main's SessionOpen needs no approval


def test_cert_gate_approval_expires() -> None:
    gate = CertGate()
    assert gate.check("c", FakeSession(), "alice", True, 0.0) == ""
    assert not gate.admit("c", True, APPROVAL_TTL + 1)


def test_store_peek_and_revoke() -> None:
    store = SessionStore(cookie_timeout=300)
    cookie, session = store.create("alice", "", "198.51.100.7", now=0.0)
    assert store.peek(cookie, 1.0) is session and session.in_use == 0
    assert store.peek(cookie, 10_000.0) is None  # expired
    assert store.revoke(cookie) is session
    assert store.peek(cookie, 1.0) is None and store.open(cookie, 1.0) is None
    assert store.revoke(cookie) is None


def test_profile_answer(tmp_path: Path) -> None:
    path = tmp_path / "profile.xml"
    path.write_bytes(PROFILE)
    cfg = parse_config(PLAIN + f"user-profile = {path}\n")
    assert profile_answer(cfg, None) == ipc.ProfileData(ok=False, status=401)
    answer = profile_answer(cfg, FakeSession())
    assert answer.ok and base64.b64decode(answer.content) == PROFILE
    assert profile_answer(parse_config(PLAIN), FakeSession()).status == 404
    path.unlink()
    assert profile_answer(cfg, FakeSession()).status == 404


def test_profile_cache_rereads_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "profile.xml"
    path.write_bytes(PROFILE)
    cache = ProfileCache()
    first = cache.advert(str(path))
    assert first is not None and first.sha1 == hashlib.sha1(PROFILE).hexdigest().upper()
    path.write_bytes(PROFILE + b"<!-- v2 -->\n")
    second = cache.advert(str(path))
    assert second is not None and second.sha1 != first.sha1
    assert cache.advert(None) is None and cache.advert(str(tmp_path / "gone")) is None
