"""The wizard's Flask app: shared web foundation + captive behaviour + the step pages.

Captive behaviour: until setup is done every request that is not for the wizard is
redirected to it, whatever the path and whatever the Host header.  A Host name that is
not one of the device's own (addresses, mDNS and host names) is redirected to the
device's LAN address: phones probing ``http://connectivitycheck.example/`` land on the
wizard, and a DNS-rebinding page (evil.example resolving to the device) can never read a
wizard page under its own origin.
"""

from __future__ import annotations

from flask import Flask, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from ..web.app import create_base_app
from .context import WizardContext
from .views import bp

EXTENSION = "ocgate_wizard"


def captive_redirect(ctx: WizardContext) -> WerkzeugResponse | None:
    """Where a request that is not for the wizard must go, or None to serve it."""
    if not ctx.host_allowed(request.host):
        return redirect(ctx.canonical_base() + "/setup/", code=302)
    path = request.path
    if path.startswith("/static/") or path == "/setup" or path.startswith("/setup/"):
        return None
    return redirect("/setup/", code=302)


def create_app(ctx: WizardContext) -> Flask:
    app = create_base_app(__name__, cookie_name="ocgate_setup", session_minutes=120,
                          language_url="/setup/language")
    app.extensions[EXTENSION] = ctx

    def _captive() -> WerkzeugResponse | None:
        return captive_redirect(ctx)

    # The Host check runs before anything else, CSRF included.
    app.before_request_funcs.setdefault(None, []).insert(0, _captive)
    app.register_blueprint(bp)
    return app
