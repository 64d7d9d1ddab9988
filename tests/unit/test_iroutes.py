"""main/iroutes.py: ocserv's placeholders and the shell, without a TUN device."""

from __future__ import annotations

from pathlib import Path

from appliance.vpn.main import iroutes


def test_expand_every_placeholder_and_the_legacy_ones() -> None:
    cmd = iroutes.expand("a %{R} %R %{RI} %{D} %D %RI.", "198.51.100.0/24", "vpns3")
    assert cmd == ("a 198.51.100.0/255.255.255.0 198.51.100.0/255.255.255.0 198.51.100.0/24 "
                   "vpns3 vpns3 198.51.100.0/255.255.255.0I.")
    assert iroutes.expand("ip -6 route add %{R} dev %{D}", "2001:db8:9::/48", "t0") == \
        "ip -6 route add 2001:db8:9::/48 dev t0"


def test_unknown_placeholder_makes_the_command_unusable() -> None:
    assert iroutes.expand("echo 100% done", "198.51.100.0/24", "t0") is None
    assert iroutes.expand("echo %{X}", "198.51.100.0/24", "t0") is None


def test_apply_runs_through_the_shell_and_rolls_back_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "log"
    add = f"echo add %{{RI}} >> {out} && test %{{RI}} != 198.51.100.128/25"
    delete = f"echo del %{{RI}} | cat >> {out}"
    assert iroutes.apply(add, delete, ["198.51.100.0/25"], "t0")
    assert not iroutes.apply(add, delete, ["203.0.113.0/24", "198.51.100.128/25"], "t0")
    assert out.read_text().splitlines() == [
        "add 198.51.100.0/25", "add 203.0.113.0/24", "add 198.51.100.128/25",
        "del 203.0.113.0/24"]
