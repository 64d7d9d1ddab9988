"""Update bookkeeping (appliance.update.history) and reading RAUC's answers (rauc.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.update.history import INSTALLED, ROLLED_BACK, History, Pending, settle
from appliance.update.rauc import RaucError, booted_slot, parse_info

PENDING = Pending(version="2.0", slot="B", from_version="1.0", started=1.0)


def test_new_slot_healthy_is_installed() -> None:
    out = settle(PENDING, "B", healthy=True, now=5.0)
    assert out is not None and out.result == INSTALLED and out.booted_slot == "B"


def test_new_slot_unhealthy_keeps_waiting() -> None:
    assert settle(PENDING, "B", healthy=False) is None


@pytest.mark.parametrize("healthy", [True, False])
def test_old_slot_booted_is_a_rollback(healthy: bool) -> None:
    out = settle(PENDING, "A", healthy=healthy)
    assert out is not None and out.result == ROLLED_BACK and out.from_version == "1.0"


def test_history_files(tmp_path: Path) -> None:
    h = History(tmp_path / "update")
    assert h.pending() is None and h.last() is None
    h.begin(PENDING)
    assert h.pending() == PENDING
    out = settle(PENDING, "A", healthy=True, now=2.0)
    assert out is not None
    h.finish(out)
    assert h.pending() is None and h.last() == out
    (tmp_path / "update/last.json").write_text("{torn")
    assert h.last() is None


def test_parse_info() -> None:
    stdout = json.dumps({"compatible": "ocgate-arm64", "version": "2.0", "images": [
        {"rootfs": {"filename": "rootfs.ext4", "size": 1024}}]})
    stderr = "rauc-Message: Verified inline signature by 'O = OCGate updates, CN = s'\n"
    info = parse_info(stdout, stderr)
    assert (info.compatible, info.version, info.signer, info.size) == \
        ("ocgate-arm64", "2.0", "O = OCGate updates, CN = s", 1024)
    with pytest.raises(RaucError, match="signature"):
        parse_info(stdout, "no keyring given, skipping signature verification")
    with pytest.raises(RaucError):
        parse_info("not json", stderr)


def test_booted_slot() -> None:
    assert booted_slot("root=PARTUUID=4f434741-03 rauc.slot=B quiet") == "B"
    assert booted_slot("root=LABEL=rootfs quiet") is None
