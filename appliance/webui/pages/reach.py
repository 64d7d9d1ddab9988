"""Settings -> Reach from the Internet: the same choices as the wizard step, saved to
STATE/reach.json (secrets to reach-secrets.json, 0600), and the status card.

The reachability service (``python3 -m appliance.reach run --state``, ocgate-reach.service)
re-reads these files while it runs, so what is saved here applies within seconds: the old
mappings come off the router and the new choices are mapped, published and certified.
"""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as WerkzeugResponse

from ...firstboot.reachform import form_values, parse_reach_form
from ...reach import credentials
from ...reach import settings as reach_settings
from ...web import reachview
from .common import ctx

log = logging.getLogger(__name__)

bp = Blueprint("reach", __name__, url_prefix="/settings/reach")


def current_card() -> reachview.ReachCard:
    layout = ctx().layout
    try:
        chosen = reach_settings.load(layout.reach_settings)
    except ValueError:
        chosen = reach_settings.ReachSettings()
    return reachview.card(reach_settings.read_status(layout.reach_status), chosen,
                          reachview.certificate_info(layout))


@bp.route("/", methods=["GET", "POST"])
def index() -> str | WerkzeugResponse | tuple[str, int]:
    layout = ctx().layout
    try:
        chosen = reach_settings.load(layout.reach_settings)
    except ValueError:
        chosen = reach_settings.ReachSettings()
    cfg = ctx().config()
    port = cfg.tcp_port if cfg is not None and cfg.tcp_port else 443
    if request.method == "GET":
        return render_template("webui/reach.html", values=form_values(chosen),
                               card=current_card(), vpn_port=port)
    try:
        saved = credentials.load(layout.reach_secrets)
    except credentials.SecretStoreError as exc:
        log.error("reach secrets unreadable: %s", exc)
        saved = {}
    parsed = parse_reach_form(request.form, saved)
    if parsed.errors:
        return render_template("webui/reach.html", values=parsed.values, errors=parsed.errors,
                               card=current_card(), vpn_port=port), 400
    with ctx().files_lock:
        credentials.save(layout.reach_secrets, parsed.secrets)
        reach_settings.save(layout.reach_settings, parsed.settings)
    log.info("reach settings saved enabled=%s ddns=%s name=%s acme=%s",
             parsed.settings.enabled, parsed.settings.ddns or "-",
             parsed.settings.name or "-", parsed.settings.acme)
    flash(_("Saved. The reachability service applies the new settings now."),
          "ok")
    return redirect(url_for("reach.index"), code=303)
