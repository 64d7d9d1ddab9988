"""Long fuzz run over every target: ``python3 -m tests.fuzz`` (``make fuzz``).

Targets run in ``--jobs`` processes at once.  Each target stops after ``--count`` inputs or
``--seconds`` (per target), whichever comes first; ``--budget`` instead spreads a total
wall-clock budget evenly over the targets.  The engine is atheris (libFuzzer, coverage
guided) when it is installed, else our mutational engine; ``--engine`` forces one.
Crashing inputs land in ``--crash-dir/<target>/`` with a ``.txt`` trace next to each;
the table and a JSON copy (``--json``) summarise the run.  Exit status 1 if anything
crashed.  See docs/fuzzing.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.fuzz import engine
from tests.fuzz.targets import load_targets, target_names

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 3 << 30  # address space per fuzzing process: a blow-up is a MemoryError


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _mutational_task(task: tuple[str, int, int, float, str | None]) -> dict:
    name, count, seed, seconds, crash_dir = task
    _limit_memory()
    engine.install_hang_alarm()
    target = load_targets()[name]
    tally = engine.fuzz(target, count, seed, seconds, Path(crash_dir) if crash_dir else None)
    return tally.to_json()


def _atheris_task(task: tuple[str, int, int, float, str | None]) -> dict:
    """libFuzzer owns its process: one child per target, its tally comes back as JSON."""
    name, count, seed, seconds, crash_dir = task
    with tempfile.TemporaryDirectory(prefix="ocg-fuzz-") as tmp:
        out = Path(tmp) / "tally.json"
        log = Path(tmp) / "libfuzzer.log"
        argv = [sys.executable, "-m", "tests.fuzz.atheris_runner", "--target", name,
                "--count", str(count), "--seconds", str(seconds), "--seed", str(seed),
                "--out", str(out)] + (["--crash-dir", crash_dir] if crash_dir else [])
        started = time.monotonic()
        with log.open("wb") as sink:
            proc = subprocess.run(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                  timeout=seconds * 2 + 600 if seconds else None, check=False)
        if out.exists():
            return json.loads(out.read_text())
        tally = engine.Tally(name, engine="atheris", seconds=time.monotonic() - started)
        tail = log.read_text(errors="replace")[-2000:]
        tally.crashes = 1
        sig = f"process-died:{proc.returncode}"
        tally.distinct[sig] = engine.Crash(sig, tail, b"")
        return tally.to_json()


def run(names: list[str], count: int, seconds: float, jobs: int, engine_name: str,
        seed: int, crash_dir: Path | None) -> list[engine.Tally]:
    tasks = [(name, count, seed * 1000 + k, seconds, str(crash_dir) if crash_dir else None)
             for k, name in enumerate(names)]
    results: list[dict] = []

    def progress(result: dict) -> None:
        """One line per finished target, so a run cut short still leaves its figures."""
        results.append(result)
        t = engine.Tally.from_json(result)
        print(f"done {t.target}: {t.inputs} inputs, {t.crashes} crashes, "
              f"{len(t.distinct)} distinct, {t.seconds:.0f}s", flush=True)

    if engine_name == "atheris":
        with ThreadPoolExecutor(jobs) as pool:
            for result in pool.map(_atheris_task, tasks):
                progress(result)
    elif jobs == 1:
        for task in tasks:
            progress(_mutational_task(task))
    else:
        with multiprocessing.get_context("fork").Pool(jobs, maxtasksperchild=1) as pool:
            for result in pool.imap_unordered(_mutational_task, tasks, chunksize=1):
                progress(result)
    order = {name: k for k, name in enumerate(names)}
    results.sort(key=lambda r: order[r["target"]])
    return [engine.Tally.from_json(r) for r in results]


def table(tallies: list[engine.Tally]) -> str:
    head = (f"{'target':<20} {'engine':<10} {'inputs':>10} {'rejected':>9} {'crashes':>8} "
            f"{'distinct':>8} {'seconds':>8} {'slowest':>9}")
    lines = [head, "-" * len(head)]
    for t in tallies:
        lines.append(f"{t.target:<20} {t.engine:<10} {t.inputs:>10} {t.rejected:>9} "
                     f"{t.crashes:>8} {len(t.distinct):>8} {t.seconds:>8.1f} "
                     f"{t.slowest_s * 1e3:>7.0f}ms")
    total = sum(t.inputs for t in tallies)
    lines.append(f"{'total':<20} {'':<10} {total:>10} {'':>9} "
                 f"{sum(t.crashes for t in tallies):>8} "
                 f"{sum(len(t.distinct) for t in tallies):>8}")
    for t in tallies:
        for crash in t.distinct.values():
            lines.append(f"CRASH {t.target}: {crash.signature} x{crash.count}: "
                         f"{crash.detail[:160]!r} input={crash.sample[:48].hex()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=int(os.environ.get("FUZZ_COUNT",
                                                                        1_000_000)),
                        help="inputs per target (default 1e6)")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="wall-clock cap per target (0: none)")
    parser.add_argument("--budget", type=float, default=0.0,
                        help="total wall-clock budget, spread over the targets")
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--engine", choices=("auto", "atheris", "mutational"), default="auto")
    parser.add_argument("--targets", default="all", help="comma-separated names, or all")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    parser.add_argument("--crash-dir", type=Path, default=ROOT / "build" / "fuzz-crashes")
    parser.add_argument("--json", type=Path, default=ROOT / "build" / "fuzz-last-run.json")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, target in load_targets().items():
            print(f"{name:<20} {target.what}")
        return 0
    names = target_names() if args.targets == "all" else args.targets.split(",")
    unknown = set(names) - set(target_names())
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    engine_name = args.engine
    if engine_name == "auto":
        engine_name = "atheris" if _have_atheris() else "mutational"
    jobs = max(1, args.jobs)
    seconds = args.seconds
    if args.budget:
        seconds = args.budget * jobs / len(names)
    print(f"fuzz: engine={engine_name} targets={len(names)} count={args.count} "
          f"seconds/target={seconds or 'unbounded'} jobs={jobs} seed={args.seed}", flush=True)
    started = time.monotonic()
    tallies = run(names, args.count, seconds, jobs, engine_name, args.seed, args.crash_dir)
    print(table(tallies))
    print(f"wall time {time.monotonic() - started:.0f}s; crashing inputs in {args.crash_dir}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"engine": engine_name, "seed": args.seed,
                                     "count": args.count, "seconds_per_target": seconds,
                                     "tallies": [t.to_json() for t in tallies]}, indent=1))
    return 1 if any(t.crashes for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
