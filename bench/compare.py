"""``make bench``: OCGate and ocserv through the same rig, in the same run, side by side.

The rig is the repository's own (bench/rig.py over tests/support): namespaces, real
openconnect, iperf3 (cubic) to the inside host, DTLS and TLS, both directions, and the CPU
time of all the server's processes per GB. Servers are interleaved round by round (ocserv,
OCGate, ocserv, ...) so that drifting machine load hits all alike; the table has the medians
over the rounds and each OCGate variant's ratio to ocserv.

``--variants`` adds OCGate set-ups as more columns, e.g. ``ocgate-python`` (the native data
path switched off, OCGATE_NATIVE=0) for the A/B of appliance/vpn/native.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.rig import DIRECTIONS, Sample, Variant, measure

VARIANTS: dict[str, Variant] = {
    "ocserv": Variant("ocserv", kind="ocserv"),
    "ocgate": Variant("ocgate"),
    "ocgate-python": Variant("ocgate-python", env={"OCGATE_NATIVE": "0"}),
}
METRICS = (("mbps", "Mbit/s", "higher", 1.0), ("cpu", "server CPU-s/GB", "lower", 0.8))


def _value(sample: Sample, metric: str) -> float:
    return sample.mbps if metric == "mbps" else sample.cpu_s_per_gb


def median_of(rounds: list[dict[str, Any]], mode: str, direction: str,
              metric: str) -> float | None:
    values = [_value(r[mode][direction], metric) for r in rounds
              if mode in r and direction in r[mode]]
    return statistics.median(values) if values else None


def report(results: dict[str, list[dict[str, Any]]], modes: list[str]) -> str:
    """One table: a row per channel, direction and metric; a column per server, then each
    OCGate variant's ratio to ocserv and whether it meets issue 19's goal."""
    names = list(results)
    others = [n for n in names if n != "ocserv"]
    head = f"{'':26}" + "".join(f"{n:>15}" for n in names)
    head += "".join(f"{n + '/ocserv':>{max(14, len(n) + 8)}}" for n in others) + "  goal"
    lines = [head]
    for metric, label, better, goal in METRICS:
        for mode in modes:
            for direction in DIRECTIONS:
                vals = {n: median_of(results[n], mode, direction, metric) for n in names}
                line = f"{mode.upper():>4} {direction:<4} {label:<16}"
                line += "".join(f"{v:15.2f}" if v is not None else f"{'n/a':>15}"
                                for v in vals.values())
                base = vals.get("ocserv")
                for n in others:
                    v = vals[n]
                    if base and v is not None:
                        ratio = v / base
                        ok = ratio >= goal if better == "higher" else ratio <= goal
                        width = max(14, len(n) + 8) - 2
                        line += f"{ratio:{width}.2f} {'+' if ok else '-'}"
                    else:
                        line += f"{'n/a':>{max(14, len(n) + 8)}}"
                line += f"  {'>=' if better == 'higher' else '<='} {goal}"
                lines.append(line)
    for n in names:
        connects = [r[m]["connect_s"] for r in results[n] for m in modes if m in r]
        if connects:
            lines.append(f"connect time (password login to tunnel up), {n}: "
                         f"{statistics.median(connects):.3f} s")
    lines.append("(+ meets the goal, - does not; medians of "
                 f"{min(len(r) for r in results.values())} interleaved rounds)")
    return "\n".join(lines)


def by_process(results: dict[str, list[dict[str, Any]]], modes: list[str]) -> str:
    """Where the server's CPU went, median seconds per GB by process name."""
    lines = []
    for n, rounds in results.items():
        for mode in modes:
            for direction in DIRECTIONS:
                per: dict[str, list[float]] = {}
                for r in rounds:
                    s = r[mode][direction]
                    for comm, sec in s.cpu_by_process.items():
                        per.setdefault(comm, []).append(sec / (s.bytes / 1e9))
                parts = ", ".join(f"{c} {statistics.median(v):.2f}"
                                  for c, v in sorted(per.items(), key=lambda kv: -max(kv[1])))
                lines.append(f"{n:>14} {mode:>4} {direction:<4} {parts}")
    return "\n".join(lines)


def _jsonable(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def conv(x: Any) -> Any:
        if isinstance(x, Sample):
            return {**x.__dict__, "cpu_s_per_gb": x.cpu_s_per_gb}
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, list):
            return [conv(v) for v in x]
        return x
    return conv(results)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="dtls tls", help='channels, e.g. "dtls tls"')
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    p.add_argument("--seconds", type=float, default=8, help="iperf3 seconds per direction")
    p.add_argument("--variants", default="ocserv,ocgate",
                   help=f"comma list of columns, from {', '.join(VARIANTS)}")
    p.add_argument("--quick", action="store_true", help="1 round of 3 s: a smoke run")
    p.add_argument("--out", default=None, help="folder for the raw results (JSON)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("make bench needs root (network namespaces)", file=sys.stderr)
        return 1
    if args.quick:
        args.rounds, args.seconds = 1, 3
    modes = args.modes.split()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {sorted(VARIANTS)}")
    out = Path(args.out or tempfile.mkdtemp(prefix="ocgate-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    load = [Path("/proc/loadavg").read_text().split()[:3]]
    for i in range(args.rounds):
        for n in names:
            print(f"# round {i + 1}/{args.rounds}: {n} ({args.modes}, {args.seconds:g} s "
                  "per direction)", file=sys.stderr, flush=True)
            results[n].append(measure(VARIANTS[n], modes, args.seconds))
    load.append(Path("/proc/loadavg").read_text().split()[:3])
    text = report(results, modes)
    text += f"\nload average at start {' '.join(load[0])}, at end {' '.join(load[1])}"
    print(text)
    print("\nserver CPU-s/GB by process (medians):\n" + by_process(results, modes))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"report-{stamp}.txt").write_text(text + "\n")
    (out / f"raw-{stamp}.json").write_text(json.dumps(_jsonable(results), indent=1) + "\n")
    print(f"# raw results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
