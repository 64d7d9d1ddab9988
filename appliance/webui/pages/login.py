"""Sign in and sign out."""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from ...web.csrf import rotate_csrf_token
from ...web.ratelimit import GLOBAL_KEY, describe_wait
from ..auth import check_credentials
from .common import ctx

log = logging.getLogger(__name__)

bp = Blueprint("login", __name__)

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
        return _page(429, f"Too many failed sign-ins from this address. Try again in "
                          f"{describe_wait(verdict.locked_for)}.", username)
    wait = c.overall.retry_after(GLOBAL_KEY, now)
    if wait > 0:
        return _page(429, f"Too many failed sign-ins on this device. Try again in "
                          f"{describe_wait(wait)}.", username)
    if check_credentials(c.layout.admin_passwd, username, request.form.get("password", "")):
        c.guard.success(client)
        session.clear()
        record = c.sessions.create(username, client, now)
        session["sid"] = record.sid
        session.permanent = True
        rotate_csrf_token()
        log.info("admin %s signed in from %s", username, client)
        return redirect(_next(), code=303)
    after = c.guard.failure(client, now)
    c.overall.failure(GLOBAL_KEY, now)
    log.warning("failed admin sign-in from %s", client)
    if not after.allowed:
        message = (f"Wrong user name or password. This address is now locked out for "
                   f"{describe_wait(after.locked_for)}.")
    else:
        left = after.tries_left
        message = (f"Wrong user name or password. {left} more "
                   f"{'try' if left == 1 else 'tries'} before a 15-minute lockout.")
    return _page(401, message, username)


@bp.post("/logout")
def logout() -> WerkzeugResponse:
    c = ctx()
    c.sessions.drop(session.get("sid"))
    c.drafts.drop(str(session.get("sid", "")))
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("login.login"), code=303)
