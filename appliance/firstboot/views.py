"""The wizard's pages: one GET/POST pair per step, plain forms, no JavaScript needed.

Every step stores its answer in the browser's server-side draft and redirects to the next
one (post/redirect/get, so a reload never re-submits).  A step whose prerequisites are
missing redirects back to the first unfinished one.  Changing an earlier answer drops the
later answers that depended on it (new names => new certificate => new client cert).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.wrappers import Response as WerkzeugResponse

from .. import pki
from ..reach.settings import ReachSettings
from ..vpn.config import ConfigError
from ..vpn.passwd import hash_password
from ..web import reachview
from ..web.csrf import rotate_csrf_token
from ..web.i18n import current as current_language
from ..web.langprefs import LanguagePrefs
from ..web.passwords import RULES_TEXT, check_password
from ..web.ratelimit import describe_wait
from .apply import AlreadySetUpError, ApplyError, apply_plan
from .certs import CA_DAYS, CLIENT_DAYS, KEY_TYPES, SERVER_DAYS, make_certificates, make_client
from .context import STEP_NAMES, STEPS, Draft, Final, WizardContext
from .forms import (
    FormError,
    parse_dns_servers,
    parse_host,
    parse_label,
    parse_name_list,
    parse_routes,
    parse_username,
)
from .network import NetworkInfo, suggest_dns
from .plan import AdminAccount, FirstUser, NetworkChoice, ReachChoice, SubnetChoice
from .reachform import form_values, parse_reach_form
from .subnets import (
    NoFreeSubnetError,
    SubnetError,
    check_ipv6_pool,
    check_subnet,
    choose_subnet,
    propose_ipv6,
)

log = logging.getLogger(__name__)

bp = Blueprint("wizard", __name__, url_prefix="/setup", template_folder="templates")

ViewResult = str | WerkzeugResponse | tuple[str, int]


def ctx() -> WizardContext:
    return current_app.extensions["ocgate_wizard"]


def _draft() -> Draft | None:
    return ctx().drafts.get(session.get("wid"))


def _page(template: str, step: str, draft: Draft | None, status: int = 200,
          **values: Any) -> tuple[str, int]:
    done = draft.done_steps() if draft is not None else set()
    if step == "done":
        done = set(STEP_NAMES)
    return render_template(template, steps=STEPS, step=step, done=done, draft=draft,
                           **values), status


def _to(step: str) -> WerkzeugResponse:
    return redirect(url_for(f"wizard.{step}"), code=303)


def needs(step: str) -> Callable[[Callable[[Draft], ViewResult]], Callable[[], ViewResult]]:
    """Decorator: the view runs only with a draft whose earlier steps are complete."""
    order = [name for name, _ in STEPS]

    def wrap(view: Callable[[Draft], ViewResult]) -> Callable[[], ViewResult]:
        def guarded() -> ViewResult:
            if ctx().layout.is_setup_done():
                return _to("done")
            draft = _draft()
            if draft is None:
                return _to("code")
            missing = [s for s in order[:order.index(step)] if s not in draft.done_steps()]
            if missing:
                return _to(missing[0])
            return view(draft)

        guarded.__name__ = view.__name__
        return guarded

    return wrap


# --------------------------------------------------------------------------- start + code


@bp.get("/")
def start() -> WerkzeugResponse:
    if ctx().layout.is_setup_done():
        return _to("done")
    draft = _draft()
    return _to(draft.next_step() if draft else "code")


@bp.route("/code", methods=["GET", "POST"])
def code() -> ViewResult:
    c = ctx()
    if c.layout.is_setup_done():
        return _to("done")
    client = request.remote_addr or "unknown"
    code_path = c.layout.setup_code
    if request.method == "GET":
        if _draft() is not None:
            return _to("admin")
        return _page("wizard/code.html", "code", None, code_path=code_path)
    verdict = c.throttle.check(client, c.clock())
    if not verdict.allowed:
        wait = describe_wait(verdict.retry_after)
        if verdict.scope == "client":
            error = _("Too many wrong setup codes from this device. Wait %(wait)s and try "
                      "again.", wait=wait)
        else:
            error = _("Too many wrong setup codes in total. Wait %(wait)s and try again.",
                      wait=wait)
        return _page("wizard/code.html", "code", None, 429, code_path=code_path,
                     errors=[error])
    if c.code_store.verify(request.form.get("code", "")):
        c.throttle.success(client)
        draft = c.drafts.create()
        session.clear()
        session["wid"] = draft.id
        session.permanent = True
        rotate_csrf_token()
        log.info("setup code accepted from %s", client)
        return _to("admin")
    after = c.throttle.failure(client, c.clock())
    log.warning("wrong setup code from %s", client)
    if after.allowed:
        error = ngettext("That is not the setup code. %(num)d more try before a waiting "
                         "time starts.",
                         "That is not the setup code. %(num)d more tries before a waiting "
                         "time starts.", after.tries_left or 0)
    else:
        error = _("That is not the setup code. Wait %(wait)s before the next try.",
                  wait=describe_wait(after.retry_after))
    return _page("wizard/code.html", "code", None, 403, code_path=code_path, errors=[error])


# --------------------------------------------------------------------------- admin


@bp.route("/admin", methods=["GET", "POST"], endpoint="admin")
@needs("admin")
def admin(draft: Draft) -> ViewResult:
    values = {"username": draft.admin.username if draft.admin else "admin"}
    if request.method == "GET":
        return _page("wizard/admin.html", "admin", draft, rules=RULES_TEXT, values=values)
    errors: list[str] = []
    password = request.form.get("password", "")
    try:
        username = parse_username(request.form.get("username", ""))
        values["username"] = username
    except FormError as exc:
        errors.append(str(exc))
        username = ""
    if password != request.form.get("confirm", ""):
        errors.append(_("The two passwords differ."))
    result = check_password(password, username=username,
                            context=["ocgate", "openconnect", draft.hostname])
    errors += result.problems
    if errors:
        values["username"] = request.form.get("username", "")[:64]
        return _page("wizard/admin.html", "admin", draft, 400, rules=RULES_TEXT,
                     values=values, errors=errors)
    draft.admin = AdminAccount(username, hash_password(password))
    return _to("network")


# --------------------------------------------------------------------------- network


def _info(draft: Draft, refresh: bool = False) -> NetworkInfo:
    if draft.info is None or refresh:
        draft.info = ctx().network(refresh=refresh)
        if draft.network is None:
            draft.hostname = draft.info.hostname
    return draft.info


def _network_defaults(draft: Draft, info: NetworkInfo) -> dict[str, str]:
    if draft.network is not None:
        extra = [n for n in draft.network.dns_names
                 if n not in (draft.network.server_address, draft.hostname,
                              f"{draft.hostname}.local")]
        return {"hostname": draft.hostname, "server": draft.network.server_address,
                "names": "\n".join(extra)}
    public = info.public_addresses
    server = str(public[0]) if public else str(info.primary_address or "")
    names = [f"{ctx().mdns_name}.local"] if ctx().mdns_name != info.hostname else []
    return {"hostname": info.hostname, "server": server, "names": "\n".join(names)}


def _san_addresses(info: NetworkInfo, server: str) -> list[str]:
    addrs = [str(a.address) for a in info.lan_addresses]
    addrs += [str(a) for a in info.public_addresses]
    try:
        addrs.append(str(ipaddress.ip_address(server)))
    except ValueError:
        pass
    return list(dict.fromkeys(addrs))


@bp.route("/network", methods=["GET", "POST"], endpoint="network")
@needs("network")
def network(draft: Draft) -> ViewResult:
    if request.method == "POST" and request.form.get("action") == "detect":
        _info(draft, refresh=True)
        return _to("network")
    info = _info(draft)
    values = _network_defaults(draft, info)
    if request.method == "GET":
        return _page("wizard/network.html", "network", draft, info=info, values=values,
                     addresses=_san_addresses(info, values["server"]))
    errors: list[str] = []
    form = request.form
    values = {k: form.get(k, "")[:2000] for k in ("hostname", "server", "names")}
    hostname = server = ""
    names: list[str] = []
    for parse, key in ((parse_label, "hostname"), (parse_host, "server"),
                       (parse_name_list, "names")):
        try:
            value = parse(values[key])
        except FormError as exc:
            errors.append(str(exc))
            continue
        if key == "hostname":
            hostname = str(value)
        elif key == "server":
            server = str(value)
        else:
            names = list(value)
    if errors:
        return _page("wizard/network.html", "network", draft, 400, info=info, values=values,
                     addresses=_san_addresses(info, values["server"]), errors=errors)
    dns_names = [server] if not _is_ip(server) else []
    dns_names += [hostname, f"{hostname}.local", *names]
    choice = NetworkChoice(server, list(dict.fromkeys(dns_names)),
                           _san_addresses(info, server))
    if choice != draft.network or hostname != draft.hostname:
        draft.certs = None  # the certificate must name the new names
        draft.user = None if draft.user and draft.user.method == "certificate" else draft.user
    draft.hostname = hostname
    draft.network = choice
    return _to("reach")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- reach


def _reach_page(draft: Draft, status: int = 200, **values: Any) -> tuple[str, int]:
    c = ctx()
    checked = draft.reach_status
    card = reachview.card(checked, draft.reach.settings if draft.reach else
                          reach_defaults(), None) if checked else None
    return _page("wizard/reach.html", "reach", draft, status, card=card,
                 can_check=c.reach_check is not None, vpn_port=c.vpn_port, **values)


def reach_defaults() -> ReachSettings:
    return ReachSettings(enabled=True)


@bp.route("/reach", methods=["GET", "POST"], endpoint="reach")
@needs("reach")
def reach(draft: Draft) -> ViewResult:
    """Reach from the Internet: look at the router once, then choose the mapping, the public
    name and the certificate (the service does all of it once the setup is applied)."""
    c = ctx()
    saved = draft.reach.secrets if draft.reach else {}
    if request.method == "GET":
        values = form_values(draft.reach.settings if draft.reach else reach_defaults())
        return _reach_page(draft, values=values)
    if request.form.get("action") == "check":
        info = _info(draft)
        lan = str(info.primary_address or "")
        if c.reach_check is not None and lan:
            draft.reach_status = c.reach_check(lan, c.vpn_port)
        return _to("reach")
    if request.form.get("action") == "skip":
        draft.reach = ReachChoice(ReachSettings(), {})
        return _to("subnet")
    parsed = parse_reach_form(request.form, saved)
    if parsed.errors:
        return _reach_page(draft, 400, values=parsed.values, errors=parsed.errors)
    draft.reach = ReachChoice(parsed.settings, parsed.secrets)
    return _to("subnet")


# --------------------------------------------------------------------------- subnet


def _subnet_defaults(draft: Draft, info: NetworkInfo) -> dict[str, Any]:
    c = ctx()
    occupied = info.occupied()
    if draft.subnet is not None:
        s = draft.subnet
        return {"pool": s.ipv4.with_prefixlen, "ipv6": s.ipv6 is not None,
                "pool6": s.ipv6.with_prefixlen if s.ipv6 else str(propose_ipv6(occupied,
                                                                              c.policy)),
                "mode": "full" if s.full_tunnel else "lan",
                "routes": "\n".join(r.with_prefixlen for r in s.lan_routes),
                "dns": "\n".join(s.dns)}
    try:
        pool = choose_subnet(occupied, c.policy).with_prefixlen
    except NoFreeSubnetError:
        pool = ""
    try:
        pool6 = str(propose_ipv6(occupied, c.policy))
    except NoFreeSubnetError:
        pool6 = ""
    lan = [n.with_prefixlen for n in info.lan_networks if n.version == 4]
    return {"pool": pool, "ipv6": False, "pool6": pool6, "mode": "full",
            "routes": "\n".join(lan), "dns": "\n".join(suggest_dns(info))}


@bp.route("/subnet", methods=["GET", "POST"], endpoint="subnet")
@needs("subnet")
def subnet(draft: Draft) -> ViewResult:
    c = ctx()
    info = _info(draft)
    occupied = info.occupied()
    proposal = _subnet_defaults(draft, info)
    page = {"info": info, "occupied": occupied, "policy": c.policy,
            "proposed": _subnet_defaults(Draft("", 0.0), info)["pool"]}
    if request.method == "GET":
        return _page("wizard/subnet.html", "subnet", draft, values=proposal, **page)
    form = request.form
    values: dict[str, Any] = {k: form.get(k, "")[:2000] for k in ("pool", "pool6", "mode",
                                                                  "routes", "dns")}
    values["ipv6"] = form.get("ipv6") == "on"
    errors: list[str] = []
    warnings: list[str] = []
    pool4 = pool6 = None
    try:
        pool4, warnings = check_subnet(values["pool"], occupied, c.policy,
                                       uplink_in_cgnat=info.behind_cgnat)
    except SubnetError as exc:
        errors.append(str(exc))
    if values["ipv6"]:
        try:
            pool6 = check_ipv6_pool(values["pool6"], occupied, c.policy)
        except SubnetError as exc:
            errors.append(str(exc))
    full = values["mode"] != "lan"
    routes = []
    try:
        routes = parse_routes(values["routes"]) if not full else []
        dns = parse_dns_servers(values["dns"])
    except FormError as exc:
        errors.append(str(exc))
        dns = []
    if not full and not routes and not errors:
        errors.append(_("'LAN only' needs at least one network to route, e.g. "
                        "192.168.1.0/24."))
    for route in routes:
        if pool4 is not None and route.version == 4 and route.overlaps(pool4):
            errors.append(_("The route %(route)s overlaps the VPN subnet %(pool)s.",
                            route=route, pool=pool4))
    if errors or pool4 is None:
        return _page("wizard/subnet.html", "subnet", draft, 400, values=values,
                     errors=errors, **page)
    draft.subnet = SubnetChoice(pool4, pool6, full, routes, dns, warnings)
    return _to("certs")


# --------------------------------------------------------------------------- certificates


@bp.route("/certificates", methods=["GET", "POST"], endpoint="certs")
@needs("certs")
def certs(draft: Draft) -> ViewResult:
    assert draft.network is not None
    # the template context, as loose as _page's **values
    page: dict[str, Any] = {"key_types": KEY_TYPES, "ca_days": CA_DAYS,
                            "server_days": SERVER_DAYS, "network": draft.network}
    if request.method == "GET":
        current = draft.certs.key_type if draft.certs else "ec"
        return _page("wizard/certs.html", "certs", draft, key_type=current, **page)
    key_type = request.form.get("key_type", "ec")
    if key_type not in KEY_TYPES:
        return _page("wizard/certs.html", "certs", draft, 400, key_type="ec",
                     errors=[_("Choose one of the key types.")], **page)
    try:
        draft.certs = make_certificates(draft.hostname, draft.network.dns_names,
                                        draft.network.ip_addresses, key_type)
    except pki.PkiError as exc:
        return _page("wizard/certs.html", "certs", draft, 400, key_type=key_type,
                     errors=[_("The certificate could not be made: %(reason)s",
                               reason=exc)], **page)
    if draft.user is not None and draft.user.method == "certificate":
        draft.user = None  # signed by the old CA
    return _to("user")


# --------------------------------------------------------------------------- first user


@bp.route("/user", methods=["GET", "POST"], endpoint="user")
@needs("user")
def user(draft: Draft) -> ViewResult:
    assert draft.certs is not None
    values = {"username": draft.user.username if draft.user else "",
              "method": draft.user.method if draft.user else "password", "legacy": False}
    if request.method == "GET":
        return _page("wizard/user.html", "user", draft, rules=RULES_TEXT, values=values,
                     client_days=CLIENT_DAYS)
    form = request.form
    username_text = form.get("username", "")[:64]
    values = {"username": username_text,
              "method": "certificate" if form.get("method") == "certificate" else "password",
              "legacy": form.get("legacy") == "on"}
    errors: list[str] = []
    try:
        username = parse_username(username_text)
    except FormError as exc:
        errors.append(str(exc))
        username = ""
    password = form.get("password", "")
    if values["method"] == "password":
        if password != form.get("confirm", ""):
            errors.append(_("The two passwords differ."))
        errors += check_password(password, username=username,
                                 context=["ocgate", draft.hostname]).problems
    if errors:
        return _page("wizard/user.html", "user", draft, 400, rules=RULES_TEXT,
                     values=values, errors=errors, client_days=CLIENT_DAYS)
    if values["method"] == "password":
        draft.user = FirstUser(username, "password", password_hash=hash_password(password))
    else:
        draft.user = make_client(draft.certs, username, legacy=bool(values["legacy"]))
    return _to("review")


# --------------------------------------------------------------------------- review, apply


@bp.get("/review", endpoint="review")
@needs("review")
def review(draft: Draft) -> ViewResult:
    plan = draft.plan(ctx().vpn_port)
    assert plan is not None
    return _page("wizard/review.html", "review", draft, plan=plan)


@bp.post("/apply", endpoint="apply")
@needs("review")
def apply(draft: Draft) -> ViewResult:
    c = ctx()
    plan = draft.plan(c.vpn_port)
    assert plan is not None
    with c.apply_lock:
        if c.layout.is_setup_done():
            return _to("done")
        try:
            result = apply_plan(plan, c.layout)
        except AlreadySetUpError:
            return _to("done")
        except (ApplyError, ConfigError, OSError) as exc:
            log.exception("apply failed")
            return _page("wizard/review.html", "review", draft, 500, plan=plan,
                         errors=[_("Applying the settings failed: %(reason)s. Nothing was "
                                   "changed; you can try again.", reason=exc)])
        c.final = Final(plan, result, draft.id)
        c.drafts.keep_only(draft.id)
    _keep_language(c, plan.admin.username)
    if c.handover_commands:
        c.handover.run(c.handover_commands)
    if c.on_applied is not None:
        try:
            c.on_applied(c.final)
        except Exception:  # the setup itself is done; report, do not fail the page
            log.exception("post-apply hook failed")
    return _to("done")


def _keep_language(c: WizardContext, admin: str) -> None:
    """The language the setup was done in becomes the admin UI's default (issue 21)."""
    code = current_language().code
    prefs = LanguagePrefs(c.layout.ui_language)
    try:
        prefs.set_default(code)
        prefs.set_account(admin, code)
    except OSError as exc:  # the setup itself is done; the admin UI then follows the browser
        log.error("could not store the language %s: %s", code, exc)


# --------------------------------------------------------------------------- done


@bp.get("/done", endpoint="done")
def done() -> ViewResult:
    c = ctx()
    if not c.layout.is_setup_done():
        return _to("start")
    final = c.final
    owner = final is not None and session.get("wid") == final.owner
    failed = [r for r in c.handover.results if not r.ok]
    return _page("wizard/done.html", "done", _draft(), final=final, owner=owner,
                 plan=final.plan if final else None, failed=failed,
                 finished=c.finished.is_set())


@bp.get("/done/ca.crt", endpoint="ca_download")
def ca_download() -> Response:
    c = ctx()
    if not c.layout.is_setup_done() or c.final is None:
        abort(404)
    return Response(c.final.plan.certs.ca_cert_pem, mimetype="application/x-x509-ca-cert",
                    headers={"Content-Disposition": 'attachment; filename="ocgate-ca.crt"'})


@bp.get("/done/client.p12", endpoint="p12_download")
def p12_download() -> Response:
    c = ctx()
    final = c.final
    if final is None or session.get("wid") != final.owner or final.plan.user.pkcs12 is None:
        abort(404)
    name = final.plan.user.username
    return Response(final.plan.user.pkcs12, mimetype="application/x-pkcs12",
                    headers={"Content-Disposition": f'attachment; filename="{name}.p12"'})


@bp.post("/finish", endpoint="finish")
def finish() -> ViewResult:
    c = ctx()
    if not c.layout.is_setup_done():
        return _to("start")
    if not c.finished.is_set():
        c.finished.set()
        if c.on_finish is not None:
            c.on_finish()
    return _page("wizard/finished.html", "done", _draft())
