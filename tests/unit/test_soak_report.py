"""The soak's verdict (tests/soak/driver.py): which differences count as leaks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.soak.driver import ClientTally, Failure, SoakConfig, SoakReport, tight_pool_netmask
from tests.soak.probe import ProcSample, ServerSample

MIB = 2**20


def sample(*, fds: int = 11, rss: int = 50 * MIB, users: int = 0, tuns: tuple[str, ...] = (),
           workers: tuple[int, ...] = ()) -> ServerSample:
    return ServerSample(main=ProcSample(1, fds, rss, rss // 2),
                        secmod=ProcSample(2, fds, rss, rss // 2), workers=list(workers),
                        tun_devices=list(tuns), users=users, sessions=users)


def report(**changes) -> SoakReport:  # noqa: ANN003
    cfg = SoakConfig(clients=2, cycles=3)
    tallies = [ClientTally("a", 3, {"203.0.113.5"}), ClientTally("b", 3, {"203.0.113.6"})]
    base = SoakReport(cfg, 10.0, tallies, [], sample(), sample(), True)
    return replace(base, **changes)


def test_a_clean_run_passes_and_renders_the_table() -> None:
    r = report()
    assert r.problems() == []
    text = r.render()
    assert "PASS" in text and "2 x 3 = 6 done" in text and "main USS" in text


@pytest.mark.parametrize(("changes", "needle"), [
    ({"final": sample(fds=12)}, "main fds grew"),
    ({"final": sample(rss=56 * MIB)}, "main RSS grew"),
    ({"final": sample(users=1)}, "leaked sessions"),
    ({"final": sample(tuns=("ocgt1",))}, "leaked TUN"),
    ({"final": sample(workers=(99,))}, "leftover worker"),
    ({"server_alive": False}, "server died"),
    ({"failures": [Failure("a", 1, "ping", "0/2")]}, "failed steps"),
])
def test_each_leak_is_named(changes: dict, needle: str) -> None:
    problems = report(**changes).problems()
    assert any(needle in p for p in problems), problems
    assert "FAIL" in report(**changes).render()


def test_memory_growth_below_ten_percent_is_tolerated() -> None:
    assert report(final=sample(rss=54 * MIB)).problems() == []


def test_a_moved_address_is_reported_not_judged() -> None:
    """predictable-ips hashes of two users may collide: whoever comes second moves."""
    tallies = [ClientTally("a", 3, {"203.0.113.5", "203.0.113.9"}), ClientTally("b", 3)]
    r = report(tallies=tallies)
    assert r.problems() == []
    assert "1 (pool of 5)" in r.render()


@pytest.mark.parametrize(("clients", "mask"), [(2, "255.255.255.248"), (10, "255.255.255.240"),
                                               (50, "255.255.255.192"), (61, "255.255.255.192"),
                                               (62, "255.255.255.128")])
def test_the_pool_is_just_big_enough(clients: int, mask: str) -> None:
    assert tight_pool_netmask(clients) == mask


def test_incomplete_cycles_are_a_problem() -> None:
    tallies = [ClientTally("a", 2), ClientTally("b", 3)]
    assert any("5 of 6 cycles" in p for p in report(tallies=tallies).problems())


def test_config_rejects_a_run_without_cycles_after_the_warm_up() -> None:
    with pytest.raises(ValueError):
        SoakConfig(clients=2, cycles=2)
    with pytest.raises(ValueError):
        SoakConfig(clients=2, cycles=3, warmup_cycles=0)
