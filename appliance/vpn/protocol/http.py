"""Sans-IO HTTP/1.1 server side for the VPN worker (docs/protocol.md §2.2, §3.1).

The worker only ever needs a small, strict subset of HTTP: request line, plain
header fields, bodies framed by ``Content-Length`` and the switch to raw CSTP
after ``CONNECT``.  Everything else is refused with a specific status so that a
hostile peer cannot make the parser buffer without bound or spin on re-scans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "Headers",
    "HttpError",
    "Request",
    "RequestParser",
    "response",
]

_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"

# RFC 9110 token characters: method and field names must consist of these.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION_RE = re.compile(r"HTTP/([0-9])\.([0-9])\Z")
# Field values: visible ASCII, SP, HTAB and obs-text; every other control byte is refused.
_BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Request targets never contain whitespace or control characters.
_BAD_TARGET_RE = re.compile(r"[\x00-\x20\x7f]")
_DIGITS_RE = re.compile(r"[0-9]+\Z")

_SUPPORTED_VERSIONS = ("HTTP/1.0", "HTTP/1.1")
_MAX_BLANK_LINES = 8


class HttpError(ValueError):
    """A request the server must refuse; ``status``/``reason`` form the answer to send."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{status} {reason}" + (f": {detail}" if detail else ""))
        self.status = status
        self.reason = reason
        self.detail = detail


def _bad_request(detail: str) -> HttpError:
    return HttpError(400, "Bad Request", detail)


class Headers:
    """Case-insensitive multi-map that still remembers the client's spelling and order.

    ocserv matched header names case-sensitively; we deliberately do not (§2.2), but we
    keep the original pairs so logs and diagnostics show what was really sent.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        for name, value in items:
            self._items.append((name, value))
            self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class Request:
    """One parsed request; the body is complete (``Content-Length`` bytes)."""

    method: str
    target: str
    version: str
    headers: Headers
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        _, sep, query = self.target.partition("?")
        return query if sep else ""

    @property
    def keep_alive(self) -> bool:
        """Whether the client expects the connection to stay open after the answer."""
        tokens = {
            token.strip().lower()
            for value in self.headers.get_all("Connection")
            for token in value.split(",")
        }
        if "close" in tokens:
            return False
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return True

    def cookies(self) -> dict[str, str]:
        """All ``name=value`` pairs of every Cookie header; the first occurrence of a name wins.

        First-wins mirrors ocserv, which takes the first ``webvpn=`` it finds; items
        without ``=`` are skipped rather than rejected because browsers send odd ones.
        """
        jar: dict[str, str] = {}
        for header in self.headers.get_all("Cookie"):
            for item in header.split(";"):
                name, sep, value = item.strip().partition("=")
                name = name.strip()
                if sep and name and name not in jar:
                    jar[name] = value.strip()
        return jar


class RequestParser:
    """Incremental request parser for one connection.

    ``feed`` accepts arbitrary chunks.  Work is linear in the bytes received: the search
    for the end of the header block resumes where the previous search stopped, and
    consumed bytes are dropped once per call.  After a ``CONNECT`` the parser stops:
    what follows is CSTP and is handed over via ``remaining()``.  Once an ``HttpError``
    was raised the stream is unusable and every later ``feed`` raises it again.
    """

    def __init__(self, max_header_bytes: int = 16384, max_body_bytes: int = 65536) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for the end of the head
        self._line_ok = False  # request line of the head being received already validated
        self._blank_lines = 0  # empty lines skipped before the current request line
        self._pending: tuple[Request, int] | None = None  # head parsed, waiting for body
        self._tunnel = False
        self._error: HttpError | None = None

    @property
    def tunnel(self) -> bool:
        """True once a CONNECT request was returned; later bytes are not HTTP."""
        return self._tunnel

    def remaining(self) -> bytes:
        """Return and forget the bytes buffered but not consumed as HTTP."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        return data

    def feed(self, data: bytes) -> list[Request]:
        if self._error is not None:
            raise self._error
        self._buf += data
        if self._tunnel:
            return []
        try:
            return self._drain()
        except HttpError as exc:
            self._error = exc
            raise

    def _drain(self) -> list[Request]:
        requests: list[Request] = []
        pos = 0
        try:
            while not self._tunnel:
                if self._pending is None:
                    pos = self._skip_blank_lines(pos)
                    head_end = self._find_head_end(pos)
                    if head_end < 0:
                        break
                    request, body_len = _parse_head(
                        bytes(self._buf[pos:head_end]), self.max_body_bytes
                    )
                    pos = head_end + len(_HEAD_END)
                    self._scanned = pos
                    self._line_ok = False
                    self._blank_lines = 0
                    self._pending = (request, body_len)
                request, body_len = self._pending
                if len(self._buf) - pos < body_len:
                    break
                request.body = bytes(self._buf[pos : pos + body_len])
                pos += body_len
                self._scanned = pos
                self._pending = None
                requests.append(request)
                if request.method == "CONNECT":
                    self._tunnel = True
        finally:
            if pos:
                del self._buf[:pos]
                self._scanned = max(0, self._scanned - pos)
        return requests

    def _skip_blank_lines(self, pos: int) -> int:
        """Consume CRLFs before a request line (RFC 9112 §2.2), but only a few of them."""
        while self._buf.startswith(_CRLF, pos):
            pos += len(_CRLF)
            self._blank_lines += 1
            if self._blank_lines > _MAX_BLANK_LINES:
                raise _bad_request("too many empty lines before the request line")
        self._scanned = max(self._scanned, pos)
        return pos

    def _find_head_end(self, pos: int) -> int:
        """Index of the blank line ending the head that starts at ``pos``, or -1.

        Both searches resume where the previous call stopped (minus the length of the
        pattern), so byte-by-byte feeding stays linear.
        """
        buf = self._buf
        resume = max(pos, self._scanned - (len(_HEAD_END) - 1))
        end = buf.find(_HEAD_END, resume)
        if end >= 0:
            if end + len(_HEAD_END) - pos > self.max_header_bytes:
                raise HttpError(431, "Request Header Fields Too Large")
            return end
        if len(buf) - pos > self.max_header_bytes:
            raise HttpError(431, "Request Header Fields Too Large")
        if not self._line_ok:
            # Garbage is refused as soon as its first line is complete, not after 16 KiB.
            line_end = buf.find(_CRLF, max(pos, self._scanned - 1))
            if line_end >= 0:
                _parse_request_line(buf[pos:line_end].decode("latin-1"))
                self._line_ok = True
        self._scanned = len(buf)
        return -1


def _parse_head(head: bytes, max_body: int) -> tuple[Request, int]:
    """Parse request line and fields; returns the request (empty body) and its body length."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    method, target, version = _parse_request_line(lines[0])
    headers = Headers(_parse_field_line(line) for line in lines[1:])
    if "Transfer-Encoding" in headers:
        raise HttpError(501, "Not Implemented", "Transfer-Encoding is not supported")
    body_len = _content_length(headers, max_body)
    if method == "CONNECT" and body_len:
        raise _bad_request("CONNECT with a body")
    return Request(method, target, version, headers, b""), body_len


def _parse_request_line(line: str) -> tuple[str, str, str]:
    if "\r" in line or "\n" in line:
        raise _bad_request("bare CR or LF in request line")
    parts = line.split(" ")
    if len(parts) != 3:
        raise _bad_request("malformed request line")
    method, target, version = parts
    if not _TOKEN_RE.match(method):
        raise _bad_request("malformed method")
    if not target or _BAD_TARGET_RE.search(target):
        raise _bad_request("malformed request target")
    if not _VERSION_RE.match(version):
        raise _bad_request("malformed HTTP version")
    if version not in _SUPPORTED_VERSIONS:
        raise HttpError(505, "HTTP Version Not Supported")
    return method, target, version


def _parse_field_line(line: str) -> tuple[str, str]:
    if line[:1] in (" ", "\t"):
        raise _bad_request("obsolete line folding")
    name, sep, value = line.partition(":")
    if not sep:
        raise _bad_request("header line without colon")
    if not _TOKEN_RE.match(name):
        raise _bad_request("malformed header name")
    value = value.strip(" \t")
    if _BAD_VALUE_RE.search(value):
        raise _bad_request("control character in header value")
    return name, value


def _content_length(headers: Headers, max_body: int) -> int:
    values = headers.get_all("Content-Length")
    if not values:
        return 0
    # A list such as "5, 5" is tolerated by RFC 9110 only when all members agree.
    members = {member.strip() for value in values for member in value.split(",")}
    if len(members) != 1:
        raise _bad_request("conflicting Content-Length")
    (member,) = members
    if not _DIGITS_RE.match(member):
        raise _bad_request("malformed Content-Length")
    if len(member) > 12 or int(member) > max_body:
        raise HttpError(413, "Payload Too Large")
    return int(member)


def _check_header_text(text: str, what: str) -> None:
    """Guard against response splitting: our callers put config strings into headers."""
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError(f"{what} contains CR, LF or NUL: {text!r}")


def response(
    status: int,
    reason: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    content_length: bool = True,
) -> bytes:
    """Serialise a complete HTTP/1.1 response.

    ``Content-Length`` is always the real body length when ``content_length`` is true:
    if the caller lists a ``Content-Length`` field (as ``auth_response_headers`` does, to
    keep ocserv's field order) its value is replaced in place, otherwise the field is
    appended after the other fields.  With ``content_length=False`` the fields are
    emitted exactly as given (CONNECT answers, 503 without length).  Values are UTF-8
    encoded because they come from UTF-8 configuration (banners, domains).
    """
    _check_header_text(reason, "reason")
    out = [f"HTTP/1.1 {int(status)} {reason}\r\n"]
    length_written = False
    for name, value in headers:
        _check_header_text(name, "header name")
        _check_header_text(value, "header value")
        if content_length and name.lower() == "content-length":
            if length_written:
                continue
            value = str(len(body))
            length_written = True
        out.append(f"{name}: {value}\r\n")
    if content_length and not length_written:
        out.append(f"Content-Length: {len(body)}\r\n")
    out.append("\r\n")
    return "".join(out).encode("utf-8") + bytes(body)
