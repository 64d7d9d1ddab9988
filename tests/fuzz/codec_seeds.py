"""Structured seeds for the decompressor targets: random but mostly well-formed LZS token
streams and LZ4 sequences, which reach the back-reference paths that random bytes rarely
do (the first bytes of a random input are almost never a valid token)."""

from __future__ import annotations

import random


def lzs_tokens(rng: random.Random) -> bytes:
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


def lz4_sequences(rng: random.Random) -> bytes:
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
