"""The update page: upload a signed bundle, see what RAUC found, install, reboot.

``update.js`` sends the file in pieces (``POST upload?offset=N``, each under the web
server's 1 MiB request limit, which is what moves the progress bar) and then asks for the
check (``POST check``): a bundle is hundreds of megabytes, and neither a multipart form
nor one huge body may be buffered by the server.  The pieces go straight to the data
partition and RAUC checks the signature before the page offers "Install".
"""

from __future__ import annotations

import logging

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from ...update.history import ROLLED_BACK
from ...update.rauc import BundleInfo
from ...web.l10n import format_bytes
from ..updates import CHUNK_BYTES, MAX_BUNDLE_BYTES, Updates, UploadError
from .common import ctx

log = logging.getLogger(__name__)

bp = Blueprint("update", __name__, url_prefix="/update")


def updates() -> Updates:
    service = ctx().updates
    assert service is not None
    return service


def _info_dict(info: BundleInfo) -> dict[str, object]:
    return {"version": info.version, "signer": info.signer, "compatible": info.compatible,
            "size": format_bytes(info.size)}


@bp.get("/")
def index() -> str:
    service = updates()
    ready = None
    if service.upload_file.exists() and service.progress.state != "installing":
        try:
            ready = _info_dict(service.checked())
        except UploadError as exc:
            flash(_("The uploaded file was refused: %(reason)s", reason=exc), "error")
    last = service.last()
    return render_template("webui/update.html", release=service.release(),
                           slot=service.booted_slot(), last=last,
                           rolled_back=last is not None and last.result == ROLLED_BACK,
                           pending=service.pending(), ready=ready,
                           progress=service.progress,
                           max_size=format_bytes(MAX_BUNDLE_BYTES), chunk=CHUNK_BYTES)


@bp.post("/upload")
def upload() -> ResponseReturnValue:
    try:
        offset = int(request.args.get("offset", ""))
        if offset < 0:
            raise ValueError(offset)
    except ValueError:
        return jsonify(ok=False, error=_("The file was refused and deleted: %(reason)s",
                                         reason=_("the upload was interrupted; start it "
                                                  "again"))), 400
    try:
        received = updates().append(offset, request.get_data(cache=False))
    except UploadError as exc:
        return jsonify(ok=False, error=_("The file was refused and deleted: %(reason)s",
                                         reason=exc)), 400
    return jsonify(ok=True, received=received)


@bp.post("/check")
def check() -> ResponseReturnValue:
    service = updates()
    try:
        info = service.finish_upload()
    except UploadError as exc:
        log.warning("update upload refused by=%s reason=%s", g.get("admin"), exc)
        return jsonify(ok=False, error=_("The file was refused and deleted: %(reason)s",
                                         reason=exc)), 400
    log.info("update upload checked by=%s version=%s signer=%r", g.get("admin"),
             info.version, info.signer)
    return jsonify(ok=True, **_info_dict(info))


@bp.post("/install")
def install() -> ResponseReturnValue:
    if updates().start_install():
        log.info("update install started by=%s", g.get("admin"))
    else:
        flash(_("There is no checked bundle to install, or an installation is running."),
              "error")
    return redirect(url_for("update.index"), code=303)


@bp.post("/discard")
def discard() -> ResponseReturnValue:
    updates().discard()
    return redirect(url_for("update.index"), code=303)


@bp.get("/progress")
def progress() -> ResponseReturnValue:
    p = updates().progress
    return jsonify(state=p.state, percent=p.percent, message=p.message, error=p.error,
                   version=p.version)
