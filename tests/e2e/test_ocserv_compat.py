"""Drop-in checks against Debian's real ocserv 1.1.6, run when it is installed.

An admin moving between ocserv and OCGate keeps the password file and the occtl scripts:
both servers read each other's ocpasswd files, and occtl -j prints the same keys.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.prereqs import needs_command
from tests.support.harness import Client, Server, make_server_files, server_command

pytestmark = [needs_command(tool, "ocserv") for tool in ("ocserv", "ocpasswd", "occtl")]

KINDS = ("ocserv", "ocgate")
COMMANDS = {kind: server_command(kind) for kind in KINDS}


def _write_with(tool: str, path, user: str, password: str) -> None:
    argv = (["ocpasswd"] if tool == "ocserv"
            else [sys.executable, "-m", "appliance.vpn.ocpasswd"]) + ["-c", str(path), user]
    subprocess.run(argv, input=password + "\n", text=True, check=True, capture_output=True)


@pytest.mark.parametrize(("tool", "server_kind"), [("ocgate", "ocserv"), ("ocserv", "ocgate")])
def test_password_files_cross_over(net, workdir, tool, server_kind):
    files = make_server_files(workdir / f"{tool}-{server_kind}", net, users={"seed": "seed-pw"},
                              compression=True)
    files.passwd.unlink()
    _write_with(tool, files.passwd, "carol", "carol-cross-pw")
    server = Server(net, files, COMMANDS[server_kind]).start()
    client = Client(net, files)
    try:
        assert client.connect("carol", "carol-cross-pw"), client.log[-2000:]
    finally:
        client.close()
        server.stop()


# compression on, so the per-user compression keys exist; bans on, so the status counts one
COMPAT_CONF = ("ban-time = 300", "ban-reset-time = 600")
COMPRESSION_KEYS = ("CSTP compression", "DTLS compression")


def _occtl_json(server: Server, *cmd: str) -> list[dict]:
    data = json.loads(server.occtl("-j", *cmd).stdout)
    return data if isinstance(data, list) else [data]


def test_occtl_json_keys_match_ocserv(net, workdir):
    keys: dict[str, dict[str, list[str]]] = {}
    compression: dict[str, list[tuple[str, str]]] = {}
    banned: dict[str, list[str]] = {}
    intruder_link = net.add_client()  # its own address: only it gets banned
    for kind in KINDS:
        files = make_server_files(workdir / kind, net, users={"alice": "alice-compat-pw"},
                                  compression=True, extra_conf=COMPAT_CONF)
        # replace the harness's "bans off" rather than repeat the option after it
        files.conf.write_text(files.conf.read_text().replace("max-ban-score = 0\n",
                                                             "max-ban-score = 30\n"))
        server = Server(net, files, COMMANDS[kind]).start()
        client = Client(net, files)
        intruder = Client(net, files, link=intruder_link, name="intruder")
        try:
            # 3 x (10 for the password + 1 for the connection) >= 30: the address is banned
            for _ in range(3):
                assert intruder.authenticate("alice", "wrong-compat-pw",
                                             check=False).get("COOKIE") is None
            assert client.connect("alice", "alice-compat-pw", no_dtls=False,
                                  extra_args=["--compression=all"])
            keys[kind] = {" ".join(cmd): sorted({k for row in _occtl_json(server, *cmd)
                                                 for k in row})
                          for cmd in (("show", "users"), ("show", "user", "alice"),
                                      ("show", "status"))}
            compression[kind] = [tuple(row.get(k, "") for k in COMPRESSION_KEYS)
                                 for cmd in (("show", "users"), ("show", "user", "alice"))
                                 for row in _occtl_json(server, *cmd)]
            text = server.occtl("show", "user", "alice").stdout
            compression[kind].append(tuple(
                (re.search(rf"{k}: (\S+)", text) or [None, ""])[1] for k in COMPRESSION_KEYS))
            banned[kind] = [len(_occtl_json(server, "show", "ip", "bans"))]
            banned[kind] += [row.get("IPs in ban list", "")
                            for row in _occtl_json(server, "show", "status")]
            banned[kind].append((re.search(r"IPs in ban list: (\d+)",
                                           server.occtl("show", "status").stdout) or [None, ""])[1])
        finally:
            intruder.close()
            client.close()
            server.stop()
    for cmd, ocserv_keys in keys["ocserv"].items():
        missing = set(ocserv_keys) - set(keys["ocgate"][cmd])
        # ocserv omits empty strings; we may have values where it has none, never the reverse
        assert not missing, f"occtl -j {cmd}: keys ocserv prints and we do not: {missing}"
    assert compression["ocserv"][0] != ("", ""), compression  # really negotiated
    assert compression["ocgate"] == compression["ocserv"]
    # both list the intruder's address as banned; ocserv 1.1.6's status then still says
    # "IPs in ban list: 0" (a figure it does not keep current): we count what it lists
    assert banned["ocserv"][0] == 1, banned
    assert [str(v) for v in banned["ocgate"]] == ["1", "1", "1"], banned


# ocserv 1.1.6 says "Session-Timeout: 0" plus "-Remaining: 0" when there is no limit;
# later releases (and we) say "none" without -Remaining (docs/protocol.md §3.3, §11 item 35)
OCSERV_116_ONLY = {"X-CSTP-Session-Timeout-Remaining"}
_HEADER_LINE = re.compile(r"^[A-Za-z0-9-]+: ")
ANYCONNECT_ARGS = ("--useragent", "AnyConnect Windows 4.10.07061", "--os", "win",
                   "--dump-http-traffic")


def _reply_header_names(log: str) -> dict[str, set[str]]:
    """Header names of the auth ``complete`` reply and the CONNECT reply as ``openconnect
    -v --dump-http-traffic`` prints them: the status after "Got … response:", then one
    ``Name: value`` line per header."""
    replies: list[tuple[str, list[str]]] = []
    in_head = False
    for line in log.splitlines():
        if line.startswith(("Got HTTP response: ", "Got CONNECT response: ")):
            replies.append((line.split(": ", 1)[1], []))
            in_head = True
        elif in_head and _HEADER_LINE.match(line):
            replies[-1][1].append(line)
        else:
            in_head = False
    found: dict[str, set[str]] = {}
    for status, headers in replies:
        names = {h.split(":", 1)[0] for h in headers}
        if status.startswith("HTTP/1.1 200 CONNECTED"):
            found["connect"] = names
        elif any(h.startswith("Set-Cookie: webvpn=") for h in headers):
            found["auth"] = names
    return found


def test_anyconnect_reply_headers_match_ocserv(net, workdir):
    """The same AnyConnect-flavoured login against ocserv and OCGate: the auth reply and the
    CONNECT reply carry the same set of header names (values differ by nature)."""
    seen: dict[str, dict[str, set[str]]] = {}
    for kind in KINDS:
        files = make_server_files(workdir / f"ac-{kind}", net, users={"alice": "alice-ac-pw"},
                                  compression=True)
        server = Server(net, files, COMMANDS[kind]).start()
        client = Client(net, files, name=f"ac-{kind}")
        try:
            assert client.connect("alice", "alice-ac-pw", extra_args=ANYCONNECT_ARGS), \
                client.log[-2000:]
            seen[kind] = _reply_header_names(client.log)
        except BaseException:
            print(f"\n[e2e] {kind} log:\n{server.log[-4000:]}")
            raise
        finally:
            client.close()
            server.stop()
    for what in ("auth", "connect"):
        assert what in seen["ocserv"] and what in seen["ocgate"], seen
        only_ocserv = seen["ocserv"][what] - seen["ocgate"][what] - OCSERV_116_ONLY
        only_ocgate = seen["ocgate"][what] - seen["ocserv"][what]
        assert not only_ocserv and not only_ocgate, (what, only_ocserv, only_ocgate)
