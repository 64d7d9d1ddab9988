"""Sign in and sign out."""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.wrappers import Response as WerkzeugResponse

from ...web.csrf import rotate_csrf_token
from ...web.i18n import cookie_language
from ...web.ratelimit import GLOBAL_KEY, describe_wait
from ..auth import check_credentials
from .common import ctx

log = logging.getLogger(__name__)

bp = Blueprint("login", __name__)

#: How long the password step stays valid while the authenticator code is awaited.
PENDING_SECONDS = 5 * 60.0

ViewResult = str | WerkzeugResponse | tuple[str, int]


def _next() -> str:
    target = request.args.get("next", "") or request.form.get("next", "")
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _page(status: int = 200, error: str | None = None, username: str = "") -> tuple[str, int]:
    return render_template("webui/login.html", error=error, username=username,
                           next=_next()), status


@bp.route("/login", methods=["GET", "POST"])
def login() -> ViewResult:
    c = ctx()
    if request.method == "GET":
        if c.sessions.touch(session.get("sid"), c.clock()) is not None:
            return redirect(_next(), code=303)
        return _page()
    client = request.remote_addr or "unknown"
    username = request.form.get("username", "").strip()[:64]
    now = c.clock()
    verdict = c.guard.check(client, now)
    if not verdict.allowed:
        log.warning("sign-in refused for %s: locked out", client)
        return _page(429, _locked_here(verdict.locked_for), username)
    wait = c.overall.retry_after(GLOBAL_KEY, now)
    if wait > 0:
        return _page(429, _locked_everywhere(wait), username)
    if check_credentials(c.layout.admin_passwd, username, request.form.get("password", "")):
        if c.totp.is_enabled(username):
            return _ask_for_code(username, now)
        return _signed_in(username, client, now)
    return _page(401, _failure_message(client, now, password_step=True), username)


def _locked_here(seconds: float) -> str:
    return _("Too many failed sign-ins from this address. Try again in %(wait)s.",
             wait=describe_wait(seconds))


def _locked_everywhere(seconds: float) -> str:
    return _("Too many failed sign-ins on this device. Try again in %(wait)s.",
             wait=describe_wait(seconds))


def _signed_in(username: str, client: str, now: float) -> WerkzeugResponse:
    c = ctx()
    target = _next() if request.endpoint == "login.login" else _pending_next()
    c.guard.success(client)
    session.clear()
    record = c.sessions.create(username, client, now)
    session["sid"] = record.sid
    session.permanent = True
    rotate_csrf_token()
    language = cookie_language()  # picked on the sign-in page: now the account's too
    if language is not None:
        try:
            c.languages.set_account(username, language)
        except OSError as exc:
            log.error("could not store the language of %s: %s", username, exc)
    log.info("admin %s signed in from %s", username, client)
    return redirect(target, code=303)


def _failure_message(client: str, now: float, *, password_step: bool) -> str:
    """Count a failure (per address and globally) and say what happens next."""
    c = ctx()
    after = c.guard.failure(client, now)
    c.overall.failure(GLOBAL_KEY, now)
    log.warning("failed admin sign-in (%s) from %s",
                "user name or password" if password_step else "code", client)
    if not after.allowed:
        wait = describe_wait(after.locked_for)
        if password_step:
            return _("Wrong user name or password. This address is now locked out for "
                     "%(wait)s.", wait=wait)
        return _("Wrong code. This address is now locked out for %(wait)s.", wait=wait)
    if password_step:
        return ngettext("Wrong user name or password. %(num)d more try before a 15-minute "
                        "lockout.",
                        "Wrong user name or password. %(num)d more tries before a 15-minute "
                        "lockout.", after.tries_left)
    return ngettext("Wrong code. %(num)d more try before a 15-minute lockout.",
                    "Wrong code. %(num)d more tries before a 15-minute lockout.",
                    after.tries_left)


# --------------------------------------------------------------------------- second step


def _ask_for_code(username: str, now: float) -> WerkzeugResponse:
    """Password accepted, TOTP on: no session yet, only a short-lived signed marker."""
    target = _next()
    session.clear()
    session["pending_admin"] = username
    session["pending_at"] = now
    session["pending_next"] = target
    rotate_csrf_token()
    return redirect(url_for("login.code"), code=303)


def _pending_user(now: float) -> str | None:
    username = session.get("pending_admin")
    started = session.get("pending_at")
    if not isinstance(username, str) or not isinstance(started, int | float):
        return None
    if not 0 <= now - started <= PENDING_SECONDS:
        return None
    return username


def _pending_next() -> str:
    target = session.get("pending_next", "/")
    return target if isinstance(target, str) and target.startswith("/") \
        and not target.startswith("//") else "/"


def _code_page(status: int = 200, error: str | None = None) -> tuple[str, int]:
    return render_template("webui/login_code.html", error=error), status


@bp.route("/login/code", methods=["GET", "POST"])
def code() -> ViewResult:
    c = ctx()
    now = c.clock()
    username = _pending_user(now)
    if username is None:
        session.pop("pending_admin", None)
        flash(_("Sign in with your password first."), "info")
        return redirect(url_for("login.login"), code=303)
    if request.method == "GET":
        return _code_page()
    client = request.remote_addr or "unknown"
    verdict = c.guard.check(client, now)
    if not verdict.allowed:
        return _code_page(429, _locked_here(verdict.locked_for))
    wait = c.overall.retry_after(GLOBAL_KEY, now)
    if wait > 0:
        return _code_page(429, _locked_everywhere(wait))
    kind = c.totp.verify(username, request.form.get("code", "")[:64], c.wall())
    if kind is None:
        return _code_page(401, _failure_message(client, now, password_step=False))
    if kind == "recovery":
        flash(_("You used a recovery code; it cannot be used again. Make new ones on the "
                "Account page if few are left."), "warning")
    return _signed_in(username, client, now)


@bp.post("/logout")
def logout() -> WerkzeugResponse:
    c = ctx()
    c.sessions.drop(session.get("sid"))
    c.drafts.drop(str(session.get("sid", "")))
    session.clear()
    flash(_("You are signed out."), "info")
    return redirect(url_for("login.login"), code=303)
