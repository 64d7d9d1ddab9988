"""How often main may restart a crashed sec-mod before it gives up (issue #11).

A sec-mod that dies once (a bug, the OOM killer, an administrator's kill -9) is
replaced in place, so the tunnels that are up stay up.  One that keeps dying would
only burn CPU in a restart loop; then main exits with an error and leaves the restart
to the service manager (systemd's ``Restart=on-failure``), which applies its own
back-off.  Pure bookkeeping: the caller passes the time in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SECMOD_RESTART_LIMIT = 3
SECMOD_RESTART_WINDOW = 60.0  # seconds


@dataclass
class RestartBudget:
    """At most ``limit`` restarts within any ``window`` seconds."""

    limit: int = SECMOD_RESTART_LIMIT
    window: float = SECMOD_RESTART_WINDOW
    recent: list[float] = field(default_factory=list)

    def allow(self, now: float) -> bool:
        """Count a restart at ``now`` if the budget has room; False means give up."""
        self.recent = [t for t in self.recent if now - t < self.window]
        if len(self.recent) >= self.limit:
            return False
        self.recent.append(now)
        return True
