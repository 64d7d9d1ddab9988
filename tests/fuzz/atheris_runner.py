"""One target under atheris (libFuzzer, coverage guided); run as a child of ``tests.fuzz``.

``python3 -m tests.fuzz.atheris_runner --target NAME --count N --seconds S --out F.json``

libFuzzer stops at the first exception that escapes the callback, which would end a long
run at its first finding.  So the callback never lets one escape: ``engine.execute``
judges and records every input exactly as the mutational engine does, and this process
writes its tally as JSON and leaves with ``os._exit`` once the count or the time budget is
reached (libFuzzer's own exit would skip Python's clean-up anyway).  A child that dies
without writing its JSON (a crash in C, libFuzzer's RSS limit) is reported as a crash of
the target by the parent.

The parser modules are imported inside ``atheris.instrument_imports`` so that libFuzzer
sees their branch coverage; the seeds are run once there too, which imports the modules
some targets load lazily.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--crash-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    import atheris

    from tests.fuzz import engine
    from tests.fuzz.targets import load_targets

    with atheris.instrument_imports(include=["appliance"]):
        target = load_targets()[args.target]
        seeds = [s[: target.max_len] for s in target.seeds()]
        for seed in seeds:
            try:
                target.run(seed)
            except BaseException:  # noqa: BLE001 - warm-up only; the fuzz loop judges
                pass
    engine.install_hang_alarm()
    tally = engine.Tally(target.name, engine="atheris")
    started = time.monotonic()
    deadline = started + args.seconds if args.seconds > 0 else None

    corpus = Path(tempfile.mkdtemp(prefix=f"ocg-fuzz-corpus-{target.name}-"))

    def finish() -> None:
        tally.seconds = time.monotonic() - started
        shutil.rmtree(corpus, ignore_errors=True)
        args.out.write_text(json.dumps(tally.to_json()))
        sys.stdout.flush()
        os._exit(0)

    def one_input(data: bytes) -> None:
        engine.execute(target, data, tally, args.crash_dir)
        if tally.inputs >= args.count:
            finish()
        if deadline is not None and tally.inputs % 512 == 0 and time.monotonic() > deadline:
            finish()

    for k, seed in enumerate(seeds):
        (corpus / f"seed-{k}").write_bytes(seed)
    libfuzzer_args = [sys.argv[0], f"-max_len={target.max_len}", "-rss_limit_mb=3072",
                      f"-seed={args.seed}", "-timeout=60", "-print_final_stats=0",
                      str(corpus)]
    atheris.Setup(libfuzzer_args, one_input)
    try:
        atheris.Fuzz()
    finally:
        finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
