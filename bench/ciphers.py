"""How fast our DTLS record layer seals and opens with each AEAD, with and without AES-NI.

The Raspberry Pi 4 has no AES instructions; we cannot run on one here, but OpenSSL can be
told to ignore AES-NI (``OPENSSL_ia32cap``), which puts AES-GCM on the same software path a
Pi 4 takes. The ratio between the two AEADs, not the absolute figure, is what carries over
to ARM (docs/tuning.md). Each configuration runs in a fresh interpreter because OpenSSL
reads the capability mask once, at start-up.

    python3 -m bench.ciphers [--seconds 2] [--size 1400]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from appliance.vpn.protocol.dtls.record import DtlsKeys, DtlsRecordLayer
from appliance.vpn.protocol.tls.record import cipher_info

SUITES = ("AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305")
NO_AESNI = "~0x200000200000000"  # AES-NI and PCLMULQDQ (GHASH) hidden from OpenSSL
BATCH = 64


def _layers(aead: str) -> tuple[DtlsRecordLayer, DtlsRecordLayer]:
    cipher = cipher_info(aead.replace("-", "_").replace("CHACHA20_POLY1305", "CHACHA20"))
    iv = b"\x01" * cipher.iv_len12
    key = b"\x02" * cipher.key_len
    keys = DtlsKeys(cipher, key, iv, key, iv)
    return DtlsRecordLayer(keys), DtlsRecordLayer(keys)


def measure(aead: str, size: int, seconds: float) -> dict[str, float]:
    """MB/s of plaintext sealed, and of records opened, in batches like the data path."""
    sealer, opener = _layers(aead)
    chunks = [os.urandom(size)] * BATCH
    records = sealer.seal_many(chunks)
    sealed = opened = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        sealer.seal_many(chunks)
        sealed += BATCH
    seal_s = time.perf_counter() - start
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        opener.window = type(opener.window)(64)  # replays are dropped: re-open the same batch
        for record in records:
            opener.open(record)
        opened += BATCH
    open_s = time.perf_counter() - start
    return {"seal_mb_s": sealed * size / seal_s / 1e6, "open_mb_s": opened * size / open_s / 1e6}


def _child(size: int, seconds: float) -> None:
    print(json.dumps({aead: measure(aead, size, seconds) for aead in SUITES}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=1400)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.size, args.seconds)
        return
    rows = {}
    for label, mask in (("AES-NI", None), ("no AES-NI", NO_AESNI)):
        env = {k: v for k, v in os.environ.items() if k != "OPENSSL_ia32cap"}
        if mask:
            env["OPENSSL_ia32cap"] = mask
        out = subprocess.run([sys.executable, "-m", "bench.ciphers", "--child", "--seconds",
                              str(args.seconds), "--size", str(args.size)],
                             env=env, capture_output=True, text=True, check=True).stdout
        rows[label] = json.loads(out)
    print(f"DTLS record layer, {args.size}-byte packets, batches of {BATCH} (MB/s, one core)")
    print(f"{'CPU':<10} {'AEAD':<18} {'seal':>8} {'open':>8}")
    for label, results in rows.items():
        for aead, figures in results.items():
            print(f"{label:<10} {aead:<18} {figures['seal_mb_s']:8.0f} {figures['open_mb_s']:8.0f}")


if __name__ == "__main__":
    main()
