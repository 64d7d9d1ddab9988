"""Which options a ``[vhost:NAME]`` section may set, and what it takes from the global part.

ocserv builds each virtual host from its built-in defaults and the section's own lines;
the server-wide options (ports, processes, scripts, limits, bans: what main and the
process layout own) stay the global part's, and a section that sets one gets a warning
(ocserv's "X is ignored on NAME virtual host").  The TLS priorities are the one per-host
option a section inherits when it does not set it.

A few per-host options of ocserv are server-wide in OCGate: a section that sets one
refuses to start with file:line rather than being silently served the global value.
"""

from __future__ import annotations

from typing import Any

from .options import _WS, DEFAULT_TLS_PRIORITIES, OPTIONS

# ocserv's global-only options (its WARN_ON_VHOST/PWARN_ON_VHOST list, and the listening
# and logging ones it reads per host but never uses there): the 'g' scope of options.py
SERVER_WIDE: frozenset[str] = frozenset(
    name for name, spec in OPTIONS.items() if spec.scope == "g")

# Per-host in ocserv, server-wide in OCGate (the reason is the error's text)
_REFUSED: dict[str, str] = {
    "ipv6-network": "the IPv6 pool is server-wide",
    "ipv6-prefix": "the IPv6 pool is server-wide",
    "ipv6-subnet-prefix": "the IPv6 pool is server-wide",
    "acct": "accounting is server-wide",
    "cookie-timeout": "the cookie store is server-wide",
    "persistent-cookies": "the cookie store is server-wide",
    "stats-report-time": "accounting is server-wide",
}

# Per-host options whose global value OCGate applies to every virtual host (see _REFUSED);
# ocserv would give a section that does not set them its built-in default instead.  The
# IPv6 pool is not among them: a section's clients get no IPv6 (main/sessions.py), as a
# section without ipv6-network gets none in ocserv.
GLOBAL_IN_OCGATE: frozenset[str] = frozenset(
    {"acct", "cookie-timeout", "persistent-cookies", "stats-report-time"})


def vhost_refusal(option: str) -> str | None:
    """Why ``option`` cannot be set inside a section, or None when it can."""
    return _REFUSED.get(option)


def vhost_name(raw: str) -> str:
    """ocserv's canonical name: trimmed, IDNA-mapped (ASCII, lower case)."""
    name = raw.strip(_WS)
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    return name.lower()


def inherit_server_wide(vcfg: Any, glob: Any, *, explicit_priorities: bool) -> None:
    """Give a section's Config (model.py's, which imports this module) the global part's
    server-wide values (ocserv copies them from the default host), and the global
    priorities when the section sets none."""
    for name in SERVER_WIDE | GLOBAL_IN_OCGATE:
        attr = OPTIONS[name].attr
        if attr is not None and not OPTIONS[name].alias_of:
            setattr(vcfg, attr, getattr(glob, attr))
    vcfg.udp_listen_host = glob.udp_listen_host
    if not explicit_priorities:
        base = glob.tls_priorities if glob.tls_priorities else DEFAULT_TLS_PRIORITIES
        vcfg.tls_priorities = base + (":-VERS-TLS1.3" if vcfg.cisco_client_compat
                                      and ":-VERS-TLS1.3" not in base else "")
