"""Background jobs (mapping upkeep, DNS updates, ACME) with exponential backoff.

Each job is a function returning the seconds until its next run; an exception is logged in
one greppable line (``reach job=NAME result=error attempt=N retry_in=S``) and the job is
retried after a doubling delay, capped, with jitter so many appliances behind one provider do
not retry in step.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def backoff(attempt: int, *, base: float = 5.0, cap: float = 900.0,
            rand: Callable[[], float] = random.random) -> float:
    """Delay before retry ``attempt`` (1-based): base * 2^(n-1), capped, +-20 % jitter."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * (0.8 + 0.4 * rand())


@dataclass
class Job:
    name: str
    run: Callable[[], float]
    base: float = 5.0
    cap: float = 900.0
    failures: int = 0
    next_at: float = 0.0
    last_error: str = ""
    last_ok: float = 0.0

    def step(self, now: float) -> None:
        try:
            delay = self.run()
        except Exception as exc:  # a job failing must never end the others
            self.failures += 1
            self.last_error = str(exc)
            delay = backoff(self.failures, base=self.base, cap=self.cap)
            log.warning("reach job=%s result=error attempt=%d retry_in=%.0f reason=%r",
                        self.name, self.failures, delay, str(exc))
        else:
            if self.failures:
                log.info("reach job=%s result=recovered after=%d", self.name, self.failures)
            self.failures, self.last_error, self.last_ok = 0, "", time.time()
        self.next_at = now + delay


@dataclass
class Scheduler:
    """Runs due jobs in one thread; ``stop()`` returns once the current job finished."""

    jobs: list[Job] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run_due(self) -> float:
        now = time.monotonic()
        for job in self.jobs:
            if job.next_at <= now:
                job.step(now)
        return max(0.2, min(j.next_at for j in self.jobs) - time.monotonic()) \
            if self.jobs else 60.0

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self._stop.wait(self.run_due())
        self._thread = threading.Thread(target=loop, name="reach-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
