"""Dashboard: server state, sessions with their channel, throughput, device health.

The page is complete without JavaScript (numbers rendered on the server); ``live.js``
polls ``/api/live`` every few seconds to move the numbers and draw the throughput graph.
Every poll also feeds the throughput history, so the graph needs no background thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, render_template

from ...vpn.control import StatusInfo, UserInfo
from ...web.vpnclient import Snapshot
from ..system import SystemHealth, human_bytes, human_duration, human_rate
from .common import ctx, vpn_call

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
            "rx": user.rx, "tx": user.tx, "rx_h": human_bytes(user.rx),
            "tx_h": human_bytes(user.tx),
            "since": human_duration(now - user.connected_at) if user.connected_at else ""}


@bp.get("/")
def index() -> str:
    view = live_view()
    latest = ctx().history.latest()
    return render_template("webui/dashboard.html", view=view, latest=latest,
                           channel=channel, poll=ctx().poll_seconds)


@bp.get("/api/live")
def live() -> Response:
    view = live_view()
    history = ctx().history
    rates = [r for r in history.rates() if view.now - r.t <= GRAPH_SECONDS]
    latest = rates[-1] if rates else None
    st = view.status
    h = view.health
    dtls = sum(1 for u in view.users if u.dtls_cipher)
    return jsonify({
        "online": view.online,
        "problem": view.problem,
        "now": view.now,
        "status": None if st is None else {
            "uptime": human_duration(view.now - st.up_since) if st.up_since else "",
            "sessions": len(view.users), "dtls": dtls, "tls": len(view.users) - dtls,
            "rx": st.rx, "tx": st.tx, "rx_h": human_bytes(st.rx), "tx_h": human_bytes(st.tx),
        },
        "sessions": [session_json(u, view.now) for u in view.users],
        "rate": {"rx_bps": latest.rx_bps if latest else 0.0,
                 "tx_bps": latest.tx_bps if latest else 0.0,
                 "rx_h": human_rate(latest.rx_bps if latest else 0.0),
                 "tx_h": human_rate(latest.tx_bps if latest else 0.0)},
        "history": [[round(r.t, 1), round(r.rx_bps), round(r.tx_bps)] for r in rates],
        "window": GRAPH_SECONDS,
        "system": {"cpu": round(h.cpu_percent, 1), "memory": round(h.memory_percent, 1),
                   "memory_h": f"{human_bytes(h.memory_used)} of "
                               f"{human_bytes(h.memory_total)}",
                   "temperature": None if h.temperature_c is None
                   else round(h.temperature_c, 1),
                   "load": None if h.load1 is None else round(h.load1, 2),
                   "uptime": human_duration(h.uptime(view.now))},
    })
