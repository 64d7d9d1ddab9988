"""The worker's AnyConnect hooks: profile download, logout, group-by-URL, the profile
advert in the ``complete`` answer and the certificate question before CONNECT.

Kept out of dialogue.py so the worker reads as the plain ocserv dialogue; every verdict here
comes from the sec-mod (secmod/anyconnect.py), the worker only carries bytes.  The hooks
return what to answer (:class:`Answer`, :class:`Refusal`) and the dialogue sends it, so
this module never reaches into the worker (docs/architecture.md, "no cycles").
"""

from __future__ import annotations

import base64
import binascii
import logging
import socket
from dataclasses import dataclass, field

from .. import ipc
from ..config import Config
from ..protocol import anyconnect, auth, http

log = logging.getLogger(__name__)

SECMOD_TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    """An HTTP answer for the dialogue to send; status 401 also ends the connection."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True)
class Refusal:
    """CONNECT refused: the status for ``cstp.connect_error`` and why (for the log)."""

    status: int
    reason: str


def _is_known_url(path: str) -> bool:
    return (path in anyconnect.AUTH_URLS or auth.match_static(path) is not None
            or anyconnect.is_profile_request("GET", path) or path == "/svc")


def url_group(cfg: Config, req: http.Request) -> str | None:
    """The group of ``POST /GROUP`` when select-group-by-url (or cisco-client-compat) is on."""
    if not cfg.select_group_by_url or req.method != "POST":
        return None
    try:
        return anyconnect.group_from_url(req.path, _is_known_url)
    except anyconnect.AnyConnectError as exc:
        log.info("group in URL ignored: %s", exc)
        return None


def _cookie(req: http.Request, token: str | None = None) -> str | None:
    try:
        return anyconnect.session_cookie(req.cookies(), token)
    except anyconnect.AnyConnectError:
        return None


def _ask(secmod: socket.socket, msg: object) -> object | None:
    try:
        return ipc.call(secmod, msg, timeout=SECMOD_TIMEOUT)
    except ipc.IpcError as exc:
        log.error("security module unreachable: %s", exc)
        return None


def handle_get(secmod: socket.socket, remote_ip: str, req: http.Request) -> Answer | None:
    """The answer to the AnyConnect GETs that need the sec-mod; None for everything else."""
    if anyconnect.is_profile_request(req.method, req.path):
        return _serve_profile(secmod, req)
    if req.method == "GET" and (req.path == "/logout" or req.path.startswith("/logout?")):
        logout(secmod, remote_ip, req)
        ctype, body = auth.STATIC_ENDPOINTS["/logout"]
        return Answer(200, "OK", [("Connection", "Keep-Alive"), ("Content-Type", ctype)], body)
    return None


def _serve_profile(secmod: socket.socket, req: http.Request) -> Answer:
    """ocserv's get_config_handler: cookie first, then the user's profile or 404."""
    cookie = _cookie(req)
    answer = _ask(secmod, ipc.ProfileFetch(cookie)) if cookie else None
    if isinstance(answer, ipc.ProfileData) and answer.ok:
        try:
            data = base64.b64decode(answer.content, validate=True)
        except (binascii.Error, ValueError):
            data = None
        if data is not None:
            return Answer(200, "OK", [("Connection", "Keep-Alive"),
                                      ("Content-Type", "text/xml")], data)
    status = answer.status if isinstance(answer, ipc.ProfileData) else 401
    if status == 404:
        return Answer(404, "Not found", [("Connection", "Keep-Alive")])
    return Answer(401, "Cookie is not acceptable")


def logout(secmod: socket.socket, remote_ip: str, req: http.Request,
           token: str | None = None) -> None:
    """AnyConnect's logout (POST ``type="logout"`` with the session token, or GET /logout
    with the cookie): the session ends and its cookie stops working (§11 item 27)."""
    cookie = _cookie(req, token)
    if not cookie:
        return
    answer = _ask(secmod, ipc.SessionLogout(cookie))
    if isinstance(answer, ipc.Ack) and answer.ok:
        log.info("client at %s logged out", remote_ip)


def complete_body(banner: str | None, answer: ipc.AuthReply) -> bytes:
    return anyconnect.complete_with_profile(banner, _profile(answer))


def complete_headers(headers: list[tuple[str, str]], cert_sha1: str,
                     answer: ipc.AuthReply) -> list[tuple[str, str]]:
    return anyconnect.with_profile_cookie(headers, cert_sha1, _profile(answer))


def _profile(answer: ipc.AuthReply) -> anyconnect.ProfileRef | None:
    if not answer.profile or not answer.profile_sha1:
        return None
    return anyconnect.ProfileRef(answer.profile, answer.profile_sha1)


def check_connect_cert(secmod: socket.socket, cookie: str) -> Refusal | None:
    """Before CONNECT: let the sec-mod apply the certificate rule to this connection.
    None when it may go on; else refused like any unacceptable cookie (401), or 503 when
    the sec-mod did not answer, and the connection ends."""
    answer = _ask(secmod, ipc.ConnectCertCheck(cookie))
    if isinstance(answer, ipc.Ack) and answer.ok:
        return None
    return Refusal(401 if answer is not None else 503,
                   str(getattr(answer, "reason", "no sec-mod")))
