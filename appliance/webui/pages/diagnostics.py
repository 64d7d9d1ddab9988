"""Diagnostics: listening ports, DTLS reachability, subnet conflicts, certificate expiry,
configuration warnings; and the metrics token."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as WerkzeugResponse

from ...vpn.config import load_config
from ..diagnostics import (
    check_certificates,
    check_config,
    check_dtls,
    check_ports,
    check_subnets,
    listeners,
    local_networks,
)
from ..metrics import new_token, read_token, remove_token
from .common import ctx, vpn_call

log = logging.getLogger(__name__)

bp = Blueprint("diagnostics", __name__, url_prefix="/diagnostics")


@bp.get("/")
def index() -> str:
    return _render(None)


def _render(new_token: str | None) -> str:
    c = ctx()
    cfg, config_findings = check_config(lambda: load_config(str(c.layout.conf)))
    found = listeners()
    users, problem = vpn_call(c.vpn.users, [])
    certs = [(_("Server certificate"), Path(cfg.server_cert if cfg and cfg.server_cert
                                            else c.layout.server_cert)),
             (_("CA certificate"), Path(cfg.ca_cert if cfg and cfg.ca_cert
                                        else c.layout.ca_cert))]
    clients = c.layout.certs_dir / "clients"
    if clients.is_dir():
        certs += [(_("Client certificate %(name)s", name=p.name.removesuffix("-cert.pem")), p)
                  for p in sorted(clients.glob("*-cert.pem"))]
    sections = [
        (_("Ports"), check_ports(cfg, found)),
        (_("DTLS reachability"), check_dtls(users, bool(cfg and cfg.udp_port))
         if problem is None else []),
        (_("Subnets"), check_subnets(cfg, local_networks())),
        (_("Certificates"), check_certificates(certs)),
        (_("Configuration"), config_findings),
    ]
    return render_template("webui/diagnostics.html", sections=sections, listeners=found,
                           problem=problem,
                           token_set=read_token(c.metrics_token_file) is not None,
                           new_token=new_token)


@bp.post("/metrics-token")
def metrics_token() -> str | WerkzeugResponse:
    """Create (shown once, in this response only) or remove the metrics bearer token."""
    c = ctx()
    if request.form.get("action") == "remove":
        remove_token(c.metrics_token_file)
        log.info("admin %s removed the metrics token", g.get("admin"))
        flash(_("The metrics endpoint no longer needs a token."), "info")
        return redirect(url_for("diagnostics.index"), code=303)
    token = new_token(c.metrics_token_file)
    log.info("admin %s created a new metrics token", g.get("admin"))
    return _render(token)
