"""Logs: the tail of the VPN's log with text and level filters (GET form, no JS)."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from ..logsource import LEVELS, LogQuery
from .common import ctx

bp = Blueprint("logs", __name__, url_prefix="/logs")

LINE_CHOICES = (100, 200, 500, 1000, 2000)


@bp.get("/")
def index() -> str:
    try:
        lines = int(request.args.get("lines", "200"))
    except ValueError:
        lines = 200
    query = LogQuery(lines, request.args.get("q", ""), request.args.get("level", "")).clean()
    source = ctx().logs
    return render_template("webui/logs.html", lines=source.read(query), query=query,
                           levels=LEVELS, line_choices=LINE_CHOICES,
                           source=source.description)
