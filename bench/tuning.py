"""The ARM tuning knobs, measured as A/B runs of the rig against OCGate (docs/tuning.md).

Each variant changes one thing against the baseline; variants are interleaved run by run
so that drifting machine load hits all alike. Figures are medians of the rig's medians.

    python3 -m bench.tuning [--runs 2] [--modes "dtls tls"] [--duration 10]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.compare import SERVERS, collect, find_rig, run_rig

# name -> (extra rig environment, sysctls set for the run)
VARIANTS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "baseline": ({}, {}),
    "mtu = 1280": ({"EXTRA_CONF": "mtu = 1280"}, {}),
    "socket buffers 416 KiB": ({}, {"net.core.rmem_default": "425984",
                                    "net.core.wmem_default": "425984"}),
    "server pinned to CPU 1": (
        {"SERVER_CMD": "taskset -c 1 " + SERVERS["ocgate"]["SERVER_CMD"]}, {}),
}


@contextlib.contextmanager
def sysctls(values: dict[str, str]) -> Iterator[None]:
    saved = {k: Path("/proc/sys", k.replace(".", "/")).read_text().strip() for k in values}
    try:
        for key, value in values.items():
            Path("/proc/sys", key.replace(".", "/")).write_text(value)
        yield
    finally:
        for key, value in saved.items():
            Path("/proc/sys", key.replace(".", "/")).write_text(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--modes", default="dtls tls")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args(argv)
    rig = find_rig()
    out = Path(tempfile.mkdtemp(prefix="ocgate-tuning-"))
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    results: dict[str, list[dict]] = {name: [] for name in names}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(args.runs):
        for n, name in enumerate(names):
            env, knobs = VARIANTS[name]
            with sysctls(knobs):
                results[name].append(run_rig(rig, "ocgate", args.modes, args.duration,
                                             out / f"{stamp}-v{n}-{i + 1}",
                                             "compression,cookie,occtl,badpass,transcript",
                                             env))
    print(f"{'variant':<24} {'mode':>4} {'dir':>4} {'Mbit/s':>8} {'CPU-s/GB':>9}")
    for name in names:
        for mode in args.modes.split():
            for direction in ("up", "down"):
                mbps = collect(results[name], mode, direction, "mbps")
                cpu = collect(results[name], mode, direction, "server_cpu_s_per_gb")
                m = f"{statistics.median(mbps):8.0f}" if mbps else "     n/a"
                c = f"{statistics.median(cpu):9.2f}" if cpu else "      n/a"
                print(f"{name:<24} {mode:>4} {direction:>4} {m} {c}")
    print(f"# raw results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
