"""Settings: grouped option pages and a raw editor, both ending in diff -> apply -> reload.

Apply writes through :func:`appliance.vpn.config.write_config_atomic` (validated again,
atomic, previous file kept as ``.bak``) and then asks the server to ``reload`` over the
control socket: running sessions stay up, new ones get the new settings.  Options the
server only reads at start are named on the review page so nobody is surprised.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.wrappers import Response as WerkzeugResponse

from ...vpn.config import ConfigDocument, ConfigError, write_config_atomic
from ...web.l10n import format_bytes
from ..servermessages import translate
from ..settingsform import (
    GROUPS,
    GROUPS_BY_SLUG,
    MAX_RAW_BYTES,
    Draft,
    apply_form,
    fields_for,
    form_values,
    normalise,
    restart_needed,
    text_hash,
    unified_diff,
    validate_text,
    warnings_for,
)
from .common import ctx, owner, vpn_call

log = logging.getLogger(__name__)

bp = Blueprint("settings", __name__, url_prefix="/settings")

ViewResult = str | WerkzeugResponse | tuple[str, int]


def _current() -> str:
    """The configuration as it is on disk now (normalised line endings)."""
    try:
        return normalise(ConfigDocument.load(str(ctx().layout.conf)).text())
    except ConfigError as exc:
        abort(500, description=_("ocserv.conf cannot be read: %(reason)s", reason=exc))


def _propose(old: str, new: str, origin: str) -> WerkzeugResponse:
    path = str(ctx().layout.conf)
    draft = Draft(secrets.token_urlsafe(16), text_hash(old), new, origin,
                  unified_diff(old, new), restart_needed(old, new, path),
                  warnings_for(new, path))
    ctx().drafts.put(owner(), draft)
    return redirect(url_for("settings.review"), code=303)


@bp.get("/")
def index() -> str:
    return render_template("webui/settings_index.html", groups=GROUPS,
                           pending=ctx().drafts.current(owner()))


@bp.route("/group/<slug>", methods=["GET", "POST"])
def group(slug: str) -> ViewResult:
    grp = GROUPS_BY_SLUG.get(slug)
    if grp is None:
        abort(404)
    old = _current()
    doc = ConfigDocument(old, str(ctx().layout.conf))
    if request.method == "GET":
        return render_template("webui/settings_group.html", group=grp, groups=GROUPS,
                               fields=fields_for(grp, doc), errors={}, general=[])
    submitted = form_values(grp, request.form.to_dict())
    errors = apply_form(grp, doc, submitted)
    new = normalise(doc.text())
    general = [] if errors else validate_text(new, str(ctx().layout.conf))
    if errors or general:
        shown = [replace(f, value=submitted.get(f.name, "")) for f in fields_for(grp, doc)]
        return render_template("webui/settings_group.html", group=grp, groups=GROUPS,
                               fields=shown, errors=errors, general=general), 400
    if new == old:
        flash(_("Nothing changed."), "info")
        return redirect(url_for("settings.group", slug=slug), code=303)
    return _propose(old, new, slug)


@bp.route("/raw", methods=["GET", "POST"])
def raw() -> ViewResult:
    old = _current()
    if request.method == "GET":
        return render_template("webui/settings_raw.html", groups=GROUPS, text=old, errors=[])
    text = request.form.get("text", "")
    if len(text) > MAX_RAW_BYTES:
        return render_template("webui/settings_raw.html", groups=GROUPS, text=old,
                               errors=[_("The text is larger than %(size)s.",
                                         size=format_bytes(MAX_RAW_BYTES))]), 400
    new = normalise(text)
    errors = validate_text(new, str(ctx().layout.conf))
    if errors:
        return render_template("webui/settings_raw.html", groups=GROUPS, text=new,
                               errors=errors), 400
    if new == old:
        flash(_("Nothing changed."), "info")
        return redirect(url_for("settings.raw"), code=303)
    return _propose(old, new, "raw")


@bp.get("/review")
def review() -> ViewResult:
    draft = ctx().drafts.current(owner())
    if draft is None:
        flash(_("There are no changes waiting to be applied."), "info")
        return redirect(url_for("settings.index"), code=303)
    stale = draft.base_hash != text_hash(_current())
    return render_template("webui/settings_review.html", draft=draft, groups=GROUPS,
                           stale=stale)


@bp.post("/apply")
def apply() -> WerkzeugResponse:
    c = ctx()
    draft = c.drafts.get(owner(), request.form.get("draft", ""))
    if draft is None:
        flash(_("These changes are no longer pending; nothing was applied."), "error")
        return redirect(url_for("settings.index"), code=303)
    with c.files_lock:
        if draft.base_hash != text_hash(_current()):
            c.drafts.drop(owner())
            flash(_("ocserv.conf was changed by someone else meanwhile; nothing was "
                    "applied. Make your change again."), "error")
            return redirect(url_for("settings.index"), code=303)
        try:
            write_config_atomic(str(c.layout.conf), draft.text)
        except (ConfigError, OSError) as exc:
            flash(_("Nothing was applied: %(reason)s", reason=exc), "error")
            return redirect(url_for("settings.review"), code=303)
    c.drafts.drop(owner())
    log.info("admin %s applied a configuration change (%s)", g.get("admin"), draft.origin)
    message, problem = vpn_call(c.vpn.reload, "")
    answer = translate(message) if message else None
    if problem:
        flash(_("Saved. %(problem)s The new settings apply when it starts.",
                problem=problem), "warning")
    elif answer is not None and not answer.ok:
        flash(answer.text, "error")  # e.g. "reload failed: ...", said in the page's language
    else:
        flash(_("Saved and reloaded: new connections use the new settings, connected "
                "users stay connected."), "success")
    if draft.restart:
        flash(_("These options take effect only after a restart of the VPN server: "
                "%(options)s", options=", ".join(draft.restart)), "warning")
    if draft.origin == "raw":
        return redirect(url_for("settings.raw"), code=303)
    return redirect(url_for("settings.group", slug=draft.origin), code=303)


@bp.post("/discard")
def discard() -> WerkzeugResponse:
    ctx().drafts.drop(owner())
    flash(_("The changes were discarded."), "info")
    return redirect(url_for("settings.index"), code=303)
