"""The package layout's rules (docs/architecture.md), checked on the source as AST.

Every import counts, wherever it is written: module level, under ``if TYPE_CHECKING:`` or
inside a function (a lazy import still ties the two modules together).  A cycle anywhere in
appliance/ fails, and protocol/ stays sans-IO: it imports no process package.
"""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROCESS_PACKAGES = ("main", "secmod", "worker", "auth", "control", "occtl")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in (ROOT / "appliance").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif module in known:
                    found.add(module)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_in_appliance() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_imports_are_resolved() -> None:
    """The graph sees relative imports and `from pkg import module` (else it proves nothing)."""
    graph = _graph()
    assert "appliance.vpn.protocol.tls.record" in graph["appliance.vpn.protocol.dtls.record"]
    assert "appliance.vpn.worker.anyconnect" in graph["appliance.vpn.worker.dialogue"]
    assert "appliance.vpn.auth.radius.auth" in graph["appliance.vpn.auth.registry"]


def test_protocol_is_sans_io_of_processes() -> None:
    """protocol/ (bytes in, events out) imports no process package."""
    bad = {}
    for name, deps in _graph().items():
        if name.startswith("appliance.vpn.protocol"):
            wrong = {d for d in deps
                     if any(d.startswith(f"appliance.vpn.{p}") for p in PROCESS_PACKAGES)}
            if wrong:
                bad[name] = sorted(wrong)
    assert not bad, bad


# The only places one process package imports another (docs/architecture.md, "Rules"):
# a parent starts its children through their entry points, and the few pure helpers
# that two processes must apply identically.
ALLOWED_ACROSS = {
    ("main.server", "secmod.server"),       # main forks sec-mod: run_secmod
    ("main.server", "worker.dialogue"),     # main forks a worker per client: run_worker
    ("main.server", "worker.errors"),       # ... and hands it the Peer
    ("main.sessions", "auth.radius.acct"),  # RADIUS accounting is main's (as ocserv's), lazily
    ("main.sessions", "auth.accounting"),   # ... whose hooks are no-ops without 'acct'
    ("main.sessions", "auth.radius.supconfig"),  # per-user settings a RADIUS Accept carried
    ("main.server", "control"),             # main serves the occtl socket
    ("main.sessions", "control"),           # ... and publishes connect/disconnect events
    ("main.management", "control"),         # ... with these records
    ("occtl", "control.client"), ("occtl.commands", "control"),
    ("occtl.commands", "control.client"), ("occtl.format", "control"),
    ("worker.dialogue", "main.ipv6"),       # the CONNECT answer's IPv6 fields, main's rules
    ("secmod.server", "auth.base"), ("secmod.server", "auth.cert"),
    ("secmod.server", "auth.registry"),
    ("secmod.login", "auth.base"), ("secmod.login", "auth.cert"),
    ("secmod.login", "auth.registry"),
    ("secmod.vhosts", "auth.groups"), ("secmod.vhosts", "auth.registry"),  # per-host auth
}


def _process_of(module: str) -> str | None:
    rest = module.removeprefix("appliance.vpn.")
    top = rest.split(".")[0]
    return top if top in PROCESS_PACKAGES else None


def test_process_packages_meet_only_where_allowed() -> None:
    extra, seen = set(), set()
    for name, deps in _graph().items():
        mine = _process_of(name)
        for dep in deps:
            theirs = _process_of(dep)
            if mine and theirs and theirs != mine:
                pair = (name.removeprefix("appliance.vpn."), dep.removeprefix("appliance.vpn."))
                seen.add(pair)
                if pair not in ALLOWED_ACROSS:
                    extra.add(pair)
    assert not extra, sorted(extra)
    assert not ALLOWED_ACROSS - seen, f"stale exceptions: {sorted(ALLOWED_ACROSS - seen)}"


def test_process_entry_points_do_not_load_pyrad() -> None:
    """pyrad is loaded only when RADIUS is configured: importing main, sec-mod and the
    worker leaves it out (auth/radius/supconfig.py holds what main needs of RADIUS)."""
    code = ("import sys, appliance.vpn.main.server, appliance.vpn.secmod.server, "
            "appliance.vpn.worker.dialogue, appliance.vpn.__main__; "
            "import appliance.vpn.auth.radius.supconfig; "
            "print('pyrad' in sys.modules, 'appliance.vpn.main.server' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=True, timeout=60).stdout.split()
    assert out == ["False", "True"], out
