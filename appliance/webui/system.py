"""Health of the box itself (CPU, memory, temperature, uptime) via psutil.

Small devices have no fan and throttle when hot, so the temperature matters as much as
the load.  Every reading is optional: a sensor that does not exist (containers, VMs)
shows as "n/a" instead of failing the dashboard.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemHealth:
    cpu_percent: float
    cpu_count: int
    load1: float | None
    memory_percent: float
    memory_used: int
    memory_total: int
    temperature_c: float | None
    boot_time: float

    def uptime(self, now: float) -> float:
        return max(0.0, now - self.boot_time)


def _temperature() -> float | None:
    """The hottest sensor reading in °C, None without sensors."""
    try:
        sensors = psutil.sensors_temperatures()
    except (AttributeError, OSError):
        return None
    readings = [entry.current for entries in sensors.values() for entry in entries
                if entry.current is not None and -40.0 < entry.current < 150.0]
    return max(readings) if readings else None


def read_health() -> SystemHealth:
    """A non-blocking reading (CPU % since the previous call, like ``top``)."""
    memory = psutil.virtual_memory()
    try:
        load1: float | None = psutil.getloadavg()[0]
    except (AttributeError, OSError):
        load1 = None
    return SystemHealth(
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        cpu_count=psutil.cpu_count() or 1,
        load1=load1,
        memory_percent=float(memory.percent),
        memory_used=int(memory.total - memory.available),
        memory_total=int(memory.total),
        temperature_c=_temperature(),
        boot_time=float(psutil.boot_time()),
    )


def human_bytes(count: float) -> str:
    """1000-based units with one decimal, as the VPN's occtl shows traffic."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_rate(bits_per_second: float) -> str:
    value = float(bits_per_second)
    for unit in ("bit/s", "kbit/s", "Mbit/s", "Gbit/s"):
        if abs(value) < 1000 or unit == "Gbit/s":
            return f"{value:.0f} {unit}" if unit == "bit/s" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} Gbit/s"


def human_duration(seconds: float) -> str:
    """'3d 4h', '2h 05m', '7m 09s', '12s'."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_epoch(epoch: float) -> str:
    if epoch <= 0:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
