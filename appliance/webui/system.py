"""Health of the box itself (CPU, memory, temperature, uptime) via psutil.

Small devices have no fan and throttle when hot, so the temperature matters as much as
the load.  Every reading is optional: a sensor that does not exist (containers, VMs)
shows as "n/a" instead of failing the dashboard (formatting: :mod:`appliance.web.l10n`).
"""

from __future__ import annotations

import logging
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

