"""What every part of the worker shares: the end of a connection and who is on the other side.

A leaf module, so the dialogue and its hooks (anyconnect.py) need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass


class ConnectionDone(Exception):
    """The connection is finished (closed by the peer, refused, or timed out)."""


@dataclass
class Peer:
    remote_ip: str
    remote_port: int
    local_ip: str
    local_port: int
