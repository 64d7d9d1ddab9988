"""Where a process's private memory sits: /proc/PID/smaps summed by kind of mapping.

USS (what only this process holds) is Private_Clean + Private_Dirty; in a forked worker
almost all of it is dirty pages it copied on write from main or allocated itself. Summing
them by mapping tells the interpreter's heap (``[heap]``: malloc's main arena), anonymous
mappings (pymalloc's arenas, malloc's mmap'd blocks, thread arenas), the data of
libpython, libcrypto and the extensions, and the rest apart, which is what says which lever
can shrink a worker (bench/memory.py --breakdown; docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path


def kind_of(name: str) -> str:
    """A short label for a mapping's path (the last column of its smaps header)."""
    if not name:
        return "anon"
    if name.startswith("["):
        return name.strip("[]").split(":")[0]  # heap, stack, vdso, anon:...
    base = Path(name).name
    for lib in ("libpython", "libcrypto", "libssl", "libc.so", "ld-linux", "_fastpath",
                "_rust", "libz", "liblz4", "libffi"):
        if lib in base:
            return lib.rstrip(".so")
    if base.endswith(".so") or ".so." in base:
        return "other .so"
    return "file"


def private_by_kind(pid: int) -> dict[str, int]:
    """Private (clean + dirty) bytes of ``pid`` per mapping kind; raises OSError if gone."""
    out: dict[str, int] = {}
    kind = "anon"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head, _, rest = line.partition(" ")
        if "-" in head and not head.endswith(":"):  # a mapping's header line
            parts = line.split(None, 5)
            kind = kind_of(parts[5].strip() if len(parts) > 5 else "")
        elif head in ("Private_Clean:", "Private_Dirty:"):
            out[kind] = out.get(kind, 0) + int(rest.split()[0]) * 1024
    return out
