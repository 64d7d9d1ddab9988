"""Drop-in checks against Debian's real ocserv 1.1.6, run when it is installed.

An admin moving between ocserv and OCGate keeps the password file and the occtl scripts:
both servers read each other's ocpasswd files, and occtl -j prints the same keys.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.e2e.harness import Client, Server, make_server_files, server_command

pytestmark = pytest.mark.skipif(
    shutil.which("ocserv") is None or shutil.which("ocpasswd") is None
    or shutil.which("occtl") is None, reason="Debian's ocserv/ocpasswd/occtl are not installed")

KINDS = ("ocserv", "ocgate")
COMMANDS = {kind: server_command(kind) for kind in KINDS}


def _write_with(tool: str, path, user: str, password: str) -> None:
    argv = (["ocpasswd"] if tool == "ocserv"
            else [sys.executable, "-m", "appliance.vpn.ocpasswd"]) + ["-c", str(path), user]
    subprocess.run(argv, input=password + "\n", text=True, check=True, capture_output=True)


@pytest.mark.parametrize(("tool", "server_kind"), [("ocgate", "ocserv"), ("ocserv", "ocgate")])
def test_password_files_cross_over(net, workdir, tool, server_kind):
    files = make_server_files(workdir / f"{tool}-{server_kind}", net, users={"seed": "seed-pw"})
    files.passwd.unlink()
    _write_with(tool, files.passwd, "carol", "carol-cross-pw")
    server = Server(net, files, COMMANDS[server_kind]).start()
    client = Client(net, files)
    try:
        assert client.connect("carol", "carol-cross-pw"), client.log[-2000:]
    finally:
        client.close()
        server.stop()


def _keys(server: Server, *cmd: str) -> list[str]:
    data = json.loads(server.occtl("-j", *cmd).stdout)
    rows = data if isinstance(data, list) else [data]
    return sorted({k for row in rows for k in row})


def test_occtl_json_keys_match_ocserv(net, workdir):
    keys: dict[str, dict[str, list[str]]] = {}
    for kind in KINDS:
        files = make_server_files(workdir / kind, net, users={"alice": "alice-compat-pw"})
        server = Server(net, files, COMMANDS[kind]).start()
        client = Client(net, files)
        try:
            assert client.connect("alice", "alice-compat-pw")
            keys[kind] = {" ".join(cmd): _keys(server, *cmd)
                          for cmd in (("show", "users"), ("show", "user", "alice"),
                                      ("show", "status"))}
        finally:
            client.close()
            server.stop()
    for cmd, ocserv_keys in keys["ocserv"].items():
        missing = set(ocserv_keys) - set(keys["ocgate"][cmd])
        # ocserv omits empty strings; we may have values where it has none, never the reverse
        assert not missing, f"occtl -j {cmd}: keys ocserv prints and we do not: {missing}"
