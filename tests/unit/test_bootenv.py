"""The A/B boot environment (appliance.update.bootenv) and RAUC's custom backend on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.update.bootchooser import handle
from appliance.update.bootenv import TRIES, BootEnv, BootEnvError


def test_fresh_card_boots_a() -> None:
    env = BootEnv()
    assert env.primary() == "A" and env.state("A") == "good" and env.state("B") == "good"


def test_install_makes_the_other_slot_primary_with_full_tries() -> None:
    env = BootEnv.parse("BOOT_ORDER=A\nBOOT_A_LEFT=2\nBOOT_B_LEFT=0\n")
    assert env.state("B") == "bad"
    env.set_primary("B")
    assert env.order == ["B", "A"] and env.left["B"] == TRIES and env.primary() == "B"


def test_out_of_tries_falls_back_and_bad_slot_leaves_the_order() -> None:
    env = BootEnv.parse("BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n")
    assert env.primary() == "A" and env.state("B") == "bad"
    env.set_state("B", "bad")
    assert env.order == ["A"]
    env.set_state("A", "good")
    assert env.left["A"] == TRIES
    assert BootEnv.parse("BOOT_ORDER=A B\nBOOT_A_LEFT=0\nBOOT_B_LEFT=0\n").primary() is None


def test_uboot_export_format_round_trips() -> None:
    # env export -t: LF-separated, may be NUL terminated; other variables are kept
    text = "BOOT_A_LEFT=1\nBOOT_B_LEFT=3\nBOOT_ORDER=B A\nOCGATE_ARGS=quiet x=1\n\0\0"
    env = BootEnv.parse(text)
    assert env.order == ["B", "A"] and env.left == {"A": 1, "B": 3}
    assert env.extra == {"OCGATE_ARGS": "quiet x=1"}
    assert BootEnv.parse(env.render()) == env


@pytest.mark.parametrize("text", ["BOOT_A_LEFT=x\nBOOT_ORDER=A\n", "BOOT_A_LEFT=1\n"])
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(BootEnvError):
        BootEnv.parse(text)


def test_fresh_bootenv_of_the_image_is_the_default() -> None:
    from tests.support.mkimage import load_mkimage

    assert BootEnv.parse(load_mkimage().FRESH_BOOTENV) == BootEnv()


def test_backend_requests() -> None:
    env = BootEnv()
    assert handle(env, ["get-primary"]) == ("A\n", False)
    assert handle(env, ["set-primary", "B"]) == ("", True)
    assert handle(env, ["get-state", "B"]) == ("good\n", False)
    assert handle(env, ["set-state", "A", "bad"]) == ("", True)
    assert env.order == ["B"]
    for bad in (["set-primary", "C"], ["frobnicate"], [], ["set-state", "A", "meh"]):
        with pytest.raises(BootEnvError):
            handle(env, bad)


def test_backend_program_edits_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bootenv.txt"
    env = {"OCGATE_BOOTENV": str(path), "PATH": "/usr/bin:/bin"}

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "appliance.update.bootchooser", *args],
                              env=env, capture_output=True, text=True, check=False,
                              cwd=Path(__file__).resolve().parents[2])

    assert call("get-primary").stdout == "A\n" and not path.exists()
    assert call("set-primary", "B").returncode == 0
    assert BootEnv.parse(path.read_text()).primary() == "B"
    refused = call("set-primary", "Z")
    assert refused.returncode == 1 and "unknown slot" in refused.stderr
    assert BootEnv.parse(path.read_text()).primary() == "B"
