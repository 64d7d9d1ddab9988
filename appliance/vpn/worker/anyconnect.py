"""The worker's AnyConnect hooks: profile download, logout, group-by-URL, the profile
advert in the ``complete`` answer and the certificate question before CONNECT.

Kept out of worker.py so the worker reads as the plain ocserv dialogue; every verdict here
comes from the sec-mod (secmod/anyconnect.py), the worker only carries bytes.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING

from .. import ipc
from ..config import Config
from ..protocol import anyconnect, auth, cstp, http

if TYPE_CHECKING:
    from .dialogue import Worker

log = logging.getLogger(__name__)

SECMOD_TIMEOUT = 10.0


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


def _ask(worker: Worker, msg: object) -> object | None:
    try:
        return ipc.call(worker.secmod, msg, timeout=SECMOD_TIMEOUT)
    except ipc.IpcError as exc:
        log.error("security module unreachable: %s", exc)
        return None


def handle_get(worker: Worker, req: http.Request) -> bool:
    """Answer the AnyConnect GETs that need the sec-mod; False for everything else."""
    if anyconnect.is_profile_request(req.method, req.path):
        _serve_profile(worker, req)
        return True
    if req.method == "GET" and (req.path == "/logout" or req.path.startswith("/logout?")):
        logout(worker, req)
        ctype, body = auth.STATIC_ENDPOINTS["/logout"]
        worker._respond(200, "OK", [("Connection", "Keep-Alive"), ("Content-Type", ctype)],
                        body)
        return True
    return False


def _serve_profile(worker: Worker, req: http.Request) -> None:
    """ocserv's get_config_handler: cookie first, then the user's profile or 404."""
    cookie = _cookie(req)
    answer = _ask(worker, ipc.ProfileFetch(cookie)) if cookie else None
    if isinstance(answer, ipc.ProfileData) and answer.ok:
        try:
            data = base64.b64decode(answer.content, validate=True)
        except (binascii.Error, ValueError):
            data = None
        if data is not None:
            worker._respond(200, "OK", [("Connection", "Keep-Alive"),
                                        ("Content-Type", "text/xml")], data)
            return
    status = answer.status if isinstance(answer, ipc.ProfileData) else 401
    if status == 404:
        worker._respond(404, "Not found", [("Connection", "Keep-Alive")])
        return
    worker._fail("Cookie is not acceptable")


def logout(worker: Worker, req: http.Request, token: str | None = None) -> None:
    """AnyConnect's logout (POST ``type="logout"`` with the session token, or GET /logout
    with the cookie): the session ends and its cookie stops working (§11 item 27)."""
    cookie = _cookie(req, token)
    if not cookie:
        return
    answer = _ask(worker, ipc.SessionLogout(cookie))
    if isinstance(answer, ipc.Ack) and answer.ok:
        log.info("client at %s logged out", worker.peer.remote_ip)


def complete_body(banner: str | None, answer: ipc.AuthReply) -> bytes:
    return anyconnect.complete_with_profile(banner, _profile(answer))


def complete_headers(headers: list[tuple[str, str]], cert_sha1: str,
                     answer: ipc.AuthReply) -> list[tuple[str, str]]:
    return anyconnect.with_profile_cookie(headers, cert_sha1, _profile(answer))


def _profile(answer: ipc.AuthReply) -> anyconnect.ProfileRef | None:
    if not answer.profile or not answer.profile_sha1:
        return None
    return anyconnect.ProfileRef(answer.profile, answer.profile_sha1)


def check_connect_cert(worker: Worker, cookie: str) -> None:
    """Before CONNECT: let the sec-mod apply the certificate rule to this connection;
    refused like any unacceptable cookie (401, §3.2), then the connection ends."""
    answer = _ask(worker, ipc.ConnectCertCheck(cookie))
    if isinstance(answer, ipc.Ack) and answer.ok:
        return
    from .dialogue import ConnectionDone

    worker._send_plain(cstp.connect_error(401 if answer is not None else 503))
    raise ConnectionDone(f"CONNECT refused: {getattr(answer, 'reason', 'no sec-mod')}")
