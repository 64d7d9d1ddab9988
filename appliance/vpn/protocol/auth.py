"""The XML ("aggregate auth") and legacy form authentication exchange, sans-IO.

Documents are produced byte for byte like ocserv 1.1.6 (docs/protocol.md §2.4, §2.9 and
the rig transcript) because openconnect and AnyConnect were only ever tested against
those exact shapes.  Client replies are read as laxly as ocserv reads them (§2.4.3):
substring extraction rather than an XML parser, which also means no DTD processing,
no entity expansion beyond the five predefined entities and character references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape as _html_escape

__all__ = [
    "STATIC_ENDPOINTS",
    "AgentInfo",
    "AuthParseError",
    "AuthReply",
    "FormInput",
    "auth_response_headers",
    "classify_agent",
    "match_static",
    "parse_auth_body",
    "render_auth_complete",
    "render_auth_form",
]

MAX_USERNAME_BYTES = 255
MAX_PASSWORD_BYTES = 1024
MAX_GROUP_BYTES = 255
MAX_TOKEN_BYTES = 1024

_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
_SERVER_VERSION = '<version who="sg">0.1(1)</version>\n'
_EXPIRED = "expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; Secure; HttpOnly"

_REPLY_KINDS = ("init", "auth-reply", "logout")


class AuthParseError(ValueError):
    """A client auth body that cannot be interpreted (or is over a length limit)."""


# --------------------------------------------------------------------------- parsing


@dataclass
class AuthReply:
    """What the client said in one auth POST.

    kind: 'init' | 'auth-reply' | 'logout' | 'form' (x-www-form-urlencoded) | 'empty'.
    """

    kind: str
    username: str | None = None
    password: str | None = None
    group: str | None = None
    session_token: str | None = None


_CONFIG_AUTH_RE = re.compile(r"<config-auth\b([^<>]*)>", re.IGNORECASE)
_TYPE_ATTR_RE = re.compile(r"""\btype\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
# "<password" followed by anything up to '>' (ocserv: strcasestr "<password").
_PASSWORD_OPEN_RE = re.compile(r"<password[^<>]*>", re.IGNORECASE)
# Fallback: an element whose name ends in "_password" (e.g. <secondary_password>).
_SUFFIX_PASSWORD_OPEN_RE = re.compile(r"<[A-Za-z0-9_.:-]*_password(?:\s[^<>]*)?/?>", re.IGNORECASE)
_CLOSE_ANY = "</"
_ENTITY_RE = re.compile(r"&(?:#[xX]([0-9A-Fa-f]{1,8})|#([0-9]{1,10})|([A-Za-z]{2,6}));")
_NAMED_ENTITIES = {
    "lt": "<",
    "gt": ">",
    "amp": "&",
    "quot": '"',
    "apos": "'",
    "nbsp": " ",  # ocserv maps &nbsp; to a plain space
}
_DTD_RE = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]")
_FORM_RE = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*\Z")


def parse_auth_body(body: bytes, content_type: str | None) -> AuthReply:
    """Interpret an auth POST body, XML or x-www-form-urlencoded.

    The encoding is decided like ocserv does (an ``<?xml`` anywhere means XML) with the
    Content-Type and a leading ``<`` as further hints, because some clients send XML
    without a declaration and some proxies rewrite Content-Type.
    """
    if not body.strip():
        return AuthReply(kind="empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuthParseError("auth body is not UTF-8") from exc
    is_xml = (
        "<?xml" in text
        or text.lstrip().startswith("<")
        or (content_type is not None and "xml" in content_type.lower())
    )
    reply = _parse_xml(text) if is_xml else _parse_form(text)
    _check_limits(reply)
    return reply


def _parse_xml(text: str) -> AuthReply:
    if _DTD_RE.search(text):
        raise AuthParseError("DTD/entity declarations are not accepted")
    username = _xml_element(text, "username")
    password = _xml_password(text)
    group = _xml_element(text, "group-select")
    token = _xml_element(text, "session-token")
    root = _CONFIG_AUTH_RE.search(text)
    kind = _config_auth_type(root.group(1)) if root else None
    if kind is None:
        if root is None and username is None and password is None and group is None:
            raise AuthParseError("XML body without <config-auth> or credentials")
        kind = "auth-reply"
    return AuthReply(kind, username, password, group, token)


def _config_auth_type(attributes: str) -> str | None:
    match = _TYPE_ATTR_RE.search(attributes)
    if match is None:
        return None
    value = (match.group(1) if match.group(1) is not None else match.group(2)).strip()
    return value if value in _REPLY_KINDS else None


def _xml_element(text: str, name: str) -> str | None:
    """Text of the first ``<name>`` element (case-insensitive), entities decoded."""
    opening = re.search(rf"<{re.escape(name)}(?:\s[^<>]*)?/?>", text, re.IGNORECASE)
    if opening is None:
        return None
    if opening.group(0).endswith("/>"):
        return ""
    start = opening.end()
    closing = re.compile(rf"</{re.escape(name)}\s*>", re.IGNORECASE).search(text, start)
    if closing is None:
        raise AuthParseError(f"unterminated <{name}> element")
    return _xml_text(text[start : closing.start()], name)


def _xml_password(text: str) -> str | None:
    """ocserv's rule: first ``<password…>`` element, else first ``…_password>`` element."""
    opening = _PASSWORD_OPEN_RE.search(text) or _SUFFIX_PASSWORD_OPEN_RE.search(text)
    if opening is None:
        return None
    if opening.group(0).endswith("/>"):
        return ""
    start = opening.end()
    end = text.find(_CLOSE_ANY, start)
    if end < 0:
        raise AuthParseError("unterminated password element")
    return _xml_text(text[start:end], "password")


def _xml_text(raw: str, name: str) -> str:
    if "<" in raw:
        raise AuthParseError(f"markup inside <{name}>")
    return _decode_entities(raw)


def _decode_entities(raw: str) -> str:
    """Decode predefined entities and character references; leave unknown ones verbatim."""

    def replace(match: re.Match[str]) -> str:
        hex_ref, dec_ref, name = match.groups()
        if name is not None:
            return _NAMED_ENTITIES.get(name.lower(), match.group(0))
        code = int(hex_ref, 16) if hex_ref is not None else int(dec_ref)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise AuthParseError("invalid character reference")
        return chr(code)

    return _ENTITY_RE.sub(replace, raw)


def _parse_form(text: str) -> AuthReply:
    if "=" not in text or not _FORM_RE.match(text):
        raise AuthParseError("body is neither XML nor form-urlencoded")
    fields: dict[str, str] = {}
    for item in text.strip().split("&"):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        key = _percent_decode(key).lower()
        fields.setdefault(key, _percent_decode(value))
    password = fields.get("password")
    if password is None:
        password = next(
            (v for k, v in fields.items() if k.startswith("password") or k.endswith("_password")),
            None,
        )
    return AuthReply(
        kind="form",
        username=fields.get("username"),
        password=password,
        group=fields.get("group_list"),
    )


def _percent_decode(raw: str) -> str:
    """``+`` is a space and ``%XX`` a byte; a broken escape is an error (as in ocserv)."""
    out = bytearray()
    data = raw.encode("utf-8")
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == 0x25:  # '%'
            hex_digits = data[i + 1 : i + 3]
            if len(hex_digits) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in hex_digits):
                raise AuthParseError("malformed %-escape in form body")
            out.append(int(hex_digits, 16))
            i += 3
        elif byte == 0x2B:  # '+'
            out.append(0x20)
            i += 1
        else:
            out.append(byte)
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuthParseError("form value is not UTF-8") from exc


def _check_limits(reply: AuthReply) -> None:
    checks = (
        ("username", reply.username, MAX_USERNAME_BYTES, True),
        ("group", reply.group, MAX_GROUP_BYTES, True),
        ("session token", reply.session_token, MAX_TOKEN_BYTES, True),
        ("password", reply.password, MAX_PASSWORD_BYTES, False),
    )
    for what, value, limit, no_controls in checks:
        if value is None:
            continue
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            raise AuthParseError(f"{what} longer than {limit} bytes")
        if "\0" in value or (no_controls and _CTRL_RE.search(value)):
            raise AuthParseError(f"control character in {what}")


# --------------------------------------------------------------------------- rendering


@dataclass
class FormInput:
    """One ``<input>`` of an auth form; ``type`` is 'text', 'password' or 'hidden'."""

    type: str
    name: str
    label: str = ""
    value: str = ""


def _esc(text: str) -> str:
    return _html_escape(text, quote=True).replace("&#x27;", "&apos;")


def _render_input(field: FormInput) -> str:
    if field.type not in ("text", "password", "hidden"):
        raise ValueError(f"unsupported input type {field.type!r}")
    attrs = f'type="{field.type}" name="{_esc(field.name)}"'
    if field.type != "hidden" or field.label:
        attrs += f' label="{_esc(field.label)}"'
    if field.value or field.type == "hidden":
        attrs += f' value="{_esc(field.value)}"'
    return f"<input {attrs} />\n"


def _render_select(groups: list[tuple[str, str]]) -> str:
    """Options in the caller's order (the requested group must come first, §11 item 12).

    An empty value renders a text-only ``<option>`` like ocserv's default-select-group.
    """
    parts = ['<select name="group_list" label="Group:">\n']
    for value, label in groups:
        if value:
            parts.append(f'<option value="{_esc(value)}">{_esc(label)}</option>\n')
        else:
            parts.append(f"<option>{_esc(label)}</option>\n")
    parts.append("</select>\n")
    return "".join(parts)


def render_auth_form(
    *,
    message: str,
    inputs: list[FormInput],
    error: str | None = None,
    pre_login_banner: str | None = None,
    groups: list[tuple[str, str]] | None = None,
    auth_id: str = "main",
    action: str = "/auth",
) -> bytes:
    """The ``auth-request`` document (no trailing newline, as ocserv sends it)."""
    parts = [
        _XML_DECL,
        '<config-auth client="vpn" type="auth-request">\n',
        _SERVER_VERSION,
        f'<auth id="{_esc(auth_id)}">\n',
    ]
    if pre_login_banner:
        parts.append(f"<banner>{_esc(pre_login_banner)}</banner>")
    parts.append(f"<message>{_esc(message)}</message>\n")
    if error:
        parts.append(f"<error>{_esc(error)}</error>\n")
    parts.append(f'<form method="post" action="{_esc(action)}">\n')
    parts.extend(_render_input(field) for field in inputs)
    if groups:
        parts.append(_render_select(groups))
    parts.append("</form></auth>\n</config-auth>")
    return "".join(parts).encode("utf-8")


def render_auth_complete(*, banner: str | None, title: str = "SSL VPN Service") -> bytes:
    """The ``complete`` / ``auth id="success"`` document (with ocserv's trailing newline)."""
    parts = [
        _XML_DECL,
        '<config-auth client="vpn" type="complete">\n',
        _SERVER_VERSION,
        '<auth id="success">\n',
        f"<title>{_esc(title)}</title>",
    ]
    if banner:
        parts.append(f"<banner>{_esc(banner)}</banner>")
    parts.append("</auth></config-auth>\n")
    return "".join(parts).encode("utf-8")


_COOKIE_VALUE_RE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*\Z")
_SHA1_HEX_RE = re.compile(r"[0-9A-Fa-f]{40}\Z")


def _cookie_value(value: str, what: str) -> str:
    """RFC 6265 cookie-octets only: a value with ``;`` or whitespace would split the header."""
    if not _COOKIE_VALUE_RE.match(value):
        raise ValueError(f"{what} is not a valid cookie value")
    return value


def auth_response_headers(
    *,
    context_cookie: str | None,
    context_max_age: int | None,
    session_cookie: str | None = None,
    server_cert_sha1_hex: str | None = None,
) -> list[tuple[str, str]]:
    """Response fields of an auth step in ocserv 1.1.6's order.

    Without ``session_cookie`` these are the fields of a form answer; with it, those of
    the ``complete`` answer.  The ``Content-Length`` entry is a placeholder that
    ``http.response`` fills with the real body length; it is listed so the field sits
    where ocserv puts it.
    """
    if session_cookie is None:
        return _form_headers(context_cookie, context_max_age)
    return _complete_headers(context_cookie, session_cookie, server_cert_sha1_hex)


def _form_headers(context_cookie: str | None, max_age: int | None) -> list[tuple[str, str]]:
    if context_cookie is None:
        context = f"webvpncontext=; {_EXPIRED}"
    else:
        value = _cookie_value(context_cookie, "context cookie")
        age = "" if max_age is None else f" Max-Age={int(max_age)};"
        context = f"webvpncontext={value};{age} Secure; HttpOnly"
    return [
        ("Set-Cookie", context),
        ("Content-Type", "text/xml"),
        ("Content-Length", "0"),
        ("X-Transcend-Version", "1"),
    ]


def _complete_headers(
    context_cookie: str | None, session_cookie: str, cert_sha1: str | None
) -> list[tuple[str, str]]:
    headers = [
        ("Connection", "Keep-Alive"),
        ("Content-Type", "text/xml"),
        ("Content-Length", "0"),
        ("X-Transcend-Version", "1"),
    ]
    if context_cookie is not None:
        value = _cookie_value(context_cookie, "context cookie")
        headers.append(("Set-Cookie", f"webvpncontext={value}; Secure; HttpOnly"))
    session = _cookie_value(session_cookie, "session cookie")
    headers.append(("Set-Cookie", f"webvpn={session}; Secure; HttpOnly"))
    headers.append(("Set-Cookie", f"webvpnc=; {_EXPIRED}"))
    if cert_sha1 is not None:
        if not _SHA1_HEX_RE.match(cert_sha1):
            raise ValueError("server certificate SHA-1 must be 40 hex digits")
        headers.append(
            (
                "Set-Cookie",
                f"webvpnc=bu:/&p:t&iu:1/&sh:{cert_sha1.upper()}; path=/; Secure; HttpOnly",
            )
        )
    return headers


# --------------------------------------------------------------------------- clients


@dataclass
class AgentInfo:
    """Client family as ocserv classifies it (§2.3); drives dialect and IPv6/DNS quirks."""

    # openconnect | openconnect-v3 | anyconnect | anyconnect-ios | clavister | anylink
    # | ipphone | unknown
    kind: str
    mobile: bool


# Order matters: "Cisco AnyConnect VPN Agent for Apple" must win over "Cisco AnyConnect".
_AGENT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("cisco anyconnect vpn agent for apple", "anyconnect-ios"),
    ("openconnect vpn agent", "openconnect"),
    ("cisco anyconnect", "anyconnect"),
    ("anyconnect-compatible openconnect", "openconnect"),
    ("anyconnect", "anyconnect"),
    ("clavister oneconnect vpn", "clavister"),
    ("anylink secure client", "anylink"),
    ("cisco svc ipphone client", "ipphone"),
)
_OPENCONNECT_UA = "open anyconnect vpn agent v"
_LEADING_INT_RE = re.compile(r"[+-]?[0-9]{1,9}")


def classify_agent(user_agent: str | None, platform: str | None = None) -> AgentInfo:
    """Classify by User-Agent prefix (case-insensitive) and X-AnyConnect-Identifier-Platform."""
    ua = (user_agent or "").lower()
    plat = (platform or "").lower()
    ios = plat.startswith("apple-ios")
    mobile = ios or plat.startswith("android")
    if ua.startswith(_OPENCONNECT_UA):
        # Like atoi(): leading digits after the 'v'; none at all counts as 0, i.e. v3.
        number = _LEADING_INT_RE.match(ua[len(_OPENCONNECT_UA) :].lstrip())
        version = int(number.group(0)) if number else 0
        kind = "openconnect-v3" if version <= 3 else "openconnect"
        return AgentInfo(kind, mobile)
    kind = next((k for prefix, k in _AGENT_PREFIXES if ua.startswith(prefix)), "unknown")
    if kind == "anyconnect" and ios:
        kind = "anyconnect-ios"
    return AgentInfo(kind, mobile)


# --------------------------------------------------------------------------- static URLs

_EMPTY_MANIFEST = b'<?xml version="1.0" encoding="UTF-8"?>\n<vpn rev="1.0">\n</vpn>\n'
_EMPTY_HTML = ("text/html", b"<html></html>\n")

STATIC_ENDPOINTS: dict[str, tuple[str, bytes]] = {
    "/VPNManifest.xml": ("text/xml", _EMPTY_MANIFEST),
    "/1/VPNManifest.xml": ("text/xml", _EMPTY_MANIFEST),
    "/+CSCOT+/translation-table": ("text/xml", _EMPTY_MANIFEST),
    "/+CSCOT+/oem-customization": ("text/xml", _EMPTY_MANIFEST),
    "/1/binaries/update.txt": ("text/xml", b"0,0,0000\n"),
    "/1/binaries/vpndownloader.sh": ("application/x-shellscript", b"#!/bin/sh\n\nexit 0"),
    "/1/index.html": _EMPTY_HTML,
    "/1/Linux": _EMPTY_HTML,
    "/1/Linux_64": _EMPTY_HTML,
    "/1/Windows": _EMPTY_HTML,
    "/1/Windows_ARM64": _EMPTY_HTML,
    "/1/Darwin_i386": _EMPTY_HTML,
    "/logout": _EMPTY_HTML,
}


def match_static(path: str) -> tuple[str, bytes] | None:
    """Content for a GET of an AnyConnect helper URL (§2.9), or None.

    ocserv's rule: the URL equals an entry or continues with ``?`` or ``/`` right after
    it, so query strings such as ``?textdomain=AnyConnect`` still match (§11 item 21).
    """
    for url, content in STATIC_ENDPOINTS.items():
        if path == url or (path.startswith(url) and path[len(url)] in "?/"):
            return content
    return None


def static_response_headers(content_type: str) -> list[tuple[str, str]]:
    """Fields ocserv sends with the static answers; Content-Length is filled by response()."""
    return [
        ("Connection", "Keep-Alive"),
        ("Content-Type", content_type),
        ("X-Transcend-Version", "1"),
        ("Content-Length", "0"),
    ]
