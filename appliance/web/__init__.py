"""Shared web foundation of the appliance: the first-boot wizard and the admin UI use it.

* :func:`create_base_app`: Flask app with secure session cookies, CSRF on every unsafe
  request, strict security headers (CSP without inline script), error pages, and the
  base template (``base.html``, ``macros.html``) plus ``/static/ocgate.css``;
* :class:`RateLimiter` / :class:`Throttle`: exponential backoff for typed secrets;
* :func:`check_password`: the password rules (:data:`RULES_TEXT` to show them);
* :class:`WebServer`: waitress with a clean stop.
"""

from .app import create_base_app
from .csrf import CsrfError, csrf_token, rotate_csrf_token
from .passwords import RULES_TEXT, PasswordCheck, check_password
from .ratelimit import RateLimiter, Throttle, Verdict, describe_wait
from .server import WebServer

__all__ = [
    "RULES_TEXT",
    "CsrfError",
    "PasswordCheck",
    "RateLimiter",
    "Throttle",
    "Verdict",
    "WebServer",
    "check_password",
    "create_base_app",
    "csrf_token",
    "describe_wait",
    "rotate_csrf_token",
]
