"""The VPN rig: one server (ours or ocserv) in its namespaces, and the openconnect clients
that tests start against it.

Every e2e module that needs a server of a particular configuration builds it with
:func:`running_rig`; the options cover what the modules vary: extra or replaced
``ocserv.conf`` lines, a different ``auth`` set-up, files put in place before the start
and a network built by the caller.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import harness
from tests.support.harness import Client, Server, ServerFiles, ping
from tests.support.netns import Netns, TestNet
from tests.support.workdir import workdir as new_workdir


def make_accounts(names: Sequence[str]) -> dict[str, str]:
    """Test accounts: username -> a random password."""
    return {name: f"{name[0]}-{secrets.token_urlsafe(9)}" for name in names}


class InteractiveClient(Client):
    """openconnect answering prompts from stdin, one line each, in order (no
    ``--non-inter``): the first line is the password, the rest answer later questions."""

    def common_args(self) -> list[str]:
        return [arg for arg in super().common_args() if arg != "--non-inter"]

    def answer(self, user: str, lines: Sequence[str], *, extra_args: Sequence[str] = (),
               timeout: float = 30.0) -> bool:
        return self.connect(user, "\n".join(lines), extra_args=extra_args, timeout=timeout)


@dataclass
class Rig:
    """A running server with its namespaces and files; clients are made per test."""

    net: TestNet
    files: ServerFiles
    server: Server
    label: str = "rig"
    _names: set[str] = field(default_factory=set)

    @property
    def workdir(self) -> Path:
        return self.files.dir

    def password(self, user: str) -> str:
        return self.files.users[user]

    def unique_name(self, wanted: str) -> str:
        """Client directories live in the server's work dir, so names must not repeat."""
        name, n = wanted, 1
        while name in self._names:
            n += 1
            name = f"{wanted}{n}"
        self._names.add(name)
        return name

    def client(self, name: str, *, new_link: bool = False) -> Client:
        link = self.net.add_client() if new_link else self.net.primary
        return Client(self.net, self.files, link=link, name=self.unique_name(name))

    def interactive(self, name: str) -> InteractiveClient:
        return InteractiveClient(self.net, self.files, link=self.net.primary,
                                 name=self.unique_name(name))

    def users(self) -> list[dict]:
        """occtl's ``show users``: the sessions the server holds."""
        return json.loads(self.server.occtl("-j", "show", "users").stdout)


#: Rigs alive right now, so that a failing test can print their server logs.
LIVE_RIGS: list[Rig] = []


def print_live_server_logs() -> None:
    for rig in LIVE_RIGS:
        print(f"\n[e2e] {rig.label} server log:\n{harness.tail_lines(rig.server.log, 80)}")


def _edit_conf(files: ServerFiles, replace: Mapping[str, str], auth: Sequence[str] | None,
               more: Sequence[str]) -> None:
    """Swap whole option lines (``route = …`` → ``route = default``), replace the ``auth``
    lines with ``auth`` (``{passwd}``, ``{ca}`` and ``{dir}`` filled in), append ``more``."""
    lines = []
    for line in files.conf_lines:
        key = line.split("=", 1)[0].strip()
        if auth is not None and line.startswith("auth ="):
            continue
        lines.append(replace.get(key, line) if "=" in line else line)
    if auth is not None:
        fill = {"passwd": files.passwd, "ca": files.ca, "dir": files.dir}
        lines += [line.format(**fill) for line in auth]
    lines += more
    files.conf_lines = lines
    files.conf.write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def running_rig(
    users: Mapping[str, str],
    *,
    label: str = "server",
    workdir: Path | None = None,
    net: TestNet | None = None,
    extra_conf: Sequence[str] = (),
    replace_conf: Mapping[str, str] | None = None,
    auth: Sequence[str] | None = None,
    prepare: Callable[[ServerFiles], Sequence[str] | None] | None = None,
    command: str | None = None,
) -> Iterator[Rig]:
    """Namespaces, files and a started server; everything this made is removed on exit.

    ``workdir`` and ``net`` are made here unless given.  ``prepare(files)`` runs once the
    files (and the CA) exist, before the start, and may return more config lines.  The
    server log is printed when the block raises.  ``command``: the server command template
    (default: the one ``OCGATE_E2E_SERVER`` names), for modules that run both servers.
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(new_workdir())
        if net is None:
            net = stack.enter_context(TestNet())
        files = harness.make_server_files(workdir, net, users=users, extra_conf=extra_conf)
        more = prepare(files) if prepare is not None else None
        if replace_conf or auth is not None or more:
            _edit_conf(files, replace_conf or {}, auth, more or ())
        server = Server(net, files, command or harness.server_command())
        rig = Rig(net, files, server, label)
        LIVE_RIGS.append(rig)
        try:
            server.start()
            yield rig
        except BaseException:
            print(f"\n[e2e] {label} server log:\n{harness.tail_lines(server.log, 80)}")
            raise
        finally:
            server.stop()
            LIVE_RIGS.remove(rig)


class Clients:
    """The openconnect clients one test made; all closed (logged out) when it ends."""

    def __init__(self) -> None:
        self.made: list[Client] = []

    def new(self, rig: Rig, name: str, *, new_link: bool = False) -> Client:
        client = rig.client(name, new_link=new_link)
        self.made.append(client)
        return client

    def close(self, dump: bool) -> None:
        for client in self.made:
            client.close()
            if dump and client.log:
                print(
                    f"\n[e2e] {client.name} openconnect log:\n{harness.tail_lines(client.log, 40)}"
                )


class BackgroundPing:
    """Back-to-back ping batches until stopped: loss is counted exactly, none in flight."""

    def __init__(self, ns: Netns, addr: str) -> None:
        self.ns, self.addr = ns, addr
        self.sent = self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            result = ping(self.ns, self.addr, count=5, interval=0.1, wait=2.0)
            self.sent += result.sent
            self.received += result.received

    def __enter__(self) -> BackgroundPing:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)
