"""AnyConnect / Cisco Secure Client specifics of the HTTP dialogue, sans-IO.

What lives here is the part of ocserv's behaviour that only Cisco's client (and
openconnect's profile download, ``-x FILE``) depends on: the ``user-profile`` manifest in
the ``complete`` answer and in the ``webvpnc`` cookie (docs/protocol.md §2.4.4), recognising the
profile download and logout requests (§2.9, §11 item 27) and the group named by the URL
(``select-group-by-url``, https://server/GROUP).  Bytes and strings in, values out: the
worker does the I/O, the sec-mod decides who may have what.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape as _html_escape
from urllib.parse import unquote

from .auth import render_auth_complete

__all__ = [
    "AnyConnectError",
    "ProfileRef",
    "complete_with_profile",
    "group_from_url",
    "is_profile_request",
    "profile_ref",
    "session_cookie",
    "with_profile_cookie",
]

MAX_PROFILE_BYTES = 40 * 1024  # travels base64-encoded in one IPC message from the sec-mod
MAX_URL_GROUP_BYTES = 255
AUTH_URLS = ("/", "/auth", "/VPN")

# openconnect asks for bu + fu verbatim, i.e. "/profiles%2F<name>"; AnyConnect for
# "/profiles/<name>".  ocserv's table entry is a directory prefix, so both reach it.
_PROFILE_RE = re.compile(r"/profiles(?:/|%2[fF]|\?|\Z)")
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]")
# the manifest URL ocserv puts in the cookie (lu:), already %-encoded as it sends it
_MANIFEST_LU = "/+CSCOT+/translation-table?textdomain%3DAnyConnect%26type%3Dmanifest"
_COOKIE_UNSAFE_RE = re.compile(r"[\x00-\x20\x7f;,\"\\]")


class AnyConnectError(ValueError):
    """A profile, URL group or cookie that cannot be used as given."""


@dataclass(frozen=True)
class ProfileRef:
    """The ``user-profile`` as advertised: its configured name and the SHA-1 the client
    checks the download against (upper-case hex, as ocserv's calc_sha1_hash)."""

    name: str
    sha1: str


def profile_ref(name: str, data: bytes) -> ProfileRef:
    """The advertisement for a profile file named ``name`` (the config value, verbatim
    as ocserv uses it in ``/profiles/NAME``) whose content is ``data``."""
    if not name or _COOKIE_UNSAFE_RE.search(name) or "<" in name or "&" in name:
        raise AnyConnectError(f"user-profile name {name!r} cannot be advertised")
    if len(data) > MAX_PROFILE_BYTES:
        raise AnyConnectError(f"user-profile larger than {MAX_PROFILE_BYTES} bytes")
    return ProfileRef(name, hashlib.sha1(data).hexdigest().upper())


def complete_with_profile(banner: str | None, profile: ProfileRef | None) -> bytes:
    """The ``complete`` document; with a profile its tail carries the
    ``vpn-profile-manifest`` AnyConnect reads to decide whether to download it."""
    body = render_auth_complete(banner=banner)
    if profile is None:
        return body
    tail = b"</auth></config-auth>\n"
    if not body.endswith(tail):
        raise AnyConnectError("unexpected shape of the complete document")
    manifest = (
        "</auth>\n"
        '<config client="vpn" type="private">'
        "<vpn-profile-manifest>"
        '<vpn rev="1.0">'
        '<file type="profile" service-type="user">'
        f"<uri>/profiles/{_html_escape(profile.name)}</uri>"
        f'<hash type="sha1">{profile.sha1}</hash>'
        "</file>"
        "</vpn>"
        "</vpn-profile-manifest>\n"
        "</config>"
        "</config-auth>"
    )
    return body[: -len(tail)] + manifest.encode("utf-8")


def with_profile_cookie(headers: list[tuple[str, str]], cert_sha1: str,
                        profile: ProfileRef | None) -> list[tuple[str, str]]:
    """Replace the ``webvpnc=bu:…`` cookie of a ``complete`` answer by ocserv's long form,
    whose ``fu:``/``fh:`` fields make openconnect ``-x`` fetch the profile (§2.4.4)."""
    if profile is None:
        return headers
    value = (f"webvpnc=bu:/&p:t&iu:1/&sh:{cert_sha1.upper()}&lu:{_MANIFEST_LU}"
             f"&fu:profiles%2F{profile.name}&fh:{profile.sha1}; path=/; Secure; HttpOnly")
    out = [(k, v) for k, v in headers if not (k == "Set-Cookie" and v.startswith("webvpnc=bu:"))]
    out.append(("Set-Cookie", value))
    return out


def is_profile_request(method: str, path: str) -> bool:
    """A profile download: ``GET /profiles/<anything>`` or openconnect's ``/profiles%2F…``."""
    return method == "GET" and _PROFILE_RE.match(path) is not None


def group_from_url(path: str, is_known: Callable[[str], bool]) -> str | None:
    """The group an auth POST to ``https://server/GROUP`` names, or None.

    As ocserv: only URLs the server does not otherwise serve, longer than ``/``, count;
    the query string is not part of the name.  A name with control characters or over
    the length limit is refused rather than silently cut."""
    base = path.split("?", 1)[0]
    if len(base) <= 1 or not base.startswith("/") or is_known(base):
        return None
    try:
        name = unquote(base[1:], errors="strict") if "%" in base else base[1:]
    except UnicodeDecodeError:  # "/%ff": found by tests/fuzz
        raise AnyConnectError("group in the URL is not UTF-8") from None
    if _CTRL_RE.search(name) or len(name.encode("utf-8")) > MAX_URL_GROUP_BYTES:
        raise AnyConnectError("group in the URL is not usable")
    return name or None


def session_cookie(cookies: dict[str, str], token: str | None = None) -> str | None:
    """The session cookie a request carries: the ``webvpn`` cookie, or the
    ``<session-token>`` AnyConnect puts in its logout document."""
    value = token or cookies.get("webvpn")
    if not value:
        return None
    if _COOKIE_UNSAFE_RE.search(value) or len(value) > 1024:
        raise AnyConnectError("malformed session cookie")
    return value
