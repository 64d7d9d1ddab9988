"""Backup download and restore upload (validated before anything is replaced)."""

from __future__ import annotations

import datetime
import logging

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.wrappers import Response as WerkzeugResponse

from ...vpn.config import ConfigError
from ...web.l10n import format_bytes
from ..backup import MAX_ARCHIVE_BYTES, BackupError, install, make_backup, plan_restore
from .common import ctx, vpn_call

log = logging.getLogger(__name__)

bp = Blueprint("backup", __name__, url_prefix="/backup")

ViewResult = str | WerkzeugResponse | tuple[str, int]


@bp.get("/")
def index() -> str:
    return render_template("webui/backup.html", errors=[], max_size=format_bytes(MAX_ARCHIVE_BYTES))


@bp.post("/download")
def download() -> Response:
    """POST (with the CSRF token): a backup holds private keys, so no GET link that a
    foreign page could make the browser fetch."""
    c = ctx()
    with c.files_lock:
        data = make_backup(c.layout)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    log.info("admin %s downloaded a backup", g.get("admin"))
    return Response(data, mimetype="application/gzip", headers={
        "Content-Disposition": f'attachment; filename="ocgate-backup-{stamp}.tar.gz"'})


@bp.post("/restore")
def restore() -> ViewResult:
    c = ctx()
    upload = request.files.get("archive")
    if upload is None or not upload.filename:
        return _failed([_("Choose a backup file first.")])
    data = upload.stream.read(MAX_ARCHIVE_BYTES + 1)
    try:
        with c.files_lock:
            plan = plan_restore(data, c.layout)
            install(plan, c.layout)
    except (BackupError, ConfigError) as exc:
        log.warning("restore refused: %s", exc)
        return _failed([_("Nothing was changed: %(reason)s", reason=exc)])
    except OSError as exc:
        log.exception("restore failed while writing")
        return _failed([_("Writing the restored files failed: %(reason)s", reason=exc)], 500)
    log.info("admin %s restored a backup from %s", g.get("admin"), plan.created)
    _answer, problem = vpn_call(c.vpn.reload, "")
    flash(ngettext("Backup from %(created)s restored (%(num)d VPN user). Certificates and "
                   "listening settings take effect after a restart of the VPN server.",
                   "Backup from %(created)s restored (%(num)d VPN users). Certificates and "
                   "listening settings take effect after a restart of the VPN server.",
                   plan.users, created=plan.created), "success")
    for note in plan.notes:
        flash(note, "info")
    if problem:
        flash(problem, "warning")
    return redirect(url_for("backup.index"), code=303)


def _failed(errors: list[str], status: int = 400) -> tuple[str, int]:
    return render_template("webui/backup.html", errors=errors,
                           max_size=format_bytes(MAX_ARCHIVE_BYTES)), status
