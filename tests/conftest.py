"""Suite-wide rules: prerequisites fail, and a stray skip fails the whole session.

``make test`` installs everything the tests use, so a skipped test can only mean that a
check turned a missing prerequisite into a quiet pass.  The one skip that belongs here is
the QEMU boot test in tests/image/ (minutes of CPU; ``make image-test`` runs it).  Any
other skip, xfail or xpass is collected as it is reported and turns the exit status into
a failure at the end of the session, listing each one with its reason, so a green summary
line cannot hide untested code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ALLOWED_SKIPS = Path(__file__).resolve().parent / "image"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "prereq(check): run check() before the test; "
                                       "it fails the test when a prerequisite is missing")
    config.addinivalue_line("markers", "format_test: checked against a local stand-in that "
                                       "speaks a real service's documented format (the "
                                       "service itself is out of reach); -m format_test")
    config.pluginmanager.register(StraySkips(config), "ocgate-stray-skips")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Checks from tests.prereqs.needs(): before any fixture builds a rig."""
    for mark in item.iter_markers("prereq"):
        mark.args[0]()


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    if hasattr(report, "wasxfail"):
        verdict = "xfail" if report.skipped else "xpass"
        return f"{verdict}: {report.wasxfail or 'no reason given'}"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return f"skipped: {longrepr[2].removeprefix('Skipped: ')}"
    return f"skipped: {longrepr}"


class StraySkips:
    """Counts skips, xfails and xpasses outside tests/image/; any of them fails the run."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.strays: list[str] = []

    def _note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        stray = report.skipped or (report.passed and hasattr(report, "wasxfail"))
        if not stray:
            return
        path = (self.config.rootpath / report.nodeid.split("::", 1)[0]).resolve()
        if not path.is_relative_to(ALLOWED_SKIPS):
            self.strays.append(f"{report.nodeid or '<session>'}: {_reason(report)}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)  # a module-level skip never reaches runtest_logreport

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.strays:
            return
        terminalreporter.section("stray skips (only tests/image/ may skip)", red=True)
        for line in self.strays:
            terminalreporter.line(line, red=True)
        terminalreporter.line(f"{len(self.strays)} stray skip(s) outside tests/image/: a "
                              "missing prerequisite must fail, naming what to install; "
                              "the session fails", red=True)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.strays and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
