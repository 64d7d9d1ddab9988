"""Sessions: who is connected, from where, over which channel; disconnect; bans."""

from __future__ import annotations

import ipaddress
import logging

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as WerkzeugResponse

from ..radiusinfo import read_radius_info
from .common import ctx, vpn_call
from .dashboard import channel

log = logging.getLogger(__name__)

bp = Blueprint("sessions", __name__, url_prefix="/sessions")


@bp.get("/")
def index() -> str:
    c = ctx()
    users, problem = vpn_call(c.vpn.users, [])
    bans, _why = vpn_call(c.vpn.bans, []) if problem is None else ([], None)
    return render_template("webui/sessions.html", users=users, bans=bans, problem=problem,
                           channel=channel, now=c.wall(), poll=c.poll_seconds,
                           radius=read_radius_info(c.layout.conf))


@bp.post("/<int:worker_id>/disconnect")
def disconnect(worker_id: int) -> WerkzeugResponse:
    if not 1 <= worker_id < 2**31:
        abort(404)
    c = ctx()
    done, problem = vpn_call(lambda: c.vpn.disconnect_id(worker_id), False)
    if problem:
        flash(problem, "error")
    elif done:
        log.info("admin %s disconnected session %d", g.get("admin"), worker_id)
        flash(_("The session was disconnected."), "success")
    else:
        flash(_("That session had already ended."), "info")
    return redirect(url_for("sessions.index"), code=303)


@bp.post("/unban")
def unban() -> WerkzeugResponse:
    c = ctx()
    try:
        ip = str(ipaddress.ip_address(request.form.get("ip", "").strip()))
    except ValueError:
        flash(_("That is not an IP address."), "error")
        return redirect(url_for("sessions.index"), code=303)
    done, problem = vpn_call(lambda: c.vpn.unban(ip), False)
    if problem:
        flash(problem, "error")
    else:
        flash(_("%(ip)s was unbanned.", ip=ip) if done else _("%(ip)s was not banned.", ip=ip),
              "success" if done else "info")
    return redirect(url_for("sessions.index"), code=303)
