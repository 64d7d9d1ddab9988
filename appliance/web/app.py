"""Flask app factory shared by the first-boot wizard and the admin web UI.

Everything a browser-facing app of the appliance must get right lives here once: the
session cookie flags, CSRF on every unsafe request, security headers, the base template
and stylesheet, friendly error pages.  Each app adds its blueprints on top.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, render_template
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from .csrf import init_csrf
from .i18n import I18nHooks, init_i18n, missing_catalogs
from .security import init_security_headers

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES = WEB_DIR / "templates"
STATIC = WEB_DIR / "static"


def create_base_app(
    import_name: str,
    *,
    product: str = "OCGate",
    secret_key: bytes | None = None,
    https: bool = False,
    cookie_name: str = "ocgate_session",
    session_minutes: int = 60,
    extra_config: dict[str, Any] | None = None,
    i18n: I18nHooks | None = None,
    language_url: str = "/language",
) -> Flask:
    """A Flask app with the appliance's security defaults; add blueprints to it.

    ``secret_key`` defaults to a fresh random key: sessions then die with the process,
    which is what the wizard wants (a restart must not keep a stranger's half-done setup).
    ``https`` marks cookies Secure (and lets them use the ``__Host-`` prefix) and sends
    HSTS; the wizard runs on plain HTTP before any certificate exists, so it cannot.
    ``i18n`` connects the language selection to stored choices (:mod:`.i18n`); the language
    switch posts to ``language_url``.
    """
    app = Flask(import_name, static_folder=str(STATIC), static_url_path="/static",
                template_folder=str(TEMPLATES))
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_bytes(32),
        SESSION_COOKIE_NAME=("__Host-" + cookie_name) if https else cookie_name,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/",
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(minutes=session_minutes),
        SESSION_REFRESH_EACH_REQUEST=True,
        MAX_CONTENT_LENGTH=1 << 20,
        MAX_FORM_MEMORY_SIZE=64 << 10,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        TEMPLATES_AUTO_RELOAD=False,
        PRODUCT=product,
    )
    if extra_config:
        app.config.update(extra_config)
    app.jinja_env.autoescape = True
    app.jinja_env.globals["product"] = product
    init_csrf(app)
    init_security_headers(app, https=https)
    init_i18n(app, i18n or I18nHooks(https=https), url=language_url)
    stale = missing_catalogs()
    if stale:
        log.error("compiled translations missing or older than their .po files (run "
                  "'make translations'): %s; those pages fall back to English",
                  ", ".join(stale))
    _error_pages(app)
    return app


def _error_pages(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[str, int]:
        code = exc.code or 500
        title, message = http_error_text(code, exc)
        return render_template("error.html", code=code, title=title, message=message), code

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> tuple[str, int]:
        log.exception("unhandled error in %s", app.import_name)
        return render_template("error.html", code=500, title=_("Internal error"),
                               message=_("Something went wrong on the device. The details "
                                         "are in its log.")), 500


def http_error_text(code: int, exc: HTTPException) -> tuple[str, str]:
    """Title and sentence of an error page in the reader's language.

    A view that aborts with its own ``description`` has already translated it; werkzeug's
    built-in English descriptions are replaced by ours for the codes people meet.
    """
    titles = {
        400: _("Bad request"), 403: _("Forbidden"), 404: _("Not found"),
        405: _("Not allowed"), 409: _("Conflict"), 413: _("Too large"),
        429: _("Too many requests"), 500: _("Internal error"),
    }
    sentences = {
        400: _("The request could not be understood."),
        403: _("You may not open this page."),
        404: _("There is nothing at this address."),
        405: _("This page cannot be opened this way."),
        413: _("What you sent is larger than this device accepts."),
        500: _("Something went wrong on the device. The details are in its log."),
    }
    own = exc.description if exc.description != type(exc).description else None
    title = titles.get(code, _("Error"))
    return title, own or sentences.get(code, title)
