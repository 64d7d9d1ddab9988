"""Issue #4: the server's private key lives only in the security module.

We read a live worker's whole memory (/proc/PID/mem over its maps) while a real client is
connected and look for the key in every form it could take there: the PEM text, the DER
encodings and the raw private scalar in both byte orders (OpenSSL keeps big numbers as
little-endian machine words). The same search in the security module must find it, which
proves the search itself works.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess

import psutil
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from appliance import pki


def _needles(key_path) -> dict[str, bytes]:
    pem = key_path.read_bytes()
    key = pki.load_key(key_path)
    der8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    der1 = key.private_bytes(serialization.Encoding.DER,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        secret = key.private_numbers().private_value
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        secret = key.private_numbers().d
    raw = secret.to_bytes((secret.bit_length() + 7) // 8, "big")
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    return {
        "pem-body": body[:48],
        "der-pkcs8": der8,
        "der-traditional": der1,
        "scalar-be": raw,
        "scalar-le": raw[::-1],
        "scalar-b64": base64.b64encode(raw)[:24],
    }


def _memory(pid: int) -> bytes:
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if "r" not in perms or line.rstrip().endswith(("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in addr.split("-"))
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, ValueError):
                continue
    return b"".join(chunks)


def _found(pid: int, needles: dict[str, bytes]) -> list[str]:
    memory = _memory(pid)
    return [name for name, needle in needles.items() if needle in memory]


def test_private_key_only_in_the_security_module(server, make_client, users):
    client = make_client()
    assert client.connect("alice", users["alice"], no_dtls=False)
    assert client.wait_dtls()
    status = json.loads(server.occtl("-j", "show", "status").stdout)
    worker = json.loads(server.occtl("-j", "show", "users").stdout)[0]["ID"]
    main_pid, secmod_pid = status["Server PID"], status["Sec-mod PID"]
    needles = _needles(server.files.key)
    assert _found(secmod_pid, needles), "the search must find the key where it is"
    assert _found(worker, needles) == [], "key material in a worker's memory"
    assert _found(main_pid, needles) == [], "key material in main (workers fork from it)"
    if "appliance.vpn" in server.template:  # ours: the zygote forks the workers
        zygotes = [p.pid for p in psutil.Process(main_pid).children()
                   if p.name() == "ocgate-zygote"]
        assert len(zygotes) == 1, zygotes
        assert _found(zygotes[0], needles) == [], "key material in the zygote"
    uid = re.search(r"^Uid:\s+(\d+)", open(f"/proc/{worker}/status").read(), re.M).group(1)
    assert uid != "0"
    user = subprocess.run(["id", "-nu", uid], capture_output=True, text=True).stdout.strip()
    denied = subprocess.run(["runuser", "-u", user, "--", "cat", str(server.files.key)],
                            capture_output=True)
    assert denied.returncode != 0 and b"BEGIN" not in denied.stdout


@pytest.fixture
def users() -> dict[str, str]:
    return {"alice": "alice-key-isolation-pw"}
