"""Long fuzz run of the packet decompressors: ``python3 -m bench.fuzz_codecs --count N``.

Feeds each decompressor (``lzs``, ``oc-lz4``; protocol.md §6.3, §6.4) N inputs drawn
from a mix of

* random byte strings (0..2 KiB),
* mutations of valid compressed packets (bit flips, byte overwrites, truncation,
  extension, insertion, deletion, splicing two packets, duplicated chunks),
* synthetic token streams built from the codec's grammar with random fields (so the
  deep paths, long length extensions and bad offsets, are reached often),
* unmodified valid packets (their round trip is checked),

with output capacities from 0 to 64 KiB, and checks the contract: either bytes of at
most ``max_out`` come back (the original packet for unmodified input), or the module's
own error (``LzsError`` / ``Lz4Error``).  Anything else is an *escape* and is
reported with the input.  The slowest single call (in CPU time, so that a busy
machine does not produce false alarms) is reported too, and a call over 0.5 s counts
as an escape: a guard against inputs that make a decoder loop far longer than its
input warrants.

Hostile input only reaches the decoder over an authenticated TLS/DTLS session, but a
crash there would still take the session's worker down; hence the long run.
Work is split over ``--jobs`` processes with independent seeds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lz4.block

from appliance.vpn.protocol import lz4 as oclz4
from appliance.vpn.protocol import lzs

CODECS: dict[str, tuple[Callable[[bytes, int], bytes], type[ValueError]]] = {
    "lzs": (lzs.decompress, lzs.LzsError),
    "oc-lz4": (oclz4.decompress, oclz4.Lz4Error),
}
_WORDS = [b"the ", b"GET /", b"HTTP/1.1\r\n", b"Host: ", b"<div>", b"</div>", b"\x00\x00\x00",
          b"\xff\xff", b"aaaaaaaa", b"0123456789", b"\r\n", b"json", b'{"k": ', b"}, "]
_CAPACITIES = (0, 1, 2, 8, 64, 1400, 1500, 2048, 16384, 65536)
_SLOW_CALL_S = 0.5


@dataclass
class Report:
    """Per-codec tallies; merged across worker processes."""

    codec: str
    count: int = 0
    ok: int = 0
    rejected: int = 0
    round_trips: int = 0
    escapes: list[str] = field(default_factory=list)
    slowest_s: float = 0.0
    seconds: float = 0.0

    def merge(self, other: Report) -> None:
        self.count += other.count
        self.ok += other.ok
        self.rejected += other.rejected
        self.round_trips += other.round_trips
        self.escapes.extend(other.escapes[: max(0, 20 - len(self.escapes))])
        self.slowest_s = max(self.slowest_s, other.slowest_s)
        self.seconds = max(self.seconds, other.seconds)


def _plaintext(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    size = rng.choice((rng.randrange(0, 64), rng.randrange(0, 1500), rng.randrange(0, 4096)))
    if kind == 0:
        return b"".join(rng.choice(_WORDS) for _ in range(size // 4 + 1))[:size]
    if kind == 1:
        return bytes(rng.choice(b"ab\x00") for _ in range(size))
    if kind == 2:
        return rng.randbytes(rng.randrange(1, 40)) * (size // 20 + 1)
    if kind == 3:
        return rng.randbytes(size)
    return bytes([rng.randrange(256)]) * size


def _compress(codec: str, data: bytes) -> bytes:
    if codec == "lzs":
        return lzs.encode(data)
    return lz4.block.compress(data, store_size=False)


def _corpus(codec: str, rng: random.Random, size: int = 300) -> list[tuple[bytes, bytes]]:
    plains = [_plaintext(rng) for _ in range(size)]
    return [(plain, _compress(codec, plain)) for plain in plains]


def _mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 2:
            del buf[pos:]
        elif op == 3:
            buf += rng.randbytes(rng.randrange(1, 16))
        elif op == 4:
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 8))
        elif op == 5:
            del buf[pos : pos + rng.randrange(1, 16)]
        elif op == 6:
            buf = buf[:pos] + other[rng.randrange(len(other) + 1) :]
        else:
            end = min(len(buf), pos + rng.randrange(1, 64))
            buf[pos:pos] = buf[pos:end]
    return bytes(buf)


def _lzs_tokens(rng: random.Random) -> bytes:
    """A random token sequence in LZS syntax, mostly plausible, sometimes not."""
    bits: list[str] = []
    produced = 0
    for _ in range(rng.randrange(0, 60)):
        kind = rng.random()
        if kind < 0.4:
            bits.append("0" + format(rng.randrange(256), "08b"))
            produced += 1
            continue
        plausible = rng.random() < 0.9 and produced
        offset = rng.randrange(1, produced + 1) if plausible else rng.randrange(0, 2048)
        offset = min(offset, 2047)
        if offset < 128 and rng.random() < 0.7:
            bits.append("11" + format(offset, "07b"))
        else:
            bits.append("10" + format(offset, "011b"))
        length = rng.choice((2, 3, 4, 5, 6, 7, 8, rng.randrange(8, 300), rng.randrange(8, 70000)))
        if length < 5:
            bits.append(format(length - 2, "02b"))
        elif length < 8:
            bits.append("11" + format(length - 5, "02b"))
        else:
            groups, last = divmod(length - 8, 15)
            bits.append("1111" + "1111" * groups + format(last, "04b"))
        produced += length
    if rng.random() < 0.9:
        bits.append("110000000")
    text = "".join(bits)
    text += "".join(rng.choice("01") for _ in range(-len(text) % 8))
    return int(text, 2).to_bytes(len(text) // 8, "big") if text else b""


def _lz4_sequences(rng: random.Random) -> bytes:
    """A random LZ4 block built from sequences with random lengths and offsets."""
    out = bytearray()
    produced = 0
    for _ in range(rng.randrange(0, 12)):
        lits = rng.choice((0, 1, 4, 15, rng.randrange(0, 600)))
        mlen = rng.choice((4, 5, 18, 19, rng.randrange(4, 3000)))
        token = (min(lits, 15) << 4) | min(mlen - 4, 15)
        out.append(token)
        if lits >= 15:
            rest = lits - 15
            out += b"\xff" * (rest // 255) + bytes([rest % 255])
        out += rng.randbytes(lits)
        produced += lits
        offset = rng.randrange(1, produced + 1) if produced and rng.random() < 0.9 else (
            rng.randrange(0, 65536))
        out += offset.to_bytes(2, "little")
        if mlen - 4 >= 15:
            rest = mlen - 19
            out += b"\xff" * (rest // 255) + bytes([rest % 255])
        produced += mlen
    lits = rng.randrange(0, 20)
    out.append(min(lits, 15) << 4)
    if lits >= 15:
        out.append(lits - 15)
    out += rng.randbytes(lits)
    return bytes(out)


def _inputs(codec: str, rng: random.Random, corpus: list[tuple[bytes, bytes]]):
    """Yield (input, max_out, expected plain or None) forever."""
    synthetic = _lzs_tokens if codec == "lzs" else _lz4_sequences
    while True:
        roll = rng.random()
        if roll < 0.25:
            yield rng.randbytes(rng.randrange(0, 2048)), rng.choice(_CAPACITIES), None
        elif roll < 0.70:
            plain, packed = rng.choice(corpus)
            other = rng.choice(corpus)[1]
            yield _mutate(rng, packed, other), rng.choice(_CAPACITIES), None
        elif roll < 0.97:
            yield synthetic(rng), rng.choice(_CAPACITIES), None
        else:
            plain, packed = rng.choice(corpus)
            yield packed, max(len(plain), rng.choice(_CAPACITIES)), plain


def run(codec: str, count: int, seed: int) -> Report:
    """Fuzz one decompressor ``count`` times; every call is checked, none may escape."""
    decompress, error = CODECS[codec]
    rng = random.Random(seed)
    corpus = _corpus(codec, rng)
    report = Report(codec)
    started = time.perf_counter()
    feed = _inputs(codec, rng, corpus)
    for _ in range(count):
        data, max_out, expected = next(feed)
        t0 = time.process_time()  # CPU time: wall time also counts other loads' stalls
        try:
            out = decompress(data, max_out)
        except error:
            report.rejected += 1
            out = None
        except Exception as exc:  # the point: catch whatever escapes
            report.escapes.append(f"{type(exc).__name__}: {exc} max_out={max_out} "
                                  f"input={data[:64].hex()}")
            out = None
        spent = time.process_time() - t0
        report.slowest_s = max(report.slowest_s, spent)
        if spent > _SLOW_CALL_S:
            report.escapes.append(f"slow call {spent:.2f}s max_out={max_out} "
                                  f"len={len(data)} input={data[:64].hex()}")
        report.count += 1
        if out is not None:
            report.ok += 1
            if not isinstance(out, bytes) or len(out) > max_out:
                report.escapes.append(f"bad output {type(out).__name__} len={len(out)} "
                                      f"max_out={max_out} input={data[:64].hex()}")
        if expected is not None:
            report.round_trips += 1
            if out != expected:
                report.escapes.append(f"round trip failed len={len(expected)} "
                                      f"input={data[:64].hex()}")
    report.seconds = time.perf_counter() - started
    return report


def _run_args(args: tuple[str, int, int]) -> Report:
    return run(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs per decompressor")
    parser.add_argument("--codec", choices=[*CODECS, "all"], default="all")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    args = parser.parse_args(argv)
    codecs = list(CODECS) if args.codec == "all" else [args.codec]
    jobs = max(1, args.jobs)
    failed = False
    print(f"seed={args.seed} jobs={jobs} count={args.count} per codec")
    for codec in codecs:
        shares = [args.count // jobs + (k < args.count % jobs) for k in range(jobs)]
        tasks = [(codec, share, args.seed * 1000 + k) for k, share in enumerate(shares) if share]
        wall = time.perf_counter()
        if jobs == 1:
            parts = [_run_args(task) for task in tasks]
        else:
            with multiprocessing.Pool(len(tasks)) as pool:
                parts = pool.map(_run_args, tasks)
        wall = time.perf_counter() - wall
        total = Report(codec)
        for part in parts:
            total.merge(part)
        print(f"{codec}: {total.count} inputs in {wall:.1f}s wall "
              f"({wall / max(total.count, 1) * 1e6 * jobs:.1f} us/input/process), "
              f"{total.ok} decoded, {total.rejected} rejected, "
              f"{total.round_trips} round trips, slowest call {total.slowest_s * 1e3:.1f} ms, "
              f"escapes: {len(total.escapes)}")
        for line in total.escapes:
            print("  ESCAPE", line)
        failed = failed or bool(total.escapes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
