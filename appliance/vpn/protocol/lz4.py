"""The "oc-lz4" packet compression: one raw LZ4 block per packet (docs/protocol.md §6.4).

Sans-IO.  The payload is exactly what ``LZ4_compress_default`` produces and
``LZ4_decompress_safe`` consumes: no frame header, no size prefix, no checksum.  The
``lz4`` package's block API does the work in C:

* ``lz4.block.compress(data, store_size=False)`` gives the bare block;
* ``lz4.block.decompress(data, uncompressed_size=N)`` (python-lz4 >= 2.1, checked
  with 4.4.5) treats N as the capacity of the output buffer: a block that decodes to
  fewer bytes is returned as is, one that needs more raises ``LZ4BlockError``, just
  like ``LZ4_decompress_safe`` with ``dstCapacity = N``.  It allocates N bytes up
  front, so N must stay a sane packet-buffer size.

Both peers cap the compressor's output at the input length so that expanding packets
fail and go plain; ``compress`` returns None in that case.
"""

from __future__ import annotations

import lz4.block

__all__ = ["MAX_OUT_LIMIT", "Lz4Error", "compress", "decompress"]

#: Refuse output capacities above this: the decoder allocates the whole buffer first.
MAX_OUT_LIMIT = 1 << 20


class Lz4Error(ValueError):
    """The LZ4 block is malformed or decodes to more than the allowed size."""


def compress(data: bytes, max_out: int | None = None) -> bytes | None:
    """Compress one packet as a bare LZ4 block; None when it would not be smaller.

    ``max_out`` additionally caps the output size.  The C peers call
    ``LZ4_compress_default`` with the capacity set to the input length, which yields
    the same block when it fits; its fit test is slightly conservative, so a packet
    that shrinks by only a few bytes may go compressed here and plain there.  Either
    is valid on the wire.
    """
    if not data:
        return None
    block = lz4.block.compress(data, store_size=False)
    limit = len(data) - 1 if max_out is None else min(len(data) - 1, max_out)
    return block if len(block) <= limit else None


def decompress(data: bytes, max_out: int) -> bytes:
    """Decode one bare LZ4 block of at most ``max_out`` bytes, else raise ``Lz4Error``."""
    if not 0 <= max_out <= MAX_OUT_LIMIT:
        raise ValueError(f"max_out must be within 0..{MAX_OUT_LIMIT}, got {max_out}")
    if not data:
        raise Lz4Error("empty LZ4 block")
    try:
        return lz4.block.decompress(data, uncompressed_size=max_out)
    except lz4.block.LZ4BlockError as exc:
        raise Lz4Error(f"malformed LZ4 block or output over {max_out} bytes: {exc}") from exc
