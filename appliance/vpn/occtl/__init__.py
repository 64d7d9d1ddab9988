"""occtl for OCGate: the same commands, tables and JSON as ocserv 1.1.6's occtl.

Admins script against occtl's output, so the text layout and the JSON keys, types and order
follow what ocserv 1.1.6 prints (docs/protocol.md section 9, checked against the real tool). Where
1.1.6 prints invalid JSON (``show sessions``, ``show iroutes``, duplicate keys), we print the
valid JSON a parser would have wanted. The server side speaks the JSON-lines control protocol
of appliance/vpn/control/ (whose client.py it shares with the web UI); this package only
formats and runs commands.
"""

from __future__ import annotations

from ..control.client import ConnectFailed, ControlClient, ServerError, Unreachable
from .commands import Completions, Context, run_line
from .entry import default_socket, main
from .format import (
    DEFAULT_SOCKET,
    ERR_SERVER_UNREACHABLE,
    bytes2human,
    dtls_column,
    ival7,
    json_array,
    time2human,
    user_record,
    users_table,
)
from .interactive import completions

__all__ = [
    "Completions",
    "ConnectFailed",
    "Context",
    "ControlClient",
    "DEFAULT_SOCKET",
    "ERR_SERVER_UNREACHABLE",
    "ServerError",
    "Unreachable",
    "bytes2human",
    "completions",
    "default_socket",
    "dtls_column",
    "ival7",
    "json_array",
    "main",
    "run_line",
    "time2human",
    "user_record",
    "users_table",
]
