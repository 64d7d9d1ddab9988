"""main's prewarm (appliance/vpn/main/prewarm.py): it runs the worker's sans-IO paths on
made-up input, leaves them specialised for the workers to inherit, and never stops main."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.vpn.main import prewarm


def test_prewarm_runs_every_path_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=prewarm.__name__)
    prewarm.prewarm()
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
    assert "prewarm done" in caplog.records[0].getMessage()


def test_prewarm_leaves_the_record_layers_specialised() -> None:
    """In a fresh interpreter: before, the hot functions hold only generic instructions;
    after, 3.11's specialising interpreter has rewritten them, which is what a forked
    worker would otherwise do to its own copy of these pages."""
    code = textwrap.dedent("""
        import dis
        from appliance.vpn.main import prewarm
        from appliance.vpn.protocol.tls.record import RecordLayer
        from appliance.vpn.protocol.dtls.record import DtlsRecordLayer
        from appliance.vpn.protocol import http
        def changed(fn):  # specialised opcodes are the ones outside dis.opmap
            return sum(i.opname not in dis.opmap
                       for i in dis.get_instructions(fn, adaptive=True))
        fns = (RecordLayer.seal, RecordLayer.feed, DtlsRecordLayer.open,
               http.RequestParser.feed)
        print([changed(f) for f in fns])
        prewarm.prewarm()
        print([changed(f) for f in fns])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2]).stdout.splitlines()
    before, after = (eval(line) for line in out[:2])  # noqa: S307 - our own output
    assert before == [0, 0, 0, 0]
    assert all(n > 0 for n in after), after


def test_a_failing_path_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise ValueError("made up")

    monkeypatch.setattr(prewarm, "_http_and_auth", broken)
    prewarm.prewarm()
    assert any("prewarm failed (ValueError: made up)" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
