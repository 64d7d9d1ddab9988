"""Throughput history for the dashboard graph, from the server's byte counters.

The server reports cumulative bytes (``show status`` rx/tx include ended sessions, so
they only grow while the server runs); workers refresh them every few seconds.  A rate
computed between two neighbouring samples would therefore jump between zero and a spike,
so each rate is taken over at least ``smoothing`` seconds.  A counter going down means
the server restarted: the history starts again.  Sans-IO: samples come with ``now``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    t: float  # wall-clock seconds
    rx: int  # bytes received from clients so far
    tx: int  # bytes sent to clients so far


@dataclass(frozen=True)
class Rate:
    t: float
    rx_bps: float  # bits per second, as people read network speeds
    tx_bps: float


class ThroughputHistory:
    """Bounded sample buffer; thread-safe (several browsers poll at once)."""

    def __init__(self, keep: float = 600.0, min_interval: float = 1.0,
                 smoothing: float = 10.0, max_samples: int = 1200) -> None:
        self.keep = keep
        self.min_interval = min_interval
        self.smoothing = smoothing
        self._samples: deque[Sample] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def due(self, now: float) -> bool:
        """True when a new sample is worth taking (callers skip the socket otherwise)."""
        with self._lock:
            return not self._samples or now - self._samples[-1].t >= self.min_interval

    def add(self, now: float, rx: int, tx: int) -> None:
        with self._lock:
            last = self._samples[-1] if self._samples else None
            if last is not None and (rx < last.rx or tx < last.tx or now < last.t):
                self._samples.clear()  # server restarted (or the clock jumped back)
            elif last is not None and now - last.t < self.min_interval:
                return
            self._samples.append(Sample(now, rx, tx))
            while self._samples and now - self._samples[0].t > self.keep + self.smoothing:
                self._samples.popleft()

    def rates(self) -> list[Rate]:
        """One rate per sample that has a partner at least ``smoothing`` seconds older."""
        with self._lock:
            samples = list(self._samples)
        out: list[Rate] = []
        start = 0
        for current in samples:
            while start + 1 < len(samples) and \
                    current.t - samples[start + 1].t >= self.smoothing:
                start += 1
            base = samples[start]
            span = current.t - base.t
            if span < self.smoothing:
                continue
            out.append(Rate(current.t, (current.rx - base.rx) * 8 / span,
                            (current.tx - base.tx) * 8 / span))
        return out

    def latest(self) -> Rate | None:
        rates = self.rates()
        return rates[-1] if rates else None

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()
