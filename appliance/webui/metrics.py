"""Prometheus metrics for the appliance, read from the control socket at scrape time.

Only aggregates are exported (no user names or addresses): a scraper is a machine, and
the endpoint may be reachable without a token.  The optional bearer token lives in
``STATE/metrics-token`` (0600); when that file exists every scrape must send
``Authorization: Bearer <token>``.  The admin creates or removes it on the diagnostics
page.  A registry per app (not prometheus_client's global one) keeps tests independent.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..atomicfile import write_atomic
from ..web.vpnclient import Snapshot, VpnCommandError, VpnUnavailable
from .system import SystemHealth

log = logging.getLogger(__name__)

TOKEN_FILE = "metrics-token"
MAX_TOKEN = 256


class VpnCollector(Collector):
    """Collects on every scrape; a stopped server shows as ``ocgate_up 0``."""

    def __init__(self, snapshot: Callable[[], Snapshot],
                 health: Callable[[], SystemHealth]) -> None:
        self._snapshot = snapshot
        self._health = health

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily("ocgate_up", "1 when the VPN server answers on its "
                               "control socket")
        try:
            snap: Snapshot | None = self._snapshot()
        except (VpnUnavailable, VpnCommandError) as exc:
            log.debug("metrics: VPN unavailable: %s", exc)
            snap = None
        up.add_metric([], 1.0 if snap else 0.0)
        yield up
        if snap is not None:
            yield from _vpn_metrics(snap)
        yield from _system_metrics(self._health())


def _vpn_metrics(snap: Snapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    st = snap.status
    sessions = GaugeMetricFamily("ocgate_sessions", "Connected VPN sessions by channel",
                                 labels=["channel"])
    dtls = sum(1 for u in snap.users if u.dtls_cipher)
    sessions.add_metric(["dtls"], float(dtls))
    sessions.add_metric(["tls"], float(len(snap.users) - dtls))
    yield sessions
    yield CounterMetricFamily("ocgate_received_bytes", "Bytes received from VPN clients",
                              value=float(st.rx))
    yield CounterMetricFamily("ocgate_sent_bytes", "Bytes sent to VPN clients",
                              value=float(st.tx))
    yield CounterMetricFamily("ocgate_sessions_handled", "Sessions ended since the "
                              "statistics were reset", value=float(st.sessions_handled))
    yield CounterMetricFamily("ocgate_auth_failures", "Failed VPN logins",
                              value=float(st.total_auth_failures))
    yield GaugeMetricFamily("ocgate_banned_ips", "Client addresses banned right now",
                            value=float(st.banned_ips))
    yield GaugeMetricFamily("ocgate_start_time_seconds", "When the VPN server started "
                            "(Unix time)", value=float(st.up_since))


def _system_metrics(h: SystemHealth) -> Iterator[GaugeMetricFamily]:
    yield GaugeMetricFamily("ocgate_cpu_percent", "CPU use of the device in percent",
                            value=h.cpu_percent)
    yield GaugeMetricFamily("ocgate_memory_used_bytes", "Memory in use on the device",
                            value=float(h.memory_used))
    if h.temperature_c is not None:
        yield GaugeMetricFamily("ocgate_temperature_celsius", "Hottest temperature "
                                "sensor of the device", value=h.temperature_c)


def render(snapshot: Callable[[], Snapshot], health: Callable[[], SystemHealth]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(VpnCollector(snapshot, health))
    return bytes(generate_latest(registry))


# --------------------------------------------------------------------------- the token


def read_token(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token[:MAX_TOKEN] or None


def authorized(header: str | None, token: str | None) -> bool:
    """No token configured: open.  Otherwise the exact bearer token, compared in
    constant time."""
    if token is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    sent = header[len("Bearer "):].strip()
    return hmac.compare_digest(sent.encode("utf-8", "replace"), token.encode())


def new_token(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    write_atomic(path, token.encode() + b"\n", 0o600)
    log.info("new metrics token written to %s", path)
    return token


def remove_token(path: Path) -> None:
    path.unlink(missing_ok=True)
