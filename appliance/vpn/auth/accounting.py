"""The accounting hooks main calls for every session (ocserv's acct/), and the no-op set
used without an ``acct`` line.

Kept apart from auth/radius/acct.py so that main, which calls these hooks unconditionally,
loads pyrad only when RADIUS accounting is configured.
"""

from __future__ import annotations

from typing import Any


class NullAccounting:
    """No ``acct`` line: every hook is a no-op, so main's hooks need no conditions."""

    def attach(self, sel: Any) -> None:
        pass

    def close_in_child(self) -> None:
        pass

    def started(self, conn: Any) -> None:
        pass

    def stats(self, conn: Any, msg: Any) -> None:
        pass

    def stopped(self, conn: Any, reason: str) -> None:
        pass

    def tick(self, now: float) -> None:
        pass
