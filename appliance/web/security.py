"""HTTP security headers shared by the wizard and the admin UI.

Both apps are server-rendered and need no inline script or style, so the Content Security
Policy can be strict: everything from our own origin, no ``unsafe-inline``, no framing, no
plugins.  Any HTML injection that slips past Jinja's autoescaping then still cannot run
script, and the admin pages cannot be framed for click-jacking.
"""

from __future__ import annotations

from flask import Flask, Response, request

#: No 'unsafe-inline' anywhere: scripts and styles must be files under /static.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])

BASE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cross-Origin-Resource-Policy": "same-origin",
}

#: Browsers ignore these on plain HTTP (and complain in the console), so HTTPS only.
HTTPS_HEADERS: dict[str, str] = {
    "Cross-Origin-Opener-Policy": "same-origin",
}

#: Only meaningful over HTTPS (browsers ignore it on plain HTTP, RFC 6797 §8.1).
HSTS = "max-age=31536000"


def security_headers(response: Response, *, https: bool) -> Response:
    """Add the headers to ``response``; pages carrying secrets must never be cached."""
    for name, value in BASE_HEADERS.items():
        response.headers.setdefault(name, value)
    if https:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
        for name, value in HTTPS_HEADERS.items():
            response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        # Setup codes, pins and one-time downloads must not linger in a shared cache.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def init_security_headers(app: Flask, *, https: bool) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        return security_headers(response, https=https)
