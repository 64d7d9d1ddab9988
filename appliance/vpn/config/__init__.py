"""ocserv.conf: the option table, the parser/validator, per-user files and safe rewriting.

This is the only module that knows the ocserv configuration format (docs/protocol.md §10).
The server, occtl, the first-boot wizard and the web UI all go through it, so that a
file accepted here means the same thing everywhere, and an existing ocserv.conf keeps
working when OCGate replaces ocserv.

Syntax follows the inih build ocserv uses (§10.1): ``key = value`` (``:`` also separates),
``#``/``;`` start-of-line comments, `` #`` inline comments (a ``#`` inside double quotes is
kept, our one deliberate extension), indented lines continue the previous option as another
value, ``[vhost:NAME]`` sections, a 2046-byte line limit.  Values are trimmed of whitespace
and double quotes like ocserv's ``sanitize_config_value``.  Where ocserv silently accepts
garbage (``strtol`` on "abc", any non-"true" boolean meaning false) we reject it with the
file and line instead: a typo in a VPN config should stop the server loudly, not open it.
"""

from __future__ import annotations

from .document import ConfigDocument, render_value, render_values, write_config_atomic
from .model import Config, load_config, parse_config
from .options import (
    NOT_IMPLEMENTED,
    OPTIONS,
    REFUSED_UNIMPLEMENTED,
    USER_OPTIONS,
    ConfigError,
    OptionSpec,
)
from .userfiles import UserConfig, load_user_config, parse_user_config
from .values import AuthMethod, parse_auth_method

__all__ = [
    "AuthMethod",
    "Config",
    "ConfigDocument",
    "ConfigError",
    "NOT_IMPLEMENTED",
    "OPTIONS",
    "OptionSpec",
    "REFUSED_UNIMPLEMENTED",
    "USER_OPTIONS",
    "UserConfig",
    "load_config",
    "load_user_config",
    "parse_auth_method",
    "parse_config",
    "parse_user_config",
    "render_value",
    "render_values",
    "write_config_atomic",
]
