"""CSRF protection for every state-changing request of the wizard and the admin UI.

Both apps are reachable by any web page the administrator happens to have open (a
malicious page can POST a form to ``http://192.168.1.2/``), so every unsafe request must
prove it came from one of our own pages.  We use the synchronizer-token pattern: a random
token lives in the signed session cookie and is rendered into every form; an unsafe
request must echo it (form field or ``X-CSRF-Token`` header), compared in constant time.
An ``Origin`` header, when the browser sends one, must also name this very host, which
stops cross-site submissions even if a token ever leaked.  SameSite=Strict cookies are a
third, independent layer (see :mod:`appliance.web.app`).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlsplit

from flask import Flask, abort, request, session
from flask_babel import gettext as _

log = logging.getLogger(__name__)

SESSION_KEY = "_csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class CsrfError(ValueError):
    """A state-changing request without a valid token or from a foreign origin."""


def csrf_token() -> str:
    """The session's token, created on first use (templates call this for every form)."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session[SESSION_KEY] = token
    return token


def rotate_csrf_token() -> str:
    """New token after a privilege change (setup code accepted, login), against fixation."""
    session.pop(SESSION_KEY, None)
    return csrf_token()


def _origin_matches(origin: str, host: str) -> bool:
    parts = urlsplit(origin)
    return bool(parts.scheme in ("http", "https") and parts.netloc and parts.netloc == host)


def check_request() -> None:
    """Raise :class:`CsrfError` unless the current unsafe request is one of ours."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and not _origin_matches(origin, request.host):
        raise CsrfError(f"cross-origin request from {origin!r}")
    expected = session.get(SESSION_KEY)
    sent = request.headers.get(HEADER) or request.form.get(FORM_FIELD, "")
    if not isinstance(expected, str) or not expected:
        raise CsrfError("no CSRF token in the session (cookies disabled or session expired)")
    if not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise CsrfError("missing or wrong CSRF token")


def init_csrf(app: Flask) -> None:
    """Check every unsafe request before any view runs; expose ``csrf_token()`` to Jinja."""

    @app.before_request
    def _csrf_guard() -> None:
        if app.config.get("CSRF_DISABLED"):
            return
        try:
            check_request()
        except CsrfError as exc:
            log.warning("refused %s %s from %s: %s", request.method, request.path,
                        request.remote_addr, exc)
            abort(400, description=_("This form has expired or did not come from this "
                                     "device. Go back, reload the page and try again."))

    app.jinja_env.globals["csrf_token"] = csrf_token
