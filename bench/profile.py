"""Where an OCGate worker's time goes, per channel and direction (docs/performance.md).

Starts OCGate on the bench rig, and for DTLS up, DTLS down, TLS up and TLS down attaches
py-spy (a sampling profiler; ``pip install py-spy``, a dev tool, not a dependency) to the
session's worker for the length of an iperf3 run. Prints, per direction, the share of samples
whose innermost Python frame is each function ("self"), with the time in system calls and
C extensions counted on the Python line that made the call, and keeps the collapsed stacks
(flame-graph input) in ``--out``.

    python3 -m bench.profile [--seconds 8] [--variant ocgate|ocgate-python]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from bench.compare import VARIANTS
from bench.rig import BenchServer, Sample, measure, server_pids


def _worker_pid(bench: BenchServer) -> int:
    """The session's worker: the youngest of the server's descendants."""
    assert bench.server.pid is not None
    procs = []
    for pid in server_pids(bench.server.pid)[1:]:
        try:
            procs.append((psutil.Process(pid).create_time(), pid))
        except psutil.Error:
            continue
    if not procs:
        raise RuntimeError("no worker process found")
    return max(procs)[1]


def summarize(collapsed: Path, top: int = 14) -> str:
    """Self share by function, from py-spy's collapsed (``--format raw``) output."""
    self_count: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        leaf = frames[-1]
        total += n
        self_count[_short(leaf)] += n
    lines = [f"    {n * 100 / total:5.1f} %  {name}" for name, n in self_count.most_common(top)]
    return "\n".join(lines) + f"\n    ({total} samples)"


def _short(frame: str) -> str:
    # "seal_many (appliance/vpn/protocol/dtls/record.py:412)" -> function and file:line
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    if "appliance/" in where:
        where = where[where.index("appliance/"):]
    return f"{name} ({where})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--variant", default="ocgate", choices=[v for v in VARIANTS if v != "ocserv"])
    p.add_argument("--modes", default="dtls tls")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is missing: pip install py-spy", file=sys.stderr)
        return 1
    out = Path(args.out or tempfile.mkdtemp(prefix="ocgate-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, Sample]] = {}

    def profiled(bench: BenchServer, mode: str, direction: str, run: object) -> Sample:
        path = out / f"{args.variant}-{mode}-{direction}.txt"
        worker = _worker_pid(bench)
        prof = subprocess.Popen(
            [spy, "record", "--pid", str(worker), "--duration", str(int(args.seconds)),
             "--rate", str(args.rate), "--format", "raw", "--idle", "--nonblocking",
             "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            sample = run()  # type: ignore[operator]
        finally:
            _, err = prof.communicate(timeout=args.seconds + 30)
        if prof.returncode != 0 or not path.exists():
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
        files[f"{mode} {direction}"] = (path, sample)
        return sample

    measure(VARIANTS[args.variant], args.modes.split(), args.seconds, on_session=profiled)
    for key, (path, sample) in files.items():
        print(f"{key.upper()}: {sample.mbps:.0f} Mbit/s, {sample.cpu_s_per_gb:.2f} server "
              f"CPU-s/GB ({path.name})")
        print(summarize(path))
    print(f"# collapsed stacks in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
