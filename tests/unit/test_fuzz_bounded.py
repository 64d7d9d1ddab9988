"""Bounded fuzzing in ``make test``: every target of tests/fuzz for a few thousand inputs.

Same targets, same contract and same engine as ``make fuzz`` (docs/fuzzing.md), with a
fixed seed so a failure here reproduces; the long run varies the seed.  Saved crash
inputs under tests/fuzz/regressions/<target>/ are replayed first: each once crashed a
parser and must now be accepted or refused with the module's own exception.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fuzz import engine
from tests.fuzz.targets import load_targets, target_names

INPUTS = int(os.environ.get("OCGATE_FUZZ_BOUNDED", "3000"))
REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz" / "regressions"
SEED = 20240611


def _describe(tally: engine.Tally) -> str:
    return "\n".join(f"{c.signature} x{c.count}: {c.detail} input={c.sample[:64].hex()}"
                     for c in tally.distinct.values())


@pytest.fixture(scope="module", autouse=True)
def _cpu_alarm() -> None:
    engine.install_hang_alarm()


def test_every_parser_module_has_a_target() -> None:
    names = set(target_names())
    for required in ("http_request", "auth_body", "connect_headers", "cstp_frames",
                     "dtls_records", "dtls_client_hello", "lzs", "lz4", "compression",
                     "config", "ocpasswd", "control_request", "ipc_decode", "typed_decode",
                     "web_forms", "backup_archive", "backup_members", "tls_records",
                     "tls_client_hello", "natpmp_response", "pcp_response"):
        assert required in names


@pytest.mark.parametrize("name", target_names())
def test_regressions_replay(name: str) -> None:
    target = load_targets()[name]
    tally = engine.Tally(name)
    for path in sorted((REGRESSIONS / name).glob("*.bin")):
        engine.execute(target, path.read_bytes(), tally, None)
    assert tally.crashes == 0, _describe(tally)


@pytest.mark.parametrize("name", target_names())
def test_bounded_fuzz(name: str) -> None:
    target = load_targets()[name]
    tally = engine.fuzz(target, INPUTS, SEED + sum(name.encode()), None, None)
    assert tally.inputs == INPUTS
    assert tally.crashes == 0, _describe(tally)
    assert tally.ok + tally.rejected == INPUTS


def test_engine_reports_foreign_exceptions() -> None:
    """The judge itself: an exception outside the contract is a crash with a signature."""
    def run(data: bytes) -> object:
        if data == b"boom":
            raise KeyError("boom")
        if data == b"no":
            raise ValueError("refused")
        return None

    target = engine.Target("selftest", run, (ValueError,), lambda: [b""])
    tally = engine.Tally("selftest")
    for data in (b"ok", b"no", b"boom", b"boom"):
        engine.execute(target, data, tally, None)
    assert (tally.ok, tally.rejected, tally.crashes) == (1, 1, 2)
    assert len(tally.distinct) == 1
    assert next(iter(tally.distinct)).startswith("KeyError@")


def test_engine_interrupts_endless_loops() -> None:
    def spin(data: bytes) -> object:
        while True:
            pass

    target = engine.Target("spin", spin, (ValueError,), lambda: [b""])
    tally = engine.Tally("spin")
    old = engine.HANG_CPU_S
    engine.HANG_CPU_S = 0.3
    try:
        assert engine.execute(target, b"x", tally, None)
    finally:
        engine.HANG_CPU_S = old
    assert next(iter(tally.distinct)).startswith("Hang@")
