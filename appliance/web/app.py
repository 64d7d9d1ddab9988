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
from werkzeug.exceptions import HTTPException

from .csrf import init_csrf
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
) -> Flask:
    """A Flask app with the appliance's security defaults; add blueprints to it.

    ``secret_key`` defaults to a fresh random key: sessions then die with the process,
    which is what the wizard wants (a restart must not keep a stranger's half-done setup).
    ``https`` marks cookies Secure (and lets them use the ``__Host-`` prefix) and sends
    HSTS; the wizard runs on plain HTTP before any certificate exists, so it cannot.
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
    _error_pages(app)
    return app


def _error_pages(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[str, int]:
        code = exc.code or 500
        return render_template("error.html", code=code, title=exc.name,
                               message=exc.description), code

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> tuple[str, int]:
        log.exception("unhandled error in %s", app.import_name)
        return render_template("error.html", code=500, title="Internal error",
                               message="Something went wrong on the device. The details "
                               "are in its log."), 500
