"""The fuzzing loop shared by every engine: run one input, judge the outcome, keep crashes.

``execute`` is the single place that decides what a crash is, so the bounded pytest run,
our mutational engine and the atheris (libFuzzer) runner all apply the same contract:

* the call returns, or raises one of the target's documented exception types: fine;
* any other exception (MemoryError and RecursionError included): crash;
* more than ``SLOW_CALL_S`` of CPU time for one input: crash ("slow"), measured in CPU
  time so that a machine loaded by other test runs does not raise false alarms;
* a call still running after ``HANG_CPU_S`` of CPU is interrupted by ITIMER_VIRTUAL
  (a Python-level endless loop would otherwise stall the whole run): crash ("hang").

The mutational engine is deliberately simple (libFuzzer-style byte mutations, dictionary
tokens, splicing, plus the seeds themselves): its job is to be fast and deterministic per
seed, so a crash found in a long run can be replayed with the same seed.
"""

from __future__ import annotations

import hashlib
import random
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.targets import Target, seed_words

SLOW_CALL_S = 1.0
HANG_CPU_S = 5.0
MAX_SAVED_PER_SIGNATURE = 3


class Hang(BaseException):
    """Raised from the CPU-time alarm; a BaseException so parsers' ``except`` can't eat it."""


@dataclass
class Crash:
    """One distinct failure: its signature, how often it happened, a sample input."""

    signature: str
    detail: str
    sample: bytes
    count: int = 1


@dataclass
class Tally:
    """Per-target totals; merged across worker processes."""

    target: str
    inputs: int = 0
    ok: int = 0
    rejected: int = 0
    crashes: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    distinct: dict[str, Crash] = field(default_factory=dict)
    engine: str = "mutational"

    def merge(self, other: Tally) -> None:
        self.inputs += other.inputs
        self.ok += other.ok
        self.rejected += other.rejected
        self.crashes += other.crashes
        self.seconds = max(self.seconds, other.seconds)
        self.slowest_s = max(self.slowest_s, other.slowest_s)
        for sig, crash in other.distinct.items():
            if sig in self.distinct:
                self.distinct[sig].count += crash.count
            else:
                self.distinct[sig] = crash

    def to_json(self) -> dict[str, object]:
        return {"target": self.target, "inputs": self.inputs, "ok": self.ok,
                "rejected": self.rejected, "crashes": self.crashes, "seconds": self.seconds,
                "slowest_s": self.slowest_s, "engine": self.engine,
                "distinct": [{"signature": c.signature, "detail": c.detail,
                              "sample": c.sample.hex(), "count": c.count}
                             for c in self.distinct.values()]}

    @classmethod
    def from_json(cls, d: dict) -> Tally:
        tally = cls(d["target"], d["inputs"], d["ok"], d["rejected"], d["crashes"],
                    d["seconds"], d["slowest_s"], engine=d.get("engine", "?"))
        for c in d["distinct"]:
            tally.distinct[c["signature"]] = Crash(c["signature"], c["detail"],
                                                   bytes.fromhex(c["sample"]), c["count"])
        return tally


def _on_cpu_alarm(signum: int, frame: object) -> None:
    raise Hang(f"still running after {HANG_CPU_S:.0f}s of CPU")


def install_hang_alarm() -> None:
    signal.signal(signal.SIGVTALRM, _on_cpu_alarm)


def signature(exc: BaseException) -> str:
    """Exception type plus where it surfaced in our code and where it was raised: two
    inputs failing in the same place are one bug, whatever their bytes."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/appliance/" in f.filename]
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "-"
    raised = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "-"
    return f"{type(exc).__name__}@{where}<{raised}"


def execute(target: Target, data: bytes, tally: Tally, crash_dir: Path | None) -> bool:
    """Run one input; True when it crashed (the crash is recorded and saved)."""
    use_alarm = signal.getsignal(signal.SIGVTALRM) is _on_cpu_alarm
    t0 = time.process_time()
    failure: BaseException | None = None
    try:
        if use_alarm:
            signal.setitimer(signal.ITIMER_VIRTUAL, HANG_CPU_S)
        try:
            target.run(data)
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        tally.ok += 1
    except target.allowed:
        tally.rejected += 1
    except (Exception, Hang, RecursionError, MemoryError) as exc:  # the point of fuzzing
        failure = exc
    spent = time.process_time() - t0
    tally.inputs += 1
    tally.slowest_s = max(tally.slowest_s, spent)
    if failure is None and spent > SLOW_CALL_S:
        failure = TimeoutError(f"slow call: {spent:.2f}s CPU for {len(data)} bytes")
    if failure is None:
        return False
    record_crash(target, data, failure, tally, crash_dir)
    return True


def record_crash(target: Target, data: bytes, exc: BaseException, tally: Tally,
                 crash_dir: Path | None) -> None:
    sig = signature(exc)
    tally.crashes += 1
    crash = tally.distinct.get(sig)
    if crash is None:
        detail = f"{type(exc).__name__}: {str(exc)[:200]}"
        crash = tally.distinct[sig] = Crash(sig, detail, data, 0)
    crash.count += 1
    if crash_dir is not None and crash.count <= MAX_SAVED_PER_SIGNATURE:
        save_crash(crash_dir, target.name, sig, data, "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:]))


def save_crash(crash_dir: Path, target: str, sig: str, data: bytes, trace: str) -> Path:
    folder = crash_dir / target
    folder.mkdir(parents=True, exist_ok=True)
    sig_id = hashlib.sha1(sig.encode()).hexdigest()[:10]
    path = folder / f"{sig_id}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(f"{sig}\n\n{trace}")
    return path


# ------------------------------------------------------------------------- mutations


class Mutator:
    """libFuzzer-like byte mutations over a seed corpus; deterministic for a given seed."""

    INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00", b"\xff\xff", b"\x7f\xff",
                   b"\x80\x00", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"0", b"-1",
                   b"4294967296", b"\r\n", b"\n", b"%s", b"\xc3\x28", b"\xed\xa0\x80")

    def __init__(self, target: Target, rng: random.Random) -> None:
        self.rng = rng
        self.max_len = target.max_len
        self.seeds = [s[: self.max_len] for s in target.seeds()] or [b""]
        self.words = list(target.dictionary) + seed_words(self.seeds) + list(self.INTERESTING)
        self.pool: list[bytes] = list(self.seeds)  # seeds plus a few kept mutants

    def inputs(self) -> Iterator[bytes]:
        rng = self.rng
        while True:
            roll = rng.random()
            if roll < 0.02:
                yield rng.choice(self.seeds)
            elif roll < 0.08:
                yield rng.randbytes(rng.randrange(0, 256))
            else:
                data = self.mutate(rng.choice(self.pool))
                if rng.random() < 0.002:
                    self.remember(data)
                yield data

    def remember(self, data: bytes) -> None:
        """Keep some mutants as new parents, so mutations can stack over the run."""
        if len(self.pool) < 2000:
            self.pool.append(data)
        else:
            self.pool[self.rng.randrange(len(self.seeds), len(self.pool))] = data

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
            self._one(buf, rng)
        return bytes(buf[: self.max_len])

    def _one(self, buf: bytearray, rng: random.Random) -> None:
        op = rng.randrange(13)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 2:
            del buf[pos: pos + rng.randrange(1, 32)]
        elif op == 3:
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 8))
        elif op == 4:
            buf[pos:pos] = rng.choice(self.words)
        elif op == 5 and buf:
            word = rng.choice(self.words)
            buf[pos: pos + len(word)] = word
        elif op == 6:
            other = rng.choice(self.pool)
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
        elif op == 7 and buf:
            end = min(len(buf), pos + rng.randrange(1, 64))
            buf[pos:pos] = buf[pos:end] * rng.choice((1, 2, 16))
        elif op == 8:
            del buf[pos:]
        elif op == 9 and buf:
            i = min(pos, len(buf) - 1)
            buf[i] = (buf[i] + rng.choice((1, -1, 16, -16))) & 0xFF
        elif op == 10 and len(buf) > 1:
            a, b = sorted(rng.sample(range(len(buf)), 2))
            buf[a:b] = bytes(reversed(buf[a:b]))
        elif op == 11:
            # one token many times: deep nesting, long runs, huge counts
            buf[pos:pos] = rng.choice(self.words or [b"["])[:4] * rng.choice((100, 1000, 5000))
        else:
            buf[pos:pos] = rng.choice(self.INTERESTING)


def fuzz(target: Target, count: int, seed: int, seconds: float | None,
         crash_dir: Path | None) -> Tally:
    """Run ``count`` inputs (or until ``seconds`` pass) through one target."""
    rng = random.Random(seed)
    tally = Tally(target.name)
    started = time.monotonic()
    deadline = started + seconds if seconds else None
    mutator = Mutator(target, rng)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    for n, data in enumerate(mutator.inputs()):
        if n >= count or (deadline is not None and n % 256 == 0
                          and time.monotonic() > deadline):
            break
        execute(target, data, tally, crash_dir)
    tally.seconds = time.monotonic() - started
    return tally
