"""``make bench``: OCGate and ocserv through the same rig, in the same run, side by side.

The measuring itself is the shared rig (../shared/rig/vpnrig.sh): it builds the namespaces,
runs openconnect and iperf3, and sums server CPU over every process in the server namespace.
We run it once per server with identical settings, interleaving the servers run by run so
that drifting machine load hits both alike, and print medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RIG_CANDIDATES = [REPO.parent / "shared" / "rig" / "vpnrig.sh", REPO / "bench" / "vpnrig.sh"]

SERVERS = {
    "ocserv": {"SERVER_CMD": "ocserv -f -c {conf}"},
    "ocgate": {"SERVER_CMD": f"{sys.executable} -m appliance.vpn -f -c {{conf}}",
               "SERVER_VERSION_CMD": "", "OCCTL_CMD": "none", "PYTHONPATH": str(REPO)},
}
METRICS = [("mbps", "Mbit/s", "higher"), ("server_cpu_s_per_gb", "server CPU-s/GB", "lower")]


def find_rig() -> Path:
    for path in RIG_CANDIDATES:
        if path.exists():
            return path
    raise SystemExit("vpnrig.sh not found (expected ../shared/rig/vpnrig.sh)")


def run_rig(rig: Path, server: str, modes: str, duration: int, out: Path,
            skip: str, extra_env: dict[str, str] | None = None) -> dict:
    env = {**os.environ, **SERVERS[server], "SERVER_NAME": server, "MODES": modes,
           "RUNS": "1", "DURATION": str(duration), "OUT_DIR": str(out), "RIG_TAG": "b",
           "SKIP": skip, **(extra_env or {})}
    print(f"# {server}: {modes}, {duration} s per direction ...", file=sys.stderr, flush=True)
    proc = subprocess.run(["bash", str(rig)], env=env, stdout=subprocess.PIPE, text=True,
                          check=False)
    if proc.returncode != 0:
        print(f"# {server}: rig exited {proc.returncode}; see {out}", file=sys.stderr)
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def collect(results: list[dict], mode: str, direction: str, metric: str) -> list[float]:
    values = []
    for r in results:
        try:
            values.append(float(r[mode][direction][metric]["median"]))
        except (KeyError, TypeError, ValueError):
            pass
    return values


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}" if values else "     n/a"


def report(results: dict[str, list[dict]], modes: list[str]) -> str:
    lines = [f"{'':28} {'ocserv':>8} {'ocgate':>8} {'ratio':>7}  target"]
    for mode in modes:
        for direction in ("up", "down"):
            for metric, label, better in METRICS:
                a = collect(results["ocserv"], mode, direction, metric)
                b = collect(results["ocgate"], mode, direction, metric)
                ratio = (statistics.median(b) / statistics.median(a)) if a and b else None
                target = ">= 1.0" if better == "higher" else "<= 0.8"
                ok = ""
                if ratio is not None:
                    ok = "ok" if (ratio >= 1.0 if better == "higher" else ratio <= 0.8) else "MISS"
                rs = f"{ratio:7.2f}" if ratio is not None else "    n/a"
                lines.append(f"{mode:>4} {direction:>4} {label:<18} {fmt(a)} {fmt(b)} {rs}  "
                             f"{target} {ok}")
    for server in ("ocserv", "ocgate"):
        connects = [r.get("headline", {}).get("connect_tls_s") for r in results[server]]
        connects = [c for c in connects if isinstance(c, (int, float))]
        if connects:
            lines.append(f"connect time (TLS) {server}: {statistics.median(connects):.3f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--modes", default="tls", help='rig modes, e.g. "dtls tls"')
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--skip", default="compression,cookie,occtl,badpass,transcript")
    p.add_argument("--out", default=None, help="folder for the rigs' raw results")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("make bench needs root (network namespaces)", file=sys.stderr)
        return 1
    rig = find_rig()
    out = Path(args.out or tempfile.mkdtemp(prefix="ocgate-bench-"))
    results: dict[str, list[dict]] = {"ocserv": [], "ocgate": []}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(args.runs):
        for server in ("ocserv", "ocgate"):
            results[server].append(run_rig(rig, server, args.modes, args.duration,
                                           out / f"{stamp}-{server}-{i + 1}", args.skip))
    text = report(results, args.modes.split())
    print(text)
    (out / "report.txt").write_text(text + "\n")
    print(f"# raw results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
