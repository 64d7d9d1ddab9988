"""connect / disconnect / host-update scripts, run the way ocserv runs them (docs/protocol.md §8.3).

Admins port their ocserv scripts unchanged, so the environment uses ocserv's variable
names and formats exactly: list variables are each entry followed by one space (so
they end in a space), IPv4 routes are ``net/dotted-mask`` (ocserv stores them so),
variables without a value are left unset rather than empty, and the script is
executed directly (no shell, no arguments) with stdout sent to our stderr.

``ScriptJob`` never blocks the main loop: its ``fileno()`` is a pidfd that becomes
readable when the script exits, and ``poll(now)`` enforces the deadline by killing the
script's whole process group (it runs in a session of its own, so children that the
script left behind die with it).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

log = logging.getLogger(__name__)

__all__ = ["REASONS", "ScriptError", "ScriptJob", "format_route", "script_env"]

REASONS = ("connect", "disconnect", "host-update")
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
EXIT_KILLED = -signal.SIGKILL
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


class ScriptError(ValueError):
    """A value cannot be put into a script environment (bad reason, NUL byte, bad route)."""


def format_route(route: Network | str) -> str:
    """ocserv's stored route text: ``198.51.100.0/255.255.255.0`` or ``2001:db8::/32``."""
    if isinstance(route, str):
        try:
            route = ip_network(route, strict=False)
        except ValueError as exc:
            raise ScriptError(f"bad route {route!r}") from exc
    if isinstance(route, IPv4Network):
        return f"{route.network_address}/{route.netmask}"
    return str(route)


def _by_family(items: Iterable[str]) -> tuple[str, str, str]:
    """(all, IPv4 only, IPv6 only) as space-terminated lists; ocserv splits on ':'."""
    common = v4 = v6 = ""
    for item in items:
        common += item + " "
        if ":" in item:
            v6 += item + " "
        else:
            v4 += item + " "
    return common, v4, v6


def _put_lists(env: dict[str, str], prefix: str, items: Iterable[str]) -> None:
    common, v4, v6 = _by_family(items)
    for suffix, value in (("4", v4), ("6", v6), ("", common)):
        if value:
            env[f"{prefix}{suffix}"] = value


def script_env(
    *,
    reason: str,
    username: str | None,
    groupname: str | None,
    hostname: str | None,
    device: str,
    user_agent: str | None,
    device_type: str | None,
    platform: str | None,
    ip_real: str | Address | None,
    ip_real_local: str | Address | None,
    ip_local: str | IPv4Address | None,
    ip_remote: str | IPv4Address | None,
    ipv6_local: IPv6Address | None = None,
    ipv6_remote: IPv6Address | None = None,
    ipv6_prefix: int | None = None,
    worker_id: int,
    routes: Iterable[Network | str] = (),
    no_routes: Iterable[Network | str] = (),
    dns: Iterable[Address | str] = (),
    vhost: str = "default",
    stats: tuple[int, int, int] | None = None,
    restrict_to_routes: bool = False,
    allow_ports: str | None = None,
    deny_ports: str | None = None,
    next_script: str | None = None,
) -> dict[str, str]:
    """The variables ocserv's ``call_script`` sets (only ours; see ``ScriptJob`` for the rest).

    ``stats`` = (bytes in from the client, bytes out to the client, session seconds); it
    is only exported for ``disconnect``, as ocserv does.  ``allow_ports``/``deny_ports``
    are ``restrict-user-to-ports`` rendered as ``"tcp 22 udp 53 "`` and
    ``next_script`` is the user script when a firewall script runs first.
    """
    if reason not in REASONS:
        raise ScriptError(f"unknown script reason {reason!r}")
    env: dict[str, str] = {"ID": str(worker_id)}
    optional = {
        "IP_REAL": ip_real,
        "IP_REAL_LOCAL": ip_real_local,
        "IP_LOCAL": ip_local,
        "IP_REMOTE": ip_remote,
        "IPV6_LOCAL": ipv6_local,
        "IPV6_REMOTE": ipv6_remote,
        "IPV6_PREFIX": ipv6_prefix if ipv6_remote is not None else None,
    }
    env.update({k: str(v) for k, v in optional.items() if v is not None})
    env.update(
        VHOST=vhost,
        USERNAME=username or "",
        GROUPNAME=groupname or "",
        HOSTNAME=hostname or "",
        REMOTE_HOSTNAME=hostname or "",
        DEVICE=device,
        USER_AGENT=user_agent or "",
        DEVICE_TYPE=device_type or "",
        DEVICE_PLATFORM=platform or "",
        REASON=reason,
    )
    if reason == "disconnect" and stats is not None:
        bytes_in, bytes_out, duration = stats
        env["STATS_BYTES_IN"] = str(bytes_in)
        env["STATS_BYTES_OUT"] = str(bytes_out)
        env["STATS_DURATION"] = str(duration)
    _put_lists(env, "OCSERV_ROUTES", (format_route(r) for r in routes))
    _put_lists(env, "OCSERV_NO_ROUTES", (format_route(r) for r in no_routes))
    if restrict_to_routes:
        env["OCSERV_RESTRICT_TO_ROUTES"] = "1"
    _put_lists(env, "OCSERV_DNS", (str(d) for d in dns))
    if deny_ports:
        env["OCSERV_DENY_PORTS"] = deny_ports
    elif allow_ports:
        env["OCSERV_ALLOW_PORTS"] = allow_ports
    if next_script:
        env["OCSERV_NEXT_SCRIPT"] = next_script
    for key, value in env.items():
        if "\0" in value:
            raise ScriptError(f"NUL byte in {key}")
    return env


class ScriptJob:
    """One running script with a deadline; the result is its exit status.

    Results: the exit code; ``-N`` if it died from signal N; ``-9`` when we killed it at
    the deadline; 127 if it does not exist, 126 if it cannot be executed.  Start-up
    failures never raise, because a broken script must refuse one client, not crash the
    server.  ``fileno()`` is a pidfd (or, if nothing started, an eventfd that is already
    readable), for the caller's selector; call ``close()`` after unregistering it.  The
    caller must not reap children with ``waitpid(-1)``, or the status is lost.
    """

    def __init__(
        self,
        path: str,
        env: Mapping[str, str],
        *,
        timeout: float,
        now: float | None = None,
        inherit_env: bool = True,
        label: str = "script",
    ) -> None:
        self.path = path
        self.label = label
        self.deadline = (time.monotonic() if now is None else now) + timeout
        self.pid = 0
        self._result: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        full_env = dict(os.environ) if inherit_env else {"PATH": DEFAULT_PATH}
        full_env.update(env)
        self._start(full_env)

    def _start(self, env: dict[str, str]) -> None:
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - the admin's configured script, no shell
                [self.path],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=2,
                close_fds=True,
                start_new_session=True,
            )
        except FileNotFoundError:
            self._fail(EXIT_NOT_FOUND, "does not exist")
            return
        except (PermissionError, OSError) as exc:
            self._fail(EXIT_NOT_EXECUTABLE, f"cannot be executed: {exc.strerror or exc}")
            return
        self.pid = self._proc.pid
        try:
            self._fd = os.pidfd_open(self._proc.pid)
        except OSError:  # already reaped by someone else, or an old kernel
            self._fd = os.eventfd(1)
        log.debug("%s %s started (pid %d)", self.label, self.path, self._proc.pid)

    def _fail(self, code: int, why: str) -> None:
        log.error("%s %s %s", self.label, self.path, why)
        self._result = code
        self._fd = os.eventfd(1)

    def fileno(self) -> int:
        return self._fd

    @property
    def result(self) -> int | None:
        return self._result

    def poll(self, now: float) -> int | None:
        """The exit status once known; kills the script once ``now`` passes the deadline."""
        if self._result is not None or self._proc is None:
            return self._result
        code = self._proc.poll()
        if code is None and now >= self.deadline:
            self._kill()
            code = EXIT_KILLED
            log.warning("%s %s timed out; killed (pid %d)", self.label, self.path, self._proc.pid)
        if code is not None:
            self._result = code
            if code != 0 and code != EXIT_KILLED:
                log.warning("%s %s exited with status %d", self.label, self.path, code)
        return self._result

    def _kill(self) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("%s %s (pid %d) survived SIGKILL", self.label, self.path, self._proc.pid)

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the script ends or its deadline passes (then it is killed).

        Returns None only if ``timeout`` elapses first; the script keeps running then.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            code = self.poll(now)
            if code is not None:
                return code
            if end is not None and now >= end:
                return None
            limit = self.deadline - now if end is None else min(self.deadline, end) - now
            select.select([self._fd], [], [], max(limit, 0.0))

    def close(self) -> None:
        """Release the pidfd (after the caller unregistered it from its selector)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ScriptJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
