"""The control socket: how occtl and the web UI read main's state and give it orders.

ocserv speaks protobuf over its occtl socket; nothing outside ocserv's own occtl speaks that,
so we use newline-delimited JSON instead (docs/control-protocol.md): one request line, one
response line, and for ``show events`` a stream of event lines after the response. The wire
carries raw values (bytes, epoch seconds, lists); presenting them the way ocserv's occtl does
is the client's job (appliance/vpn/occtl/), so the web UI gets the same data unformatted.

The protocol core (parsing, framing, limits, dispatch) is sans-IO: bytes and ``now`` in,
bytes out. :class:`ControlServer` is the thin shell that plugs it into main's single-threaded
selector loop. Nothing a client sends can raise into main: bad input becomes an error
response, and a client that misbehaves (too big, too slow, idle) is disconnected.
"""

from __future__ import annotations

from .protocol import COMMANDS, ClientConn, Dispatcher, Limits, encode, parse_request
from .schema import (
    PROTOCOL_VERSION,
    BanInfo,
    ControlError,
    SessionInfo,
    StatusInfo,
    UserInfo,
    from_wire,
    make_event,
)
from .server import ControlServer, bind_socket

__all__ = [
    "BanInfo",
    "COMMANDS",
    "ClientConn",
    "ControlError",
    "ControlServer",
    "Dispatcher",
    "Limits",
    "PROTOCOL_VERSION",
    "SessionInfo",
    "StatusInfo",
    "UserInfo",
    "bind_socket",
    "encode",
    "from_wire",
    "make_event",
    "parse_request",
]
