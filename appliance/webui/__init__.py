"""OCGate admin web UI: users, sessions, live traffic, validated settings, onboarding,
backup/restore, logs, diagnostics and Prometheus metrics (issue #7, docs/webui.md).

It talks to the VPN server only through the control socket
(:mod:`appliance.web.vpnclient`) and edits files only through the config and passwd
modules.  ``python3 -m appliance.webui --state DIR`` serves it.
"""

from .app import create_app
from .context import WebUIContext

__all__ = ["WebUIContext", "create_app"]
