"""Background mode: what ocserv does without ``-f``, for init scripts and supervisors.

ocserv forks, detaches from the terminal, changes to ``/`` (unless ``--no-chdir``), sends
its output to /dev/null and logs to syslog; the pid file then holds the detached server's
pid, which is what ``start-stop-daemon --pidfile`` and ``kill -HUP $(cat pidfile)`` use.

We do the same, with one improvement an init script cannot tell apart on success: the
command that was started returns only once the detached server is ready (or has failed), so
its exit status says whether the server came up.  Readiness travels over the same
``sd_notify`` datagram the server already sends to systemd: the launcher listens on a
private abstract socket given to the server as ``$NOTIFY_SOCKET``.  When systemd itself is
watching the launcher (``Type=notify`` without ``-f``), the launcher passes READY on with the
server's ``MAINPID``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import secrets
import socket
import sys
import time

from ...sdnotify import Notifier

log = logging.getLogger(__name__)

#: How long the launcher waits for the server's READY before giving up.
READY_TIMEOUT = 120.0
SYSLOG_SOCKET = "/dev/log"


def daemonize(*, chdir: bool, ready_timeout: float = READY_TIMEOUT) -> int | None:
    """Detach; returns None in the detached server, the exit status in the launcher.

    Call before any thread or event loop exists and after the configuration was checked,
    so that configuration errors still reach the terminal.
    """
    outer = Notifier.from_environ(unset_environment=True)
    name = f"ocgate-ready-{os.getpid()}-{secrets.token_hex(4)}"
    ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    ready.bind(b"\0" + name.encode())
    rfd, wfd = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(rfd)
        ready.close()
        os.setsid()
        if os.fork() != 0:
            os._exit(0)  # the session leader goes; the server can never regain a terminal
        os.write(wfd, f"{os.getpid()}\n".encode())
        os.close(wfd)
        os.environ["NOTIFY_SOCKET"] = "@" + name
        if chdir:
            os.chdir("/")
        _detach_stdio()
        return None
    os.close(wfd)
    os.waitpid(first, 0)
    with os.fdopen(rfd, "rb") as pipe:
        line = pipe.readline().strip()
    if not line:
        print("error: the server did not start in the background", file=sys.stderr)
        return 1
    pid = int(line)
    status = _wait_ready(ready, pid, ready_timeout)
    ready.close()
    if status == 0 and outer.enabled:
        outer.notify(READY=1, MAINPID=pid)
    return status


def _wait_ready(ready: socket.socket, pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    ready.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            message = ready.recv(4096)
        except TimeoutError:
            if not _alive(pid):
                print(f"error: the server (pid {pid}) exited during start-up; "
                      "see the system log", file=sys.stderr)
                return 1
            continue
        if b"READY=1" in message.split(b"\n"):
            return 0
    print(f"error: the server (pid {pid}) did not report ready within {timeout:.0f} s",
          file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _detach_stdio() -> None:
    """stdin, stdout and stderr to /dev/null: a launcher's pipes must see EOF."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def log_to_syslog(facility: str = "daemon", ident: str = "ocgate-server") -> None:
    """After detaching, log records go to syslog (``syslog-facility``), as ocserv's do.

    Without a syslog socket (a minimal container) there is nowhere to write; the stderr
    handler stays and writes to /dev/null rather than failing.
    """
    if not os.path.exists(SYSLOG_SOCKET):
        return
    try:
        handler = logging.handlers.SysLogHandler(
            address=SYSLOG_SOCKET,
            facility=logging.handlers.SysLogHandler.facility_names.get(
                facility, logging.handlers.SysLogHandler.LOG_DAEMON))
    except OSError:
        return
    handler.ident = f"{ident}: "
    handler.setFormatter(logging.Formatter("%(name)s[%(process)d]: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
