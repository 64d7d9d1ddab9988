"""AnyConnect / Secure Client behaviour end to end (docs/protocol.md §2.4.4, §2.6, §2.9, §7.6,
§11 items 21-27): the user-profile download, logout, BYE 0x91 versus 0xb0 and the
certificate rule on CONNECT with and without cisco-client-compat.

openconnect plays AnyConnect (``--useragent "AnyConnect Windows …" --os win``) where that
is enough; what openconnect cannot be made to do (CONNECT without the certificate it
authenticated with, a BYE with reason 0x91) is done by a small raw TLS client this module
runs inside the client namespace (``python3 -m tests.e2e.test_anyconnect raw SPEC``).
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support import harness
from tests.support.harness import Client, Server, ServerFiles
from tests.support.netns import TestNet

ANYCONNECT_UA = "AnyConnect Windows 4.10.07061"
AC_ARGS = ["--useragent", ANYCONNECT_UA, "--os", "win"]
UID_OID = "0.9.2342.19200300.100.1.1"
PROFILE = (b'<?xml version="1.0" encoding="UTF-8"?>\n<AnyConnectProfile>\n<ServerList>\n'
           b"<HostEntry><HostName>OCGate e2e</HostName><HostAddress>vpn.e2e.test"
           b"</HostAddress></HostEntry>\n</ServerList>\n</AnyConnectProfile>\n")


# ---------------------------------------------------------------- the raw TLS client


def _read_response(tls: ssl.SSLSocket) -> tuple[int, list[str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    names = [line.split(":", 1)[0] for line in lines[1:] if ":" in line]
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), 0)
    while len(body) < length:
        chunk = tls.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, names, body[:length]


def _raw_main(spec: dict) -> list[dict]:
    """Run ``spec["steps"]`` (one HTTP request each) on one TLS connection; a step with
    ``bye`` sends that CSTP BYE (reason byte, hex) after a successful CONNECT."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if spec.get("cert"):
        ctx.load_cert_chain(spec["cert"], spec["key"])
    results: list[dict] = []
    with socket.create_connection((spec["host"], 443), timeout=20) as raw, \
            ctx.wrap_socket(raw) as tls:
        for step in spec["steps"]:
            body = step.get("body", "").encode()
            head = [f"{step['request']} HTTP/1.1", f"Host: {spec['host']}",
                    f"User-Agent: {ANYCONNECT_UA}"]
            if step.get("cookie"):
                head.append(f"Cookie: webvpn={step['cookie']}")
            if body:
                head += ["Content-Type: text/xml", f"Content-Length: {len(body)}"]
            tls.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            status, names, data = _read_response(tls)
            results.append({"status": status, "headers": names,
                            "body": data.decode("latin-1")})
            if status == 200 and step.get("bye") is not None:
                payload = bytes.fromhex(step["bye"])
                tls.sendall(b"STF\x01" + struct.pack(">H", len(payload)) + b"\x05\x00"
                            + payload)
                time.sleep(0.3)
            if status != 200 or step["request"].startswith("CONNECT"):
                break
    return results


def raw(net: TestNet, steps: Sequence[dict], cert: tuple[Path, Path] | None = None) -> list[dict]:
    """The raw client in the primary client namespace; its results, one per step."""
    spec = {"host": net.primary.server_ip, "steps": list(steps)}
    if cert is not None:
        spec["cert"], spec["key"] = str(cert[0]), str(cert[1])
    proc = net.primary.ns.run([sys.executable, "-m", "tests.e2e.test_anyconnect", "raw",
                               json.dumps(spec)], cwd=str(harness.REPO_ROOT), timeout=40)
    return json.loads(proc.stdout)


def webvpn(auth: dict[str, str]) -> str:
    """The session cookie from ``--authenticate`` output (``--os win`` adds a STRAP key)."""
    for item in auth["COOKIE"].split(";"):
        name, _, value = item.strip().partition("=")
        if name == "webvpn":
            return value
    raise AssertionError(f"no webvpn cookie in {auth['COOKIE']!r}")


def connect_step(cookie: str, bye: str | None = None) -> dict:
    return {"request": "CONNECT /CSCOSSLC/tunnel", "cookie": cookie, "bye": bye}


def connect_status(net: TestNet, cookie: str, cert: tuple[Path, Path] | None = None,
                   bye: str | None = None) -> int:
    return raw(net, [connect_step(cookie, bye)], cert)[0]["status"]


def settle(net: TestNet, cookie: str, want: int, cert: tuple[Path, Path] | None = None,
           timeout: float = 10.0) -> int:
    """CONNECT until the answer is ``want``: the server tears the previous connection down
    asynchronously, and a loaded machine may take a moment."""
    deadline = time.monotonic() + timeout
    while True:
        status = connect_status(net, cookie, cert)
        if status == want or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


# ---------------------------------------------------------------- rigs


def start(workdir: Path, net: TestNet, users: dict[str, str], *, drop: Sequence[str] = (),
          extra: Sequence[str] = (), kind: str | None = None) -> tuple[ServerFiles, Server]:
    """A server from the harness config minus lines starting with ``drop``, plus ``extra``."""
    files = harness.make_server_files(workdir, net, users=users)
    fill = {"ca": files.ca, "dir": workdir}
    lines = [line for line in files.conf_lines if not line.startswith(tuple(drop))]
    lines += [line.format(**fill) for line in extra]
    files.conf_lines = lines
    files.conf.write_text("\n".join(lines) + "\n")
    server = Server(net, files, harness.server_command(kind))
    server.start()
    return files, server


def client_cert(files: ServerFiles, username: str) -> tuple[Path, Path]:
    from appliance import pki

    ca_key, ca = pki.load_key(files.ca_key), pki.load_cert(files.ca)
    key, cert = pki.make_client_cert(ca_key, ca, username=username, days=2)
    directory = files.dir / "client-certs"
    directory.mkdir(mode=0o700, exist_ok=True)
    pair = directory / f"{username}-cert.pem", directory / f"{username}-key.pem"
    pki.write_cert(pair[0], cert)
    pki.write_key(pair[1], key)
    return pair


# ---------------------------------------------------------------- tests


def test_profile_endpoints_logout_and_bye(workdir: Path) -> None:
    """user-profile advertised and downloaded by openconnect -x, /profiles is
    cookie-protected, the helper URLs answer, logout kills the cookie, BYE 0x91 keeps it
    and BYE 0xb0 invalidates it (§2.4.4, §2.9, §7.6, §11 items 16, 21, 27)."""
    users = {"alice": "alice-ac-pw"}
    with TestNet() as net:
        profile = workdir / "profile.xml"
        profile.write_bytes(PROFILE)
        profile.chmod(0o644)
        files, server = start(workdir, net, users, extra=[f"user-profile = {profile}"])
        try:
            client = Client(net, files, name="ac")
            saved = workdir / "ac" / "saved-profile.xml"
            auth = client.authenticate("alice", users["alice"],
                                       extra_args=[*AC_ARGS, "-x", str(saved)])
            cookie = webvpn(auth)
            assert saved.read_bytes() == PROFILE, client.log

            got = raw(net, [{"request": "GET /profiles/profile.xml", "cookie": cookie},
                            {"request": "GET /VPNManifest.xml"},
                            {"request": "GET /+CSCOT+/translation-table?textdomain=AnyConnect"
                                        "&type=manifest"},
                            {"request": "GET /1/binaries/update.txt"}])
            assert [r["status"] for r in got] == [200, 200, 200, 200], got
            assert got[0]["body"].encode("latin-1") == PROFILE
            assert '<vpn rev="1.0">' in got[1]["body"] and got[3]["body"] == "0,0,0000\n"
            assert raw(net, [{"request": "GET /profiles/profile.xml"}])[0]["status"] == 401
            assert raw(net, [{"request": "GET /profiles/x", "cookie": "bm90LWEtY29va2ll"}]
                       )[0]["status"] == 401

            # BYE 0x91: AnyConnect is reconnecting; the cookie must survive (#732)
            assert connect_status(net, cookie, bye="91") == 200
            assert settle(net, cookie, 200) == 200
            # BYE 0xb0: the user disconnected; the cookie is gone
            assert connect_status(net, cookie, bye="b0") == 200
            assert settle(net, cookie, 401) == 401, harness.tail_lines(server.log)

            # AnyConnect's logout document with the session token
            second = client.authenticate("alice", users["alice"], extra_args=AC_ARGS)
            token = webvpn(second)
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" '
                    f'type="logout"><session-token>{token}</session-token></config-auth>')
            assert raw(net, [{"request": "POST /", "body": body}])[0]["status"] == 200
            assert connect_status(net, token) == 401
            third = client.authenticate("alice", users["alice"], extra_args=AC_ARGS)
            token = webvpn(third)
            assert raw(net, [{"request": "GET /logout", "cookie": token}])[0]["status"] == 200
            assert connect_status(net, token) == 401
        except BaseException:
            print(f"\n[e2e] server log:\n{harness.tail_lines(server.log, 80)}")
            raise
        finally:
            server.stop()


CERT_AUTH = ["auth = certificate", "ca-cert = {ca}", f"cert-user-oid = {UID_OID}"]


@pytest.mark.parametrize("compat", [False, True])
def test_connect_certificate_rule(workdir: Path, compat: bool) -> None:
    """auth = certificate: without cisco-client-compat the CONNECT connection must present
    the cookie owner's certificate again; with it the cookie alone is enough (§2.6)."""
    users = {"alice": "alice-cert-pw", "bob": "bob-cert-pw"}
    with TestNet() as net:
        files, server = start(workdir, net, users, drop=["auth =", "cisco-client-compat"],
                              extra=[*CERT_AUTH, f"cisco-client-compat = {str(compat).lower()}"])
        try:
            alice, bob = client_cert(files, "alice"), client_cert(files, "bob")
            client = Client(net, files, name="cert")
            # openconnect presents its certificate on both connections: always accepted
            assert client.connect("alice", "unused", extra_args=["-c", str(alice[0]),
                                                                 "-k", str(alice[1])]), client.log
            assert client.disconnect() == 0
            auth = client.authenticate("alice", "unused",
                                       extra_args=["-c", str(alice[0]), "-k", str(alice[1])])
            cookie = webvpn(auth)
            expect = 200 if compat else 401
            assert connect_status(net, cookie) == expect  # no certificate at all
            assert settle(net, cookie, expect, cert=bob) == expect  # someone else's
            assert settle(net, cookie, 200, cert=alice) == 200
        except BaseException:
            print(f"\n[e2e] server log:\n{harness.tail_lines(server.log, 80)}")
            raise
        finally:
            server.stop()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "raw":
    print(json.dumps(_raw_main(json.loads(sys.argv[2]))))
