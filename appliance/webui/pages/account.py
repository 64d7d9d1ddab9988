"""The signed-in admin's own settings: two-step sign-in (TOTP) on and off.

Turning it on is two steps on purpose: the secret is shown (URI as text and as a QR code),
and only a first correct code from the app enables it, so nobody locks themselves out with
a mistyped secret.  Turning it off needs the password *and* a code: a stolen, still-open
browser session alone must not be able to remove the second factor.  Wrong answers count
against the same lockout as wrong passwords at sign-in.
"""

from __future__ import annotations

import logging

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as WerkzeugResponse

from ...web.ratelimit import GLOBAL_KEY, describe_wait
from ..auth import check_credentials
from ..onboarding import qr_svg
from ..totp import TotpError, provisioning_uri, secret_from_text
from .common import ctx

log = logging.getLogger(__name__)

bp = Blueprint("account", __name__, url_prefix="/account")

ViewResult = str | WerkzeugResponse | tuple[str, int]


def _admin() -> str:
    return str(g.get("admin", ""))


def _page(status: int = 200, **extra: object) -> tuple[str, int]:
    c = ctx()
    try:
        record = c.totp.get(_admin())
        problem = None
    except TotpError as exc:
        record, problem = None, str(exc)
    enrol = None
    if record is not None and not record.enabled:
        uri = provisioning_uri(secret_from_text(record.secret), _admin())
        enrol = {"uri": uri, "secret": record.secret, "qr": qr_svg(uri)}
    extra.setdefault("errors", [])
    return render_template("webui/account.html", record=record, enrol=enrol,
                           problem=problem, **extra), status


@bp.get("/")
def index() -> ViewResult:
    return _page()


@bp.post("/totp/begin")
def begin() -> ViewResult:
    try:
        ctx().totp.begin(_admin())
    except TotpError as exc:
        return _page(409, errors=[str(exc)])
    return redirect(url_for("account.index"), code=303)


@bp.post("/totp/cancel")
def cancel() -> ViewResult:
    c = ctx()
    record = c.totp.get(_admin())
    if record is not None and not record.enabled:
        c.totp.disable(_admin())
    return redirect(url_for("account.index"), code=303)


def _limited() -> str | None:
    """Why the next guess must wait (same per-address lockout as the sign-in), or None."""
    c = ctx()
    now = c.clock()
    verdict = c.guard.check(request.remote_addr or "unknown", now)
    if not verdict.allowed:
        return _("Too many wrong answers. Try again in %(wait)s.",
                 wait=describe_wait(verdict.locked_for))
    wait = c.overall.retry_after(GLOBAL_KEY, now)
    if wait > 0:
        return _("Too many wrong answers. Try again in %(wait)s.", wait=describe_wait(wait))
    return None


def _count_failure() -> None:
    c = ctx()
    now = c.clock()
    c.guard.failure(request.remote_addr or "unknown", now)
    c.overall.failure(GLOBAL_KEY, now)


@bp.post("/totp/confirm")
def confirm() -> ViewResult:
    c = ctx()
    limited = _limited()
    if limited:
        return _page(429, errors=[limited])
    try:
        codes = c.totp.confirm(_admin(), request.form.get("code", "")[:64], c.wall())
    except TotpError as exc:
        _count_failure()
        return _page(400, errors=[str(exc)])
    log.info("admin %s turned on two-step sign-in", _admin())
    return _page(recovery_codes=codes)


@bp.post("/totp/disable")
def disable() -> ViewResult:
    c = ctx()
    limited = _limited()
    if limited:
        return _page(429, errors=[limited])
    password_ok = check_credentials(c.layout.admin_passwd, _admin(),
                                    request.form.get("password", ""))
    code_ok = password_ok and c.totp.verify(_admin(), request.form.get("code", "")[:64],
                                            c.wall()) is not None
    if not code_ok:
        _count_failure()
        return _page(400, errors=[_("The password or the code is wrong; two-step sign-in "
                                    "stays on.")])
    c.totp.disable(_admin())
    log.warning("admin %s turned off two-step sign-in", _admin())
    flash(_("Two-step sign-in is off. Remove the entry from your authenticator app."),
          "success")
    return redirect(url_for("account.index"), code=303)
