"""Fixtures for end-to-end tests: namespaces, server files, the server, openconnect clients.

Every fixture is function-scoped so that one test's leftovers (sessions,
bans, leases) can never influence the next.  Override ``users``,
``extra_conf`` or ``server_command`` in a test module to change what the
``server`` fixture starts.  Set ``OCGATE_E2E_KEEP=1`` to keep the work
directories (configs, logs, env dumps) of the tests for inspection.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.prereqs import missing_e2e, require_e2e
from tests.support import harness
from tests.support.netns import TestNet, delete_all_created, sweep_stale
from tests.support.rig import Clients, Rig, make_accounts, print_live_server_logs, running_rig
from tests.support.workdir import remove_live_workdirs, sweep_stale_workdirs
from tests.support.workdir import workdir as support_workdir

_FAILED = pytest.StashKey[bool]()
RIG_USERS = ("alice", "bob", "carol", "dave")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember failures so fixtures can print server and client logs at teardown."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item.stash[_FAILED] = True


def _failed(request: pytest.FixtureRequest) -> bool:
    return request.node.stash.get(_FAILED, False)


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session", autouse=True)
def _e2e_session() -> Iterator[None]:
    """Remove namespaces that killed earlier runs left; clean up ours at the end.

    SIGTERM (e.g. from ``timeout``) would otherwise end the interpreter
    without running fixture finalizers or atexit hooks, stranding namespaces
    with live servers in them until the next session's sweep.
    """
    if missing_e2e():
        yield  # each test fails in _e2e_requirements, naming what is missing
        return
    sweep_stale()
    sweep_stale_workdirs()
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        yield
    finally:
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        delete_all_created()
        remove_live_workdirs()


@pytest.fixture(autouse=True)
def _e2e_requirements() -> None:
    require_e2e()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A 0755 directory under /tmp (pytest's tmp_path is 0700, which ``nobody`` cannot enter)."""
    with support_workdir() as path:
        yield path


@pytest.fixture
def net() -> Iterator[TestNet]:
    with TestNet() as test_net:
        yield test_net


@pytest.fixture
def users() -> dict[str, str]:
    """Test accounts: username -> random password."""
    return make_accounts(("alice", "bob"))


@pytest.fixture
def extra_conf() -> list[str]:
    """Extra ocserv.conf lines for the ``server_files`` fixture."""
    return []


@pytest.fixture
def server_command() -> str:
    """Server command template: env ``OCGATE_E2E_SERVER`` (ocserv | ocgate | template)."""
    return harness.server_command()


@pytest.fixture
def server_files(
    workdir: Path, net: TestNet, users: dict[str, str], extra_conf: list[str]
) -> harness.ServerFiles:
    return harness.make_server_files(workdir, net, users=users, extra_conf=extra_conf)


@pytest.fixture
def server(
    request: pytest.FixtureRequest,
    net: TestNet,
    server_files: harness.ServerFiles,
    server_command: str,
) -> Iterator[harness.Server]:
    srv = harness.Server(net, server_files, server_command)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if _failed(request):
            print(f"\n[e2e] server log ({' '.join(srv.argv)}):\n{harness.tail_lines(srv.log, 80)}")


@pytest.fixture
def make_client(
    request: pytest.FixtureRequest, net: TestNet, server_files: harness.ServerFiles
) -> Iterator[Callable[..., harness.Client]]:
    """Factory: ``make_client()`` on the primary link, ``make_client(new_link=True)`` for
    a client in its own, additional namespace (two-client and take-over tests)."""
    clients: list[harness.Client] = []

    def factory(*, new_link: bool = False, name: str | None = None) -> harness.Client:
        link = net.add_client() if new_link else net.primary
        client = harness.Client(net, server_files, link=link, name=name or f"client{len(clients)}")
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
        if _failed(request) and client.log:
            print(f"\n[e2e] {client.name} openconnect log:\n{harness.tail_lines(client.log, 60)}")


@pytest.fixture(scope="module")
def accounts() -> dict[str, str]:
    """The accounts of the module's rigs (override in a module for other names)."""
    return make_accounts(RIG_USERS)


@pytest.fixture
def make_rig(
    request: pytest.FixtureRequest, accounts: dict[str, str]
) -> Iterator[Callable[..., Rig]]:
    """A server of the test's own (keyword arguments as for ``rig.running_rig``).

    When the test failed, the logs of every running server (the module's shared ones too)
    are printed before this fixture stops the test's own servers.
    """
    with contextlib.ExitStack() as stack:

        def factory(label: str, **kwargs: Any) -> Rig:
            return stack.enter_context(running_rig(accounts, label=label, **kwargs))

        yield factory
        if _failed(request):
            print_live_server_logs()


@pytest.fixture
def clients(request: pytest.FixtureRequest, make_rig: Callable[..., Rig]) -> Iterator[Clients]:
    """Closed before the servers stop (and before their work dirs are removed)."""
    made = Clients()
    yield made
    made.close(dump=_failed(request))


@pytest.fixture
def opened() -> Iterator[list[harness.Client]]:
    """Clients a test started against a rig it holds itself; logged out at the end."""
    made: list[harness.Client] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def client(server: harness.Server, make_client: Callable[..., harness.Client]) -> harness.Client:
    """An openconnect client in the primary client namespace (server already running)."""
    return make_client(name="client")
