"""tests/conftest.py's rule, run on throw-away suites: only tests/image/ may skip."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

HOOKS = Path(__file__).resolve().parents[1] / "conftest.py"


def run_suite(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A suite laid out like ours (tests/conftest.py + tests/...) run by a child pytest."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "tests").mkdir()
    shutil.copy(HOOKS, tmp_path / "tests" / "conftest.py")
    for name, text in files.items():
        path = tmp_path / "tests" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)


PASSING = "def test_ok():\n    assert True\n"
IMAGE_SKIP = """
import pytest

def test_boot():
    pytest.skip("boots the disk image in QEMU: run make image-test")
"""


def test_a_stray_skip_fails_the_session_and_is_named(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, {"unit/test_a.py": PASSING + """
import pytest

def test_needs_ping():
    pytest.skip("needs the 'ping' command")
""", "image/test_boot.py": IMAGE_SKIP})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "unit/test_a.py::test_needs_ping: skipped: needs the 'ping' command" in proc.stdout
    assert "test_boot" not in proc.stdout.split("stray skips")[1]
    assert "1 stray skip(s) outside tests/image/" in proc.stdout


def test_only_the_image_test_may_skip(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, {"unit/test_a.py": PASSING, "image/test_boot.py": IMAGE_SKIP})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 1 skipped" in proc.stdout
    assert "stray" not in proc.stdout


def test_skipif_module_skip_xfail_and_xpass_are_stray_too(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, {
        "unit/test_marks.py": """
import pytest

@pytest.mark.skipif(True, reason="no nft")
def test_skipif():
    pass

@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False

@pytest.mark.xfail(reason="fixed since")
def test_xpass():
    pass
""",
        "e2e/test_module.py": """
import pytest

pytest.skip("no root", allow_module_level=True)
""",
    })
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for line in ("test_marks.py::test_skipif: skipped: no nft",
                 "test_marks.py::test_xfail: xfail: known bug",
                 "test_marks.py::test_xpass: xpass: fixed since",
                 "e2e/test_module.py: skipped: no root"):
        assert line in proc.stdout, proc.stdout
    assert "4 stray skip(s)" in proc.stdout


def test_a_failing_prereq_marker_fails_the_test_before_its_fixtures(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, {"unit/test_p.py": """
import pytest

def missing():
    pytest.fail("needs the 'frob' command (apt package frob)", pytrace=False)

@pytest.fixture
def rig():
    raise AssertionError("the rig was built although a prerequisite is missing")

@pytest.mark.prereq.with_args(missing)
def test_p(rig):
    pass
"""})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "needs the 'frob' command (apt package frob)" in proc.stdout
    assert "the rig was built" not in proc.stdout
