"""The admin UI's Flask app: shared web foundation + sign-in gate + one blueprint per page.

Order of the request guards matters and is fixed here: the base app's CSRF check runs
first (a forged POST is refused before anything else happens), then :func:`_gate`, which
lets only the sign-in page, static files and the metrics endpoint through without a
valid server-side admin session.  Pages redirect to the sign-in page; JSON endpoints
answer 401 so that the dashboard's script can tell the user to sign in again.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from flask import Flask, Response, flash, g, jsonify, redirect, request, session, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as WerkzeugResponse

from ..web.app import create_base_app
from ..web.i18n import I18nHooks
from .context import WebUIContext
from .pages import (
    account,
    backup,
    dashboard,
    diagnostics,
    login,
    logs,
    metrics,
    reach,
    sessions,
    settings,
    update,
)
from .pages import users as users_page
from .pages.common import EXTENSION, NAV, ui

HERE = Path(__file__).resolve().parent
PUBLIC_ENDPOINTS = frozenset({"static", "ui.static", "login.login", "login.code",
                              "login.logout", "metrics.metrics", "i18n.switch"})


def create_app(ctx: WebUIContext, *, session_minutes: int = 30) -> Flask:
    """The admin UI for ``ctx``; ``session_minutes`` is the idle timeout."""
    ctx.sessions.idle_timeout = session_minutes * 60.0
    app = create_base_app(__name__, https=ctx.https, cookie_name="ocgate_admin",
                          session_minutes=session_minutes, i18n=_language_hooks(ctx))
    app.extensions[EXTENSION] = ctx
    app.before_request(_gate)
    app.register_blueprint(ui)
    for module in (login, dashboard, users_page, sessions, settings, reach, backup, logs,
                   diagnostics, metrics, account, update):
        app.register_blueprint(module.bp)
    app.jinja_env.globals["nav"] = NAV

    @app.context_processor
    def _admin() -> dict[str, object]:
        return {"admin": g.get("admin")}

    return app


def _language_hooks(ctx: WebUIContext) -> I18nHooks:
    """The device default and the signed-in admin's own choice (STATE/ui-language.json)."""
    prefs = ctx.languages

    def signed_in() -> str | None:
        admin = g.get("admin")
        if admin is None:  # the switch is public (sign-in page): look the session up
            record = ctx.sessions.touch(session.get("sid"), ctx.clock())
            admin = record.username if record is not None else None
        return admin

    def account() -> str | None:
        admin = g.get("admin")
        return prefs.account(admin) if admin else None

    def remember(code: str) -> None:
        admin = signed_in()
        if admin:
            prefs.set_account(admin, code)

    return I18nHooks(device_default=prefs.default, account_language=account,
                     remember=remember, https=ctx.https)


def _safe_next(path: str) -> str:
    """Only local paths: ``next`` must never become an open redirect."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def _gate() -> WerkzeugResponse | Response | tuple[Response, int] | None:
    from flask import current_app

    ctx: WebUIContext = current_app.extensions[EXTENSION]
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    record = ctx.sessions.touch(session.get("sid"), ctx.clock())
    if record is not None:
        g.admin = record.username
        g.sid = record.sid
        return None
    had_session = "sid" in session
    session.pop("sid", None)
    if request.path.startswith("/api/"):
        return jsonify({"error": "not signed in"}), 401
    if had_session:
        flash(_("Your session expired. Please sign in again."), "info")
    target = request.full_path.rstrip("?") if request.method == "GET" else "/"
    return redirect(url_for("login.login") + "?next=" + quote(_safe_next(target)), code=303)
