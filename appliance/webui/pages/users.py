"""Users: list, add, groups, lock/unlock, password reset, delete, per-user settings,
and the onboarding page that tells a user how to connect."""

from __future__ import annotations

import datetime
import ipaddress
import logging

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.wrappers import Response as WerkzeugResponse

from ... import pki
from ...vpn.config import ConfigError
from ...web.passwords import RULES_TEXT, check_password
from ..onboarding import anyconnect_profile, qr_svg, server_identity
from ..radiusinfo import RadiusInfo, read_radius_info
from ..userstore import (
    UserSettings,
    UserStoreError,
    VpnUser,
    check_username,
    parse_groups,
    parse_settings_form,
)
from .common import ctx, owner, vpn_call
from .usercerts import register_cert_routes

log = logging.getLogger(__name__)

bp = Blueprint("users", __name__, url_prefix="/users")

ViewResult = str | WerkzeugResponse | tuple[str, int]


def _user_or_404(name: str) -> VpnUser:
    try:
        check_username(name)
    except UserStoreError:
        abort(404)
    user = ctx().users.get(name)
    if user is None:
        abort(404)
    return user


def _password_problems(password: str, confirm: str, username: str) -> list[str]:
    problems = [] if password == confirm else [_("The two passwords differ.")]
    return problems + list(check_password(password, username=username,
                                          context=["ocgate", "openconnect"]).problems)


def _radius() -> RadiusInfo | None:
    return read_radius_info(ctx().layout.conf)


# the POST routes that edit local accounts: none of them applies while RADIUS holds them
_LOCAL_ACCOUNT_EDITS = frozenset({"users.add", "users.groups", "users.lock",
                                  "users.password", "users.delete"})


@bp.before_request
def _refused_for_radius() -> tuple[str, int] | None:
    """Local account edits mean nothing while RADIUS holds the accounts (issue #12)."""
    if request.endpoint not in _LOCAL_ACCOUNT_EDITS:
        return None
    info = _radius()
    if info is None:
        return None
    return render_template("error.html", code=409, title=_("Managed by RADIUS"),
                           message=_("VPN users are managed by %(server)s; change them "
                                     "there.", server=info.label)), 409


def _back(name: str | None = None) -> WerkzeugResponse:
    if name is None:
        return redirect(url_for("users.index"), code=303)
    return redirect(url_for("users.edit", name=name), code=303)


# --------------------------------------------------------------------------- list + add


@bp.get("/")
def index() -> str:
    c = ctx()
    try:
        users = c.users.list()
        problem = None
    except UserStoreError as exc:
        users, problem = [], str(exc)
    online, _why = vpn_call(c.vpn.users, [])
    connected = {u.username for u in online}
    return render_template("webui/users.html", users=users, connected=connected,
                           problem=problem, rules=RULES_TEXT, values={}, errors=[],
                           radius=_radius())


@bp.post("/add")
def add() -> ViewResult:
    c = ctx()
    form = request.form
    values = {"username": form.get("username", "")[:64], "groups": form.get("groups", "")[:500]}
    errors: list[str] = []
    username = ""
    groups: list[str] = []
    try:
        username = check_username(values["username"])
    except UserStoreError as exc:
        errors.append(str(exc))
    try:
        groups = parse_groups(values["groups"])
    except UserStoreError as exc:
        errors.append(str(exc))
    errors += _password_problems(form.get("password", ""), form.get("confirm", ""), username)
    if not errors:
        try:
            c.users.add(username, form.get("password", ""), groups)
        except UserStoreError as exc:
            errors.append(str(exc))
    if errors:
        online, _why = vpn_call(c.vpn.users, [])
        return render_template("webui/users.html", users=c.users.list(),
                               connected={u.username for u in online}, problem=None,
                               rules=RULES_TEXT, values=values, errors=errors,
                               radius=None), 400
    log.info("admin %s added VPN user %s", g.get("admin"), username)
    flash(_("User %(name)s was added.", name=username), "success")
    return _back(username)


# --------------------------------------------------------------------------- one user


def _edit_page(user: VpnUser, status: int = 200, **extra: object) -> tuple[str, int]:
    c = ctx()
    sessions, _why = vpn_call(c.vpn.users, [])
    settings = extra.pop("settings", None) or c.users.read_settings(user.username)
    extra.setdefault("certs", cert_list(user.username))
    return render_template("webui/user.html", user=user, rules=RULES_TEXT,
                           settings=settings, radius=_radius(),
                           cert_login=c.certs.cert_login_enabled(),
                           now=datetime.datetime.now(datetime.UTC),
                           sessions=[s for s in sessions if s.username == user.username],
                           **extra), status


@bp.get("/<name>")
def edit(name: str) -> ViewResult:
    return _edit_page(_user_or_404(name))


@bp.post("/<name>/groups")
def groups(name: str) -> ViewResult:
    user = _user_or_404(name)
    try:
        ctx().users.set_groups(user.username, parse_groups(request.form.get("groups", "")))
    except UserStoreError as exc:
        return _edit_page(user, 400, errors=[str(exc)])
    flash(_("Groups saved."), "success")
    return _back(name)


@bp.post("/<name>/lock")
def lock(name: str) -> ViewResult:
    user = _user_or_404(name)
    locked = request.form.get("locked") == "1"
    c = ctx()
    c.users.set_locked(user.username, locked)
    if locked:
        count, _why = vpn_call(lambda: c.vpn.disconnect_user(user.username), 0)
        if count:
            flash(ngettext("%(name)s is locked and %(num)d session was ended.",
                           "%(name)s is locked and %(num)d sessions were ended.", count,
                           name=user.username), "success")
        else:
            flash(_("%(name)s is locked.", name=user.username), "success")
    else:
        flash(_("%(name)s is unlocked.", name=user.username), "success")
    return _back(name)


@bp.post("/<name>/password")
def password(name: str) -> ViewResult:
    user = _user_or_404(name)
    new = request.form.get("password", "")
    problems = _password_problems(new, request.form.get("confirm", ""), user.username)
    if problems:
        return _edit_page(user, 400, errors=problems)
    ctx().users.reset_password(user.username, new)
    flash(_("The password was changed. It applies from the next login."), "success")
    return _back(name)


@bp.post("/<name>/delete")
def delete(name: str) -> ViewResult:
    user = _user_or_404(name)
    if request.form.get("confirm") != user.username:
        return _edit_page(user, 400, errors=[_("Type the user name to confirm deleting it.")])
    c = ctx()
    c.users.delete(user.username)
    revoked = revoke_all(user.username)
    count, _why = vpn_call(lambda: c.vpn.disconnect_user(user.username), 0)
    if revoked:
        flash(ngettext("%(num)d certificate of %(name)s was revoked.",
                       "%(num)d certificates of %(name)s were revoked.", revoked,
                       name=user.username), "info")
    log.info("admin %s deleted VPN user %s", g.get("admin"), user.username)
    if count:
        flash(ngettext("User %(name)s was deleted; %(num)d session was ended.",
                       "User %(name)s was deleted; %(num)d sessions were ended.", count,
                       name=user.username), "success")
    else:
        flash(_("User %(name)s was deleted.", name=user.username), "success")
    return _back()


@bp.post("/<name>/settings")
def settings(name: str) -> ViewResult:
    user = _user_or_404(name)
    c = ctx()
    form = request.form
    try:
        parsed = parse_settings_form(form.get("routes", ""), form.get("dns", ""),
                                     form.get("explicit_ipv4", ""), form.get("rx", ""),
                                     form.get("tx", ""))
        _check_static_ip(parsed)
        conf_changed = c.users.write_settings(user.username, parsed)
    except (UserStoreError, ConfigError) as exc:
        draft = UserSettings(form.get("routes", "").split(), form.get("dns", "").split(),
                             form.get("explicit_ipv4", "") or None)
        return _edit_page(user, 400, errors=[str(exc)], settings=draft)
    if conf_changed:
        _answer, problem = vpn_call(c.vpn.reload, "")
        if problem:
            flash(problem, "warning")
    flash(_("Settings saved. They apply from the user's next connection."), "success")
    return _back(name)


def _check_static_ip(settings: UserSettings) -> None:
    cfg = ctx().config()
    if settings.explicit_ipv4 is None or cfg is None or cfg.ipv4_network is None:
        return
    address = ipaddress.IPv4Address(settings.explicit_ipv4)
    pool = cfg.ipv4_network
    if address not in pool or address in (pool.network_address, pool.broadcast_address):
        raise UserStoreError(_("The static IP must be a host address inside the VPN subnet "
                               "%(pool)s.", pool=pool))


# --------------------------------------------------------------------------- onboarding


@bp.get("/<name>/onboarding")
def onboarding(name: str) -> ViewResult:
    user = _user_or_404(name)
    c = ctx()
    try:
        identity = server_identity(c.layout, c.config())
    except (pki.PkiError, OSError, ValueError) as exc:
        return render_template("webui/onboarding.html", user=user, identity=None,
                               problem=_("The server certificate cannot be read: %(reason)s",
                                         reason=exc)), 500
    return render_template("webui/onboarding.html", user=user, identity=identity,
                           command=identity.openconnect_command(user.username),
                           qr=qr_svg(identity.qr_text()), problem=None)


@bp.get("/<name>/profile.xml")
def profile(name: str) -> Response:
    _user_or_404(name)
    c = ctx()
    identity = server_identity(c.layout, c.config())
    return Response(anyconnect_profile(identity), mimetype="application/xml",
                    headers={"Content-Disposition": 'attachment; filename="ocgate.xml"'})


@bp.get("/-/ca.crt")
def ca_cert() -> Response:
    c = ctx()
    cfg = c.config()
    path = (cfg.ca_cert if cfg and cfg.ca_cert else None) or str(c.layout.ca_cert)
    try:
        data = open(path, "rb").read()
    except OSError:
        abort(404)
    return Response(data, mimetype="application/x-x509-ca-cert",
                    headers={"Content-Disposition": 'attachment; filename="ocgate-ca.crt"'})


# --------------------------------------------------------------------------- certificates


def cert_list(username: str) -> list[object]:
    try:
        return list(ctx().certs.for_user(username))
    except ValueError as exc:
        log.error("certificate list unreadable: %s", exc)
        return []


def revoke_all(username: str) -> int:
    """A deleted user's certificates must stop working too: certificate login does not
    look at the password file."""
    certs = ctx().certs
    now = datetime.datetime.fromtimestamp(ctx().wall(), datetime.UTC)
    count = 0
    try:
        for record in certs.for_user(username):
            if record.status(now) == "valid":
                certs.revoke(record.serial, now)
                count += 1
    except ValueError as exc:
        log.error("could not revoke the certificates of %s: %s", username, exc)
    return count


register_cert_routes(bp, _user_or_404, _edit_page, owner)
