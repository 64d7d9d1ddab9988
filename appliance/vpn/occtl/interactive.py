"""occtl's interactive mode: prompt, completion, history."""

from __future__ import annotations

import os
from typing import Any, TextIO

from .commands import COMMANDS, Command, Completions, Context, run_line
from .format import EXIT, HISTORY_FILE, VERSION

# --- interactive mode -----------------------------------------------------------------------


def completions(line: str, cache: Completions) -> list[str]:
    """Words that may come next at the end of ``line`` (commands first, then arguments)."""
    words = line.split()
    if line and not line[-1].isspace() and words:
        prefix, done = words[-1], [w.lower() for w in words[:-1]]
    else:
        prefix, done = "", [w.lower() for w in words]
    found: set[str] = set()
    for cmd in COMMANDS:
        if cmd.name == "?":
            continue
        name = cmd.name.split()
        if len(done) < len(name) and done == name[:len(done)]:
            if name[len(done)].startswith(prefix.lower()):
                found.add(name[len(done)])
        elif len(done) == len(name) and done == name and cmd.arg:
            found.update(v for v in cmd_values(cmd, cache) if v.startswith(prefix))
    return sorted(found)


def cmd_values(cmd: Command, cache: Completions) -> set[str]:
    if cmd.name == "stop":
        return {"now"}
    return cache.for_arg(cmd.arg or "")


def _banner(err: TextIO) -> None:
    err.write(f"OCGate server control (occtl) version {VERSION}\n"
              "An ocserv-compatible occtl for OCGate.\n\n"
              "For help type ? or 'help'\n"
              "==================================================================\n")


def interactive(ctx: Context) -> int:
    try:
        import readline
    except ImportError:  # pragma: no cover - readline is part of CPython on Linux
        readline = None  # type: ignore[assignment]
    ctx.interactive = True
    history = os.path.expanduser(HISTORY_FILE)
    if readline is not None:
        _setup_readline(readline, ctx.cache, history)
    _banner(ctx.err)
    try:
        while True:
            try:
                line = input("> ")
            except EOFError:
                ctx.out.write("\n")
                return 0
            except KeyboardInterrupt:
                ctx.out.write("\n")
                continue
            if line.strip() and run_line(ctx, line) == EXIT:
                return 0
    finally:
        if readline is not None:
            try:
                readline.write_history_file(history)
            except OSError:
                pass


def _setup_readline(readline: Any, cache: Completions, history: str) -> None:
    try:
        readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(1000)
    readline.set_completer_delims(" \t\n")

    def complete(text: str, state: int) -> str | None:
        line = readline.get_line_buffer()[:readline.get_endidx()]
        options = completions(line, cache)
        # Python's readline appends nothing to a unique match; the space ends the word
        return options[state] + " " if state < len(options) else None

    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")
