"""Issue #11: a bounded soak inside ``make test`` (the full one is ``make soak``).

Ten real openconnect clients, three login/traffic/logout cycles each; the server must
end with nothing left over.  docs/reliability.md has the figures of the long run.
"""

from __future__ import annotations

from tests.soak.driver import SoakConfig, run_soak


def test_bounded_soak_leaves_nothing_behind(workdir):
    report = run_soak(SoakConfig(clients=10, cycles=3, stagger=0.2, workdir=workdir,
                                 keep=True))  # conftest's workdir fixture removes it
    print("\n" + report.render())
    assert report.server_alive
    assert not report.failures, report.render()
    assert report.cycles_done == 30
    assert report.final.users == 0 and report.final.sessions == 0
    assert report.final.tun_devices == []
    assert report.final.workers == []
    assert not report.problems(), report.render()
