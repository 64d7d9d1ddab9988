"""systemd's service notification protocol (``sd_notify``) in the standard library.

The VPN unit is ``Type=notify``: systemd considers it started only when the server says
READY=1, i.e. after it bound its ports and started sec-mod, so units ordered after it (and
``systemctl start``, and the image test) never race a half-started server.  libsystemd is
not a dependency we want for one datagram, and the protocol is tiny: a newline-separated
list of ``NAME=value`` assignments sent as one datagram to the AF_UNIX socket named in
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).

Without ``$NOTIFY_SOCKET`` (``make run``, tests, a shell) every call is a no-op that
returns False, so callers never need to know whether systemd is watching.

Where the server should call it (see docs/image.md):

* after the listeners, sec-mod and the control socket are up: ``ready()``
* on SIGHUP, before re-reading the configuration: ``reloading()``; afterwards ``ready()``
* when shutting down: ``stopping()``

Create the :class:`Notifier` in the main process *before* forking workers and pass
``unset_environment=True`` so that forked children cannot inherit the socket address; with
``NotifyAccess=main`` systemd would ignore their messages anyway.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: systemd accepts larger datagrams, but a notification is a handful of short fields.
MAX_MESSAGE = 4096


class SdNotifyError(ValueError):
    """A notification that systemd would misread (bad field name, newline in a value)."""


@dataclass(frozen=True)
class Notifier:
    """Where notifications go; ``address`` is None when nobody listens."""

    address: str | bytes | None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, *,
                     unset_environment: bool = False) -> Notifier:
        """The notifier systemd configured for this process (``$NOTIFY_SOCKET``).

        ``unset_environment`` removes the variable so that child processes (forked
        workers, connect scripts) do not talk to systemd on our behalf.
        """
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        if unset_environment:
            env.pop("NOTIFY_SOCKET", None)
        return cls(parse_address(raw))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram with ``fields``; True if it was handed to the socket."""
        if self.address is None:
            return False
        message = encode(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(message, self.address)
        except OSError as exc:
            # systemd went away or the unit is not Type=notify: nothing we can fix here.
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    # ---- the states the VPN server reports
    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY=1, **_status(status))

    def reloading(self, status: str | None = None, *, monotonic_usec: int | None = None
                  ) -> bool:
        """Reload begins.  MONOTONIC_USEC is required by systemd >= 253 (notify-reload)."""
        usec = monotonic_usec if monotonic_usec is not None else _monotonic_usec()
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec, **_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify(STOPPING=1, **_status(status))

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)


def parse_address(raw: str) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` as a sendto() address: a path, an abstract name, or None."""
    if not raw:
        return None
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # vsock: and other transports of newer systemd are not used on the appliance.
    log.warning("ignoring unsupported NOTIFY_SOCKET %r", raw)
    return None


def encode(fields: Mapping[str, str | int]) -> bytes:
    """The datagram for ``fields``: ``NAME=value`` lines, names upper-case ASCII."""
    if not fields:
        raise SdNotifyError("a notification needs at least one field")
    lines = []
    for name, value in fields.items():
        if not name or not all(c.isascii() and (c.isupper() or c.isdigit() or c == "_")
                               for c in name):
            raise SdNotifyError(f"invalid notification field name {name!r}")
        text = str(value)
        if "\n" in text or "\0" in text:
            raise SdNotifyError(f"the value of {name} contains a newline or NUL")
        lines.append(f"{name}={text}")
    try:
        data = "\n".join(lines).encode("utf-8")
    except UnicodeEncodeError:
        raise SdNotifyError("a notification value is not valid Unicode text") from None
    if len(data) > MAX_MESSAGE:
        raise SdNotifyError(f"notification too long ({len(data)} bytes)")
    return data


def watchdog_interval(environ: Mapping[str, str] | None = None,
                      pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings systemd expects of us, or None (no watchdog)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return usec / 1e6 if usec > 0 else None


def _status(text: str | None) -> dict[str, str]:
    return {} if text is None else {"STATUS": text}


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
