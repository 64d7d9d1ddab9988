"""Client-certificate actions on a user's page: issue (+ one-time PKCS#12), download, revoke.

Kept apart from :mod:`.users` so the certificate flow reads in one place; the routes are
attached to the users blueprint, so they live under ``/users/<name>/certs/``.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as WerkzeugResponse

from ..clientcerts import DEFAULT_DAYS, ClientCertError
from .common import ctx, vpn_call

log = logging.getLogger(__name__)

P12_MIME = "application/x-pkcs12"
ViewResult = str | WerkzeugResponse | tuple[str, int] | Response


def _utcnow() -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ctx().wall(), datetime.UTC)


def _days(text: str) -> int:
    text = text.strip()
    if not text:
        return DEFAULT_DAYS
    if not text.isdigit():
        raise ClientCertError(_("Validity must be a whole number of days."))
    return int(text)


def register_cert_routes(bp: Blueprint, user_or_404: Callable[[str], Any],
                         edit_page: Callable[..., tuple[str, int]],
                         owner: Callable[[], str]) -> None:
    """Add the certificate routes to the users blueprint."""

    @bp.post("/<name>/certs/issue")
    def issue_cert(name: str) -> ViewResult:
        user = user_or_404(name)
        c = ctx()
        now = _utcnow()
        try:
            days = _days(request.form.get("days", "")[:8])
            change = c.certs.ensure_cert_login(now)
            bundle = c.certs.issue(user.username, now, days=days, admin=str(g.get("admin")))
        except ClientCertError as exc:
            return edit_page(user, 400, errors=[str(exc)])
        if change.needs_restart:
            _answer, problem = vpn_call(c.vpn.reload, "")
            flash(_("Certificate login was turned on (%(options)s in ocserv.conf). Restart the "
                    "VPN service once for it to take effect.",
                    options=", ".join(change.options)), "warning")
        filename = f"{user.username}-{bundle.record.serial[-8:].lower()}.p12"
        token = c.downloads.put(owner(), filename, P12_MIME, bundle.p12, c.clock())
        log.info("admin %s issued certificate %s for %s", g.get("admin"),
                 bundle.record.serial, user.username)
        return edit_page(user, issued={"password": bundle.password, "token": token,
                                       "serial": bundle.record.serial,
                                       "filename": filename})

    @bp.post("/<name>/certs/download/<token>")
    def download_cert(name: str, token: str) -> ViewResult:
        user_or_404(name)
        c = ctx()
        item = c.downloads.take(token[:64], owner(), c.clock())
        if item is None:
            abort(404, description=_("This download was used already or has expired. The "
                                     "device does not keep private keys: issue a new "
                                     "certificate."))
        return Response(item.data, mimetype=item.mimetype, headers={
            "Content-Disposition": f'attachment; filename="{item.filename}"'})

    @bp.post("/<name>/certs/<serial>/revoke")
    def revoke_cert(name: str, serial: str) -> ViewResult:
        user = user_or_404(name)
        c = ctx()
        owned = {r.serial for r in c.certs.for_user(user.username)}
        if serial.upper() not in owned:
            abort(404)
        try:
            record = c.certs.revoke(serial, _utcnow())
        except ClientCertError as exc:
            return edit_page(user, 400, errors=[str(exc)])
        log.info("admin %s revoked certificate %s of %s", g.get("admin"), record.serial,
                 user.username)
        flash(_("Certificate %(serial)s was revoked; the server refuses it from the next "
                "login.", serial=record.serial), "success")
        return redirect(url_for("users.edit", name=user.username), code=303)
