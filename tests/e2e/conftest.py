"""Fixtures for end-to-end tests: namespaces, server files, the server, openconnect clients.

Every fixture is function-scoped so that one test's leftovers (sessions,
bans, leases) can never influence the next.  Override ``users``,
``extra_conf`` or ``server_command`` in a test module to change what the
``server`` fixture starts.  Set ``OCGATE_E2E_KEEP=1`` to keep the work
directories (configs, logs, env dumps) of the tests for inspection.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import psutil
import pytest

from tests.prereqs import missing_e2e, require_e2e
from tests.support import harness
from tests.support.netns import TestNet, delete_all_created, sweep_stale

_FAILED = pytest.StashKey[bool]()
WORKDIR_PARENT = "/tmp"
WORKDIR_PREFIX = "ocg-e2e-"
_WORKDIRS: set[Path] = set()


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
    _sweep_stale_workdirs()
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        yield
    finally:
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        delete_all_created()
        for path in list(_WORKDIRS):  # tests interrupted before their own teardown
            _remove_workdir(path)


@pytest.fixture(autouse=True)
def _e2e_requirements() -> None:
    require_e2e()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A 0755 directory under /tmp (pytest's tmp_path is 0700, which ``nobody`` cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=WORKDIR_PARENT))
    path.chmod(0o755)
    _WORKDIRS.add(path)
    yield path
    _remove_workdir(path)


def _remove_workdir(path: Path) -> None:
    _WORKDIRS.discard(path)
    if os.environ.get("OCGATE_E2E_KEEP") == "1":
        print(f"\n[e2e] work dir kept: {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


def _sweep_stale_workdirs() -> None:
    """Work dirs of runs that died (named with their pid, like the namespaces)."""
    for path in Path(WORKDIR_PARENT).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = path.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def net() -> Iterator[TestNet]:
    with TestNet() as test_net:
        yield test_net


@pytest.fixture
def users() -> dict[str, str]:
    """Test accounts: username -> random password."""
    return {"alice": "a-" + secrets.token_urlsafe(9), "bob": "b-" + secrets.token_urlsafe(9)}


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


@pytest.fixture
def client(server: harness.Server, make_client: Callable[..., harness.Client]) -> harness.Client:
    """An openconnect client in the primary client namespace (server already running)."""
    return make_client(name="client")
