"""``ocgate-server --version`` names the booted slot's release (appliance.update.release)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from appliance.update.release import installed_release
from appliance.vpn.__main__ import version


def test_release_file(tmp_path: Path) -> None:
    path = tmp_path / "release"
    assert installed_release(path) is None
    path.write_text("")
    assert installed_release(path) is None
    path.write_text("2.1\n")
    assert installed_release(path) == "2.1"


def test_version_shows_the_release_of_the_slot(tmp_path: Path) -> None:
    package = metadata.version("ocgate")
    path = tmp_path / "release"
    assert version(path) == f"ocgate-server {package} (ocserv 1.1.6 compatible)"
    path.write_text("2.1\n")
    assert version(path) == f"ocgate-server 2.1 (package {package}, ocserv 1.1.6 compatible)"
    path.write_text(package + "\n")  # the image's default release is the package's version
    assert version(path) == f"ocgate-server {package} (ocserv 1.1.6 compatible)"


def test_command_line_prints_it_like_ocserv() -> None:
    proc = subprocess.run([sys.executable, "-m", "appliance.vpn", "--version"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr.startswith("ocgate-server ")
