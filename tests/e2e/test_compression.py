"""Issue #9 end to end: oc-lz4 and LZS negotiated with the real openconnect, both channels.

openconnect offers ``oc-lz4,lzs`` on CSTP and DTLS; our server picks by ocserv's
priorities (oc-lz4 first) unless ``compression-algo-priority`` says otherwise. Every test
moves compressible data both ways and checks the checksum and that packets really went
compressed in both directions (the server's disconnect log line counts them).
"""

from __future__ import annotations

import re

import pytest

from tests.support.harness import transfer


def _compressed_counts(log: str, user: str) -> tuple[int, int]:
    found = re.findall(rf"'{user}' disconnected .*compressed packets rx (\d+) tx (\d+)", log)
    assert found, f"no disconnect line for {user}"
    rx, tx = found[-1]
    return int(rx), int(tx)


def _run(server, make_client, users, user, *, dtls: bool, nbytes: int, expect: str) -> None:
    client = make_client()
    assert client.connect(user, users[user], no_dtls=not dtls,
                          extra_args=["--compression=all"])
    headers = client.cstp_headers()
    assert headers.get("X-CSTP-Content-Encoding") == expect
    if dtls:
        assert client.wait_dtls()
        # the vpnc environment has only the X-CSTP-* headers; openconnect logs the DTLS one
        name = {"oc-lz4": "LZ4", "lzs": "LZS"}[expect]
        assert f"DTLS connection compression using {name}" in client.log
    for direction in ("up", "down"):
        result = transfer(client.net, nbytes, direction, text=True)
        assert result.sha_sent == result.sha_received
    client.disconnect()
    server.assert_running()
    rx, tx = _compressed_counts(server.log, user)
    assert rx > 0 and tx > 0, f"compressed packets rx {rx} tx {tx}"
    assert "Traceback" not in server.log


@pytest.fixture
def extra_conf(request) -> list[str]:
    return ["compression = true", *getattr(request, "param", [])]


def test_lz4_over_dtls_and_tls(server, make_client, users):
    _run(server, make_client, users, "alice", dtls=True, nbytes=10_000_000, expect="oc-lz4")
    _run(server, make_client, users, "bob", dtls=False, nbytes=10_000_000, expect="oc-lz4")


@pytest.mark.parametrize("extra_conf", [["compression-algo-priority = lzs:95"]],
                         indirect=True)
def test_lzs_when_preferred(server, make_client, users):
    # pure-Python LZS costs ~0.3-0.7 ms a text packet: keep the transfer small
    _run(server, make_client, users, "alice", dtls=True, nbytes=1_000_000, expect="lzs")
    _run(server, make_client, users, "bob", dtls=False, nbytes=1_000_000, expect="lzs")


def test_off_by_default_negotiates_nothing(net, workdir, users, make_client):
    from tests.support.harness import Server, make_server_files
    files = make_server_files(workdir / "plain", net, users=users)
    srv = Server(net, files).start()
    try:
        client = make_client()
        client.files = files
        assert client.connect("alice", users["alice"], extra_args=["--compression=all"])
        assert "X-CSTP-Content-Encoding" not in client.cstp_headers()
    finally:
        srv.stop()
