"""Crashes the fuzzers found (tests/fuzz, docs/fuzzing.md), each pinned to its module's own
exception.  The raw inputs also live in tests/fuzz/regressions/ and are replayed through
the fuzz targets by test_fuzz_bounded.py."""

from __future__ import annotations

import io
import tarfile

import pytest

from appliance.vpn import ipc
from appliance.webui import backup


def test_ipc_decode_deeply_nested_json_is_an_ipc_error() -> None:
    # json.loads raised RecursionError, which escaped decode() and killed the reader
    with pytest.raises(ipc.IpcError):
        ipc.decode(b'{"type":' + b"[" * 5000)
    with pytest.raises(ipc.IpcError):
        ipc.decode(b"[" * 60000)


def _archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(backup.PREFIX + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_backup_manifest_deeply_nested_json_is_a_backup_error() -> None:
    # the restore page answered 500 (RecursionError) instead of "not an OCGate backup"
    with pytest.raises(backup.BackupError, match="not JSON"):
        backup.read_archive(_archive({"manifest.json": b"[" * 20000}))


def test_anyconnect_group_url_not_utf8_is_an_anyconnect_error() -> None:
    from appliance.vpn.protocol import anyconnect

    # unquote(errors="strict") raised UnicodeDecodeError for a POST to https://server/%ff
    with pytest.raises(anyconnect.AnyConnectError):
        anyconnect.group_from_url("/%ff%fe", lambda path: False)
    assert anyconnect.group_from_url("/st%61ff", lambda path: False) == "staff"


def test_reach_form_with_a_broken_ipv6_url_is_a_form_error() -> None:
    # urlsplit raised "Invalid IPv6 URL" out of the reach form: the page answered 500
    from appliance.firstboot.reachform import parse_reach_form

    got = parse_reach_form({"enabled": "on", "ddns": "duckdns", "name": "myvpn",
                            "token": "t", "ddns_url": "https://d[\x01.test"}, {})
    assert got.errors == ["'https://d[\x01.test' is not an http(s) address."]
