"""reach.json (appliance/reach/settings.py): defaults, round trip, refusal of bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.reach import settings


def test_missing_file_means_everything_off(tmp_path: Path) -> None:
    got = settings.load(tmp_path / "reach.json")
    assert not got.enabled and not got.acme and got.ddns == ""
    assert got.acme_directory == settings.LETS_ENCRYPT


def test_round_trip_and_unknown_keys_ignored(tmp_path: Path) -> None:
    chosen = settings.ReachSettings(True, "dyndns2", "vpn.example.org", ddns_url="https://x.test",
                                    acme=True, email="me@example.org")
    path = tmp_path / "reach.json"
    settings.save(path, chosen)
    assert settings.load(path) == chosen
    data = json.loads(path.read_text())
    data["from_a_newer_release"] = 1
    path.write_text(json.dumps(data))
    assert settings.load(path) == chosen
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("bad", ['{"enabled": "yes"}', '{"ddns": "carrier-pigeon"}',
                                 '{"name": 7}', "[]"])
def test_wrong_types_are_refused(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "reach.json"
    path.write_text(bad)
    with pytest.raises(ValueError):
        settings.load(path)


def test_status_file_unreadable_is_none(tmp_path: Path) -> None:
    assert settings.read_status(tmp_path / "none.json") is None
    (tmp_path / "s.json").write_text("{not json")
    assert settings.read_status(tmp_path / "s.json") is None
