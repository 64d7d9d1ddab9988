"""RADIUS auth back-end and accounting client against a fake RADIUS server on loopback.

The fake server is a UDP socket in a thread that decodes requests with pyrad and answers
with whatever the test's handler builds, so every reply kind (accept, challenge, reject,
silence, a wrong authenticator) is exercised over a real socket.
"""

from __future__ import annotations

import ipaddress
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyrad import packet as rpacket

from appliance.vpn.auth.base import Prompt, Verdict
from appliance.vpn.auth.radius import acct as radiusacct
from appliance.vpn.auth.radius import auth as radius
from appliance.vpn.auth.radius import supconfig
from appliance.vpn.auth.radius.conf import (
    RadiusConf,
    RadiusConfError,
    RadiusServer,
    load_radius_conf,
    parse_radius_conf,
)
from tests.prereqs import require_path

SECRET = b"s3cret-for-tests"

Handler = Callable[[rpacket.Packet], rpacket.Packet | None]


class FakeRadius:
    """Answers each request with ``handler(request)``; None = stay silent."""

    def __init__(self, handler: Handler, acct: bool = False,
                 reply_secret: bytes = SECRET) -> None:
        self.handler = handler
        self.acct = acct
        self.reply_secret = reply_secret
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[rpacket.Packet] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            cls = rpacket.AcctPacket if self.acct else rpacket.AuthPacket
            req = cls(packet=data, secret=SECRET, dict=radius.dictionary())
            self.requests.append(req)
            reply = self.handler(req)
            if reply is None:
                continue
            reply.secret = self.reply_secret
            self.sock.sendto(reply.ReplyPacket(), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeRadius]]:
    made: list[FakeRadius] = []

    def make(handler: Handler, **kwargs: object) -> FakeRadius:
        server = FakeRadius(handler, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def conf_for(*ports: int, acct: bool = False, timeout: float = 1,
             retries: int = 2) -> RadiusConf:
    servers = tuple(RadiusServer("127.0.0.1", p, SECRET) for p in ports)
    return RadiusConf(auth_servers=() if acct else servers,
                      acct_servers=servers if acct else (), timeout=timeout,
                      retries=retries, nas_identifier="ocgate-test")


def reply(req: rpacket.Packet, code: int, **attrs: object) -> rpacket.Packet:
    out = req.CreateReply()
    out.code = code
    for key, value in attrs.items():
        name = key.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            out.AddAttribute(name, item)
    return out


def password_of(req: rpacket.Packet) -> str:
    return req.PwDecrypt(req["User-Password"][0])


@dataclass
class Run:
    events: list[object]
    conv: radius.RadiusConversation


def drive(backend: radius.RadiusAuth, answers: list[str], user: str = "alice",
          timeout: float = 10.0) -> list[object]:
    """Play the sec-mod: poll, answer each Prompt in turn, stop at the Verdict."""
    wake = threading.Event()
    conv = backend.start(user, "198.51.100.7", wake.set)
    events: list[object] = []
    pending = list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = conv.poll()
        if event is None:
            wake.wait(0.1)
            wake.clear()
            continue
        events.append(event)
        if isinstance(event, Verdict):
            return events
        assert isinstance(event, Prompt)
        conv.answer(pending.pop(0) if pending else "")
    conv.close()
    raise AssertionError(f"no verdict; events so far: {events}")


# --------------------------------------------------------------------------- config file


def test_radcli_conf_and_servers_file(tmp_path: Path) -> None:
    (tmp_path / "servers").write_text("# host secret\n127.0.0.1  topsecret\n"
                                      "radius2.example:1645 other\n")
    conf_path = tmp_path / "radiusclient.conf"
    conf_path.write_text(
        "nas-identifier ocgate-1\n"
        "authserver 127.0.0.1:18120,radius2.example:1645\n"
        "acctserver 127.0.0.1\n"
        "servers servers\n"
        "dictionary /etc/radcli/dictionary  # ignored\n"
        "radius_timeout 3\nradius_retries 2\ndefault_realm corp\n")
    conf = load_radius_conf(str(conf_path))
    assert conf.auth_servers == (RadiusServer("127.0.0.1", 18120, b"topsecret"),
                                 RadiusServer("radius2.example", 1645, b"other"))
    assert conf.acct_servers == (RadiusServer("127.0.0.1", 1813, b"topsecret"),)
    assert (conf.timeout, conf.retries, conf.nas_identifier, conf.default_realm) == \
        (3, 2, "ocgate-1", "corp")


@pytest.mark.parametrize("text, problem", [
    ("authserver 127.0.0.1\n", "no secret"),
    ("authserver 127.0.0.1:99999:x\n", "bad port"),
    ("radius_timeout 5\n", "neither"),
    ("authserver 127.0.0.1:1812:k\nradius_retries zero\n", "positive number"),
    ("authserver\n", "neither"),
])
def test_radcli_conf_errors(text: str, problem: str) -> None:
    with pytest.raises(RadiusConfError, match=problem):
        parse_radius_conf(text, "radiusclient.conf")


def test_radcli_own_sample_file_is_read_as_radcli_reads_it() -> None:
    """Debian's radcli sample (what ocserv admins start from) has a bare ``default_realm``
    line and ``bindaddr *``: both mean "unset", never a parse error."""
    sample = require_path("/etc/radcli/radiusclient.conf", "libradcli4").read_text()
    assert re.search(r"^default_realm\s*$", sample, re.M)  # the line this is about
    conf = parse_radius_conf(sample, "radiusclient.conf", "localhost  s3cret\n")
    assert conf.auth_servers == (RadiusServer("localhost", 1812, b"s3cret"),)
    assert (conf.default_realm, conf.nas_ip) == ("", "")
    assert parse_radius_conf("authserver h:1812:k\nbindaddr\t\n", "x").nas_ip == ""


def test_inline_secret_needs_no_servers_file() -> None:
    conf = parse_radius_conf("authserver [::1]:1812:abc\n", "x.conf")
    assert conf.auth_servers == (RadiusServer("::1", 1812, b"abc"),)


# --------------------------------------------------------------------------- authentication


def test_accept_carries_attributes_and_groups(fake: Callable[..., FakeRadius]) -> None:
    def handler(req: rpacket.Packet) -> rpacket.Packet:
        ok = req["User-Name"][0] == "alice" and password_of(req) == "pw1"
        if not ok:
            return reply(req, rpacket.AccessReject)
        return reply(req, rpacket.AccessAccept, Framed_IP_Address="203.0.113.77",
                     Framed_Route=["198.51.100.0/24 0.0.0.0 1", "bogus"],
                     Class=b"OU=admins;staff", Session_Timeout=600, Idle_Timeout=120,
                     Acct_Interim_Interval=30, MS_Primary_DNS_Server="198.51.100.53",
                     Service_Type="Framed-User")

    server = fake(handler)
    backend = radius.RadiusAuth(conf_for(server.port), groupconfig=True)
    events = drive(backend, ["pw1"])
    assert isinstance(events[0], Prompt)
    verdict = events[-1]
    assert isinstance(verdict, Verdict) and verdict.ok and not verdict.error
    assert verdict.groups == ("admins", "staff")
    user = supconfig.radius_user_config(verdict.extra)
    assert user.explicit_ipv4 == ipaddress.IPv4Address("203.0.113.77")
    assert [str(r) for r in user.route] == ["198.51.100.0/24"]
    assert (user.session_timeout, user.idle_timeout, user.stats_report_time) == (600, 120, 30)
    assert user.dns == ["198.51.100.53"]
    req = server.requests[0]
    assert req["Calling-Station-Id"] == ["198.51.100.7"]
    assert req["NAS-Identifier"] == ["ocgate-test"]
    assert req["Service-Type"] == ["Authenticate-Only"]
    assert req.verify_message_authenticator()


def test_without_groupconfig_settings_are_not_applied(fake: Callable[..., FakeRadius]) -> None:
    server = fake(lambda req: reply(req, rpacket.AccessAccept,
                                    Framed_IP_Address="203.0.113.9", Class=b"sales"))
    events = drive(radius.RadiusAuth(conf_for(server.port)), ["x"])
    verdict = events[-1]
    assert isinstance(verdict, Verdict) and verdict.ok and verdict.groups == ("sales",)
    assert supconfig.radius_user_config(verdict.extra) is None


def test_challenge_echoes_state_and_prompts_reply_message(
        fake: Callable[..., FakeRadius]) -> None:
    def handler(req: rpacket.Packet) -> rpacket.Packet:
        if "State" not in req:
            if password_of(req) != "pw1":
                return reply(req, rpacket.AccessReject)
            return reply(req, rpacket.AccessChallenge, State=b"round-2",
                         Reply_Message="Enter the code from your token")
        if req["State"] == [b"round-2"] and password_of(req) == "123456":
            return reply(req, rpacket.AccessAccept)
        return reply(req, rpacket.AccessReject)

    server = fake(handler)
    events = drive(radius.RadiusAuth(conf_for(server.port)), ["pw1", "123456"])
    prompts = [e.text for e in events if isinstance(e, Prompt)]
    assert prompts[1] == "Enter the code from your token"
    verdict = events[-1]
    assert isinstance(verdict, Verdict) and verdict.ok
    assert len(server.requests) == 2


def test_reject_is_a_wrong_password(fake: Callable[..., FakeRadius]) -> None:
    server = fake(lambda req: reply(req, rpacket.AccessReject, Reply_Message="nope"))
    verdict = drive(radius.RadiusAuth(conf_for(server.port)), ["bad"])[-1]
    assert isinstance(verdict, Verdict)
    assert not verdict.ok and not verdict.error and "Access-Reject" in verdict.reason


def test_accept_with_wrong_service_type_is_refused(fake: Callable[..., FakeRadius]) -> None:
    server = fake(lambda req: reply(req, rpacket.AccessAccept, Service_Type="Authenticate-Only"))
    verdict = drive(radius.RadiusAuth(conf_for(server.port)), ["pw"])[-1]
    assert isinstance(verdict, Verdict) and not verdict.ok and not verdict.error


def test_silent_server_is_unreachable(fake: Callable[..., FakeRadius]) -> None:
    server = fake(lambda req: None)
    started = time.monotonic()
    verdict = drive(radius.RadiusAuth(conf_for(server.port, timeout=0.5, retries=2)),
                    ["pw"])[-1]
    assert isinstance(verdict, Verdict) and not verdict.ok
    assert verdict.error == radius.UNREACHABLE
    assert len(server.requests) == 2  # radius_retries sends
    assert time.monotonic() - started >= 0.9


def test_bad_authenticator_is_ignored(fake: Callable[..., FakeRadius]) -> None:
    server = fake(lambda req: reply(req, rpacket.AccessAccept), reply_secret=b"wrong")
    verdict = drive(radius.RadiusAuth(conf_for(server.port, timeout=0.5, retries=1)),
                    ["pw"])[-1]
    assert isinstance(verdict, Verdict) and not verdict.ok
    assert verdict.error == radius.UNREACHABLE


def test_failover_to_second_server(fake: Callable[..., FakeRadius]) -> None:
    dead = fake(lambda req: None)
    alive = fake(lambda req: reply(req, rpacket.AccessAccept))
    backend = radius.RadiusAuth(conf_for(dead.port, alive.port, timeout=0.3, retries=1))
    verdict = drive(backend, ["pw"])[-1]
    assert isinstance(verdict, Verdict) and verdict.ok


def test_challenge_without_state_fails(fake: Callable[..., FakeRadius]) -> None:
    server = fake(lambda req: reply(req, rpacket.AccessChallenge, Reply_Message="code?"))
    verdict = drive(radius.RadiusAuth(conf_for(server.port)), ["pw"])[-1]
    assert isinstance(verdict, Verdict) and not verdict.ok


def test_default_realm_is_appended(fake: Callable[..., FakeRadius]) -> None:
    server = fake(lambda req: reply(req, rpacket.AccessAccept))
    conf = conf_for(server.port)
    conf = RadiusConf(conf.auth_servers, (), conf.timeout, conf.retries, default_realm="corp")
    drive(radius.RadiusAuth(conf), ["pw"])
    assert server.requests[0]["User-Name"] == ["alice@corp"]


def test_group_parsing() -> None:
    assert radius.parse_groups([b"OU=a; b;a"], []) == ["a", "b"]
    assert radius.parse_groups([b"OU=a,b"], [], separator=",") == ["a", "b"]
    assert radius.parse_groups([b"plain"], ["ignored"]) == ["plain"]
    assert radius.parse_groups([], ["filter"]) == ["filter"]


# --------------------------------------------------------------------------- accounting


@dataclass
class FakeConn:
    pid: int
    sid: str = "0123456789abcdef0123456789abcdef"
    username: str = "alice"
    remote_ip: str = "198.51.100.7"
    ipv4: str = "203.0.113.5"
    rx: int = 0
    tx: int = 0
    radius: dict | None = None


@dataclass
class FakeStats:
    rx: int
    tx: int
    rx_packets: int
    tx_packets: int


def pump(acct: radiusacct.RadiusAccounting, sel: selectors.BaseSelector, until: Callable[[], bool],
         timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "accounting did not finish"
        for key, _ in sel.select(0.1):
            key.data(key.fileobj)
        acct.tick(time.monotonic())


def test_accounting_start_interim_stop(fake: Callable[..., FakeRadius]) -> None:
    server = fake(lambda req: req.CreateReply(), acct=True)
    acct = radiusacct.RadiusAccounting(conf_for(server.port, acct=True), default_interval=1)
    sel = selectors.DefaultSelector()
    acct.attach(sel)
    attrs = radius.SessionAttrs(classes=[b"OU=admins".hex()])
    conn = FakeConn(pid=42, radius=attrs.to_wire())
    acct.started(conn)
    big = (5 << 32) + 1234
    acct.stats(conn, FakeStats(big, 2000, 10, 20))
    pump(acct, sel, lambda: any(r["Acct-Status-Type"] == ["Interim-Update"]
                                for r in server.requests))
    conn.rx, conn.tx = big, 3000
    acct.stopped(conn, "idle")
    pump(acct, sel, lambda: not acct.pending and any(
        r["Acct-Status-Type"] == ["Stop"] for r in server.requests))
    kinds = [r["Acct-Status-Type"][0] for r in server.requests]
    assert kinds[0] == "Start" and kinds[-1] == "Stop" and "Interim-Update" in kinds
    stop = server.requests[-1]
    assert stop["Acct-Session-Id"] == [conn.sid]
    assert stop["Acct-Input-Octets"] == [1234] and stop["Acct-Input-Gigawords"] == [5]
    assert stop["Acct-Output-Octets"] == [3000] and stop["Acct-Output-Gigawords"] == [0]
    assert stop["Acct-Input-Packets"] == [10] and stop["Acct-Output-Packets"] == [20]
    assert stop["Acct-Terminate-Cause"] == ["Idle-Timeout"]
    assert stop["Framed-IP-Address"] == ["203.0.113.5"]
    assert stop["Class"] == [b"OU=admins"]
    assert all(r.VerifyAcctRequest() for r in server.requests)
    assert acct.lost == 0 and acct.replies == len(server.requests)


def test_accounting_retransmits_then_gives_up(fake: Callable[..., FakeRadius]) -> None:
    server = fake(lambda req: None, acct=True)
    acct = radiusacct.RadiusAccounting(conf_for(server.port, acct=True, timeout=0.2, retries=3),
                                   default_interval=None)
    sel = selectors.DefaultSelector()
    acct.attach(sel)
    acct.started(FakeConn(pid=1))
    pump(acct, sel, lambda: acct.lost == 1)
    assert len(server.requests) == 3
    assert len({r.authenticator for r in server.requests}) == 1  # the same request again


def test_no_acct_line_means_no_accounting() -> None:
    class Cfg:
        acct = None

    assert type(radiusacct.make_accounting(Cfg())) is radiusacct.NullAccounting


def test_acct_nas_identifier_is_its_own_before_the_auth_one(tmp_path: Path) -> None:
    """acct = radius[...,nas-identifier=X] is honoured, not silently replaced."""
    from appliance.vpn.config import parse_config

    radcli = tmp_path / "radiusclient.conf"
    radcli.write_text("authserver 198.51.100.5\nacctserver 198.51.100.5\n"
                      f"servers {tmp_path}/servers\n")
    (tmp_path / "servers").write_text("198.51.100.5 s3cret\n")
    base = (f"auth = radius[config={radcli},nas-identifier=auth-id]\n"
            "ipv4-network = 203.0.113.0/24\n")
    own = parse_config(base + f"acct = radius[config={radcli},nas-identifier=acct-id]\n")
    assert radiusacct.make_accounting(own).nas_identifier == "acct-id"
    shared = parse_config(base + f"acct = radius[config={radcli}]\n")
    assert radiusacct.make_accounting(shared).nas_identifier == "auth-id"


def test_broken_radcli_file_is_a_one_line_error_at_start(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """ocserv -t style: the server refuses to start, naming the file, without a traceback."""
    from appliance.vpn.__main__ import main

    radcli = tmp_path / "radiusclient.conf"
    radcli.write_text("authserver 198.51.100.5:notaport:secret\n")
    conf = tmp_path / "ocserv.conf"
    conf.write_text(f"auth = radius[config={radcli}]\nipv4-network = 203.0.113.0/24\n"
                    "server-cert = /dev/null\nserver-key = /dev/null\n")
    assert main(["-t", "-c", str(conf)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(radcli) in err and "bad port" in err, err
    assert "Traceback" not in err
