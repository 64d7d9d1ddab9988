"""Dashboard: server state, sessions with their channel, throughput, device health.

The page is complete without JavaScript (numbers rendered on the server); ``live.js``
polls ``/api/live`` every few seconds to move the numbers and draw the throughput graph.
Every poll also feeds the throughput history, so the graph needs no background thread.
Every figure the script writes into the page comes formatted from here (``*_h`` keys), in
the language of the page that polls, so the script holds no text of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, render_template
from flask_babel import gettext as _

from ...vpn.control import StatusInfo, UserInfo
from ...web.l10n import (
    format_bytes,
    format_celsius,
    format_duration,
    format_number,
    format_percent,
    format_rate,
)
from ...web.vpnclient import Snapshot
from ..system import SystemHealth
from .common import ctx, vpn_call
from .reach import current_card

bp = Blueprint("dashboard", __name__)

GRAPH_SECONDS = 300.0


@dataclass(frozen=True)
class LiveView:
    online: bool
    problem: str | None
    status: StatusInfo | None
    users: list[UserInfo]
    health: SystemHealth
    now: float


def channel(user: UserInfo) -> str:
    """DTLS when the UDP channel is up (the worker reports its cipher), else TLS."""
    return "DTLS" if user.dtls_cipher else "TLS"


def live_view() -> LiveView:
    c = ctx()
    snap, problem = vpn_call(c.vpn.snapshot, None)
    now = c.wall()
    if snap is not None and c.history.due(now):
        c.history.add(now, snap.status.rx, snap.status.tx)
    assert snap is None or isinstance(snap, Snapshot)
    return LiveView(snap is not None, problem, snap.status if snap else None,
                    snap.users if snap else [], c.health(), now)


def session_json(user: UserInfo, now: float) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "remote_ip": user.remote_ip,
            "vpn_ip": user.ipv4 or user.ipv6, "channel": channel(user),
            "rx": user.rx, "tx": user.tx, "rx_h": format_bytes(user.rx),
            "tx_h": format_bytes(user.tx),
            "since": format_duration(now - user.connected_at) if user.connected_at else ""}


def temperature_text(health: SystemHealth) -> str:
    return _("n/a") if health.temperature_c is None else format_celsius(health.temperature_c)


@bp.get("/")
def index() -> str:
    view = live_view()
    latest = ctx().history.latest()
    return render_template("webui/dashboard.html", view=view, latest=latest,
                           channel=channel, poll=ctx().poll_seconds,
                           temperature=temperature_text(view.health), reach=current_card())


@bp.get("/api/live")
def live() -> Response:
    view = live_view()
    history = ctx().history
    rates = [r for r in history.rates() if view.now - r.t <= GRAPH_SECONDS]
    latest = rates[-1] if rates else None
    peak = max([1000.0, *(max(r.rx_bps, r.tx_bps) for r in rates)])
    st = view.status
    h = view.health
    dtls = sum(1 for u in view.users if u.dtls_cipher)
    return jsonify({
        "online": view.online,
        "problem": view.problem,
        "now": view.now,
        "status": None if st is None else {
            "uptime": format_duration(view.now - st.up_since) if st.up_since else "",
            "sessions": len(view.users), "dtls": dtls, "tls": len(view.users) - dtls,
            "sessions_h": format_number(len(view.users)), "dtls_h": format_number(dtls),
            "tls_h": format_number(len(view.users) - dtls),
            "rx": st.rx, "tx": st.tx, "rx_h": format_bytes(st.rx), "tx_h": format_bytes(st.tx),
        },
        "sessions": [session_json(u, view.now) for u in view.users],
        "rate": {"rx_bps": latest.rx_bps if latest else 0.0,
                 "tx_bps": latest.tx_bps if latest else 0.0,
                 "rx_h": format_rate(latest.rx_bps if latest else 0.0),
                 "tx_h": format_rate(latest.tx_bps if latest else 0.0)},
        "history": [[round(r.t, 1), round(r.rx_bps), round(r.tx_bps)] for r in rates],
        "window": GRAPH_SECONDS,
        "peak": peak,
        "scale_h": _("top = %(rate)s", rate=format_rate(peak)),
        "system": {"cpu": round(h.cpu_percent, 1), "memory": round(h.memory_percent, 1),
                   "cpu_h": format_percent(h.cpu_percent),
                   "memory_h": format_percent(h.memory_percent),
                   "memory_used_h": _("%(used)s of %(total)s",
                                      used=format_bytes(h.memory_used),
                                      total=format_bytes(h.memory_total)),
                   "temperature": None if h.temperature_c is None
                   else round(h.temperature_c, 1),
                   "temperature_h": temperature_text(h),
                   "load": None if h.load1 is None else round(h.load1, 2),
                   "uptime": format_duration(h.uptime(view.now))},
    })
