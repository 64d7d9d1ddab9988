"""appliance/vpn/secmod/memtrim.py: the sec-mod's periodic heap trim."""

from __future__ import annotations

import platform

import psutil

from appliance.vpn.secmod import memtrim


def test_glibc_has_malloc_trim() -> None:
    if platform.libc_ver()[0] == "glibc":
        assert memtrim._TRIM is not None  # noqa: SLF001 - a silent no-op would hide the fix


def test_trim_gives_scattered_free_memory_back() -> None:
    """Free every other of many malloc-sized blocks: the holes stay mapped until trimmed."""
    blocks = [bytearray(60_000) for _ in range(1000)]  # ~60 MB, below the mmap threshold
    for i in range(0, len(blocks), 2):
        blocks[i] = bytearray(0)
    before = psutil.Process().memory_info().rss
    memtrim.release_free_heap()
    after = psutil.Process().memory_info().rss
    assert after <= before
    if memtrim._TRIM is not None:  # noqa: SLF001
        assert before - after > 10 * 2**20, (before, after)
    del blocks


def test_release_memory_frees_garbage_cycles() -> None:
    import gc
    import weakref

    class Node:
        pass

    gc.disable()
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        probe = weakref.ref(a)
        del a, b
        assert probe() is not None  # only the collector can free a cycle
        memtrim.release_memory()
        assert probe() is None
    finally:
        gc.enable()
