"""The ARM tuning knobs, measured as A/B runs of the rig against OCGate (docs/tuning.md).

Each variant changes one thing against the baseline; variants are interleaved run by run
so that drifting machine load hits all alike. Figures are medians over the runs.

    python3 -m bench.tuning [--runs 2] [--modes "dtls tls"] [--duration 10]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.compare import median_of
from bench.rig import DIRECTIONS, Variant, measure

VARIANTS: dict[str, Variant] = {
    "baseline": Variant("baseline"),
    "mtu = 1280": Variant("mtu = 1280", extra_conf=("mtu = 1280",)),
    "socket buffers 416 KiB": Variant("socket buffers 416 KiB",
                                      sysctls={"net.core.rmem_default": "425984",
                                               "net.core.wmem_default": "425984"}),
    "server pinned to CPU 1": Variant("server pinned to CPU 1", prefix=("taskset", "-c", "1")),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--modes", default="dtls tls")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    modes = args.modes.split()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(args.runs):
        for name in names:
            results[name].append(measure(VARIANTS[name], modes, args.duration))
    print(f"{'variant':<24} {'mode':>4} {'dir':>4} {'Mbit/s':>8} {'CPU-s/GB':>9}")
    for name in names:
        for mode in modes:
            for direction in DIRECTIONS:
                mbps = median_of(results[name], mode, direction, "mbps")
                cpu = median_of(results[name], mode, direction, "cpu")
                m = f"{mbps:8.0f}" if mbps is not None else "     n/a"
                c = f"{cpu:9.2f}" if cpu is not None else "      n/a"
                print(f"{name:<24} {mode:>4} {direction:>4} {m} {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
