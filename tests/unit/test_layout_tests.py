"""The test tree's rule: shared test code lives in tests/support (helpers) and conftest.py
files (fixtures); no file under tests/ imports a ``test_*`` module or sets
``pytest_plugins``.

A test module that imports another one runs that module's fixtures and module-level code
in a place nobody looks for them, and ``pytest_plugins`` outside the root conftest is
deprecated by pytest and hides where a fixture comes from.  Checked on the source as AST, so
a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _is_test_module(dotted: str) -> bool:
    return any(part.startswith("test_") for part in dotted.split(".") if part)


def problems(source: str, filename: str = "<test>") -> list[str]:
    """Each import of a ``test_*`` module and each ``pytest_plugins`` binding in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [module] if _is_test_module(module) else []
            names += [f"{module}.{a.name}" for a in node.names
                      if not names and a.name.startswith("test_")]
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [f"pytest_plugins = ... ({t.id})" for t in targets
                     if isinstance(t, ast.Name) and t.id == "pytest_plugins"]
        else:
            continue
        found += [(node.lineno, f"{filename}:{node.lineno}: {name}") for name in names]
    return [text for _, text in sorted(found)]


def test_no_file_under_tests_imports_a_test_module_or_sets_pytest_plugins() -> None:
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        found += problems(path.read_text(), str(path.relative_to(ROOT)))
    assert found == [], "move the shared code to tests/support or a conftest.py:\n" + \
        "\n".join(found)


def test_the_check_sees_every_form() -> None:
    bad = (
        "from tests.e2e.test_vpn_tls import Rig\n"
        "import tests.unit.test_control\n"
        "from tests.unit import test_tun\n"
        "from .test_x import y\n"
        "def lazy():\n    from tests.browser.test_webui_e2e import Shots\n"
        'pytest_plugins = ["tests.unit.test_webui_support"]\n'
    )
    assert [line.split(": ", 1)[0] for line in problems(bad)] == [
        f"<test>:{n}" for n in (1, 2, 3, 4, 6, 7)]
    ok = "from tests.support.rig import Rig\nimport tests.prereqs\nfrom tests.support import tls\n"
    assert problems(ok) == []
