"""The control protocol: request parsing, framing and limits with bytes, then a real socket."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn.control import (
    COMMANDS,
    BanInfo,
    ClientConn,
    ControlError,
    ControlServer,
    Dispatcher,
    Limits,
    SessionInfo,
    StatusInfo,
    UserInfo,
    bind_socket,
    encode,
    from_wire,
    make_event,
    parse_request,
)
from tests.support.control import LoopThread
from tests.support.fakes import FakeProvider
from tests.support.waiting import wait_until

NOW = 1_800_000_000.0


def control_provider() -> FakeProvider:
    """What main would answer, with a record of the orders it was given."""
    return FakeProvider(
        user_list=[
            UserInfo(id=101, username="alice", device="vpns0", ipv4="203.0.113.50",
                     ptp_ipv4="203.0.113.1", full_session_id="AAAAAA1111", connected_at=NOW - 5,
                     iroutes=["10.99.0.0/255.255.255.0"]),
            UserInfo(id=102, username="bob", device="vpns1", ipv4="203.0.113.51",
                     ptp_ipv4="203.0.113.1", full_session_id="BBBBBB2222", connected_at=NOW - 9),
            UserInfo(id=103, username="alice", device="vpns2", ipv4="203.0.113.50",
                     full_session_id="AAAAAA1111", connected_at=NOW - 1),
        ],
        session_list=[
            SessionInfo("AAAAAA1111", "alice", created=NOW - 60, in_use=2),
            SessionInfo("CCCCCC3333", "carol", state="authenticating", created=NOW - 3),
        ],
        ban_list=[BanInfo("198.18.2.7", 30, NOW + 100), BanInfo("198.18.2.8", 10),
                  BanInfo("198.18.2.9", 50, NOW - 1)],
        status_info=StatusInfo(server_pid=1, secmod_pid=2, up_since=NOW - 100),
        bannable="198.18.2.7",
    )


def req(cmd: str, **args: Any) -> bytes:
    return json.dumps({"v": 1, "cmd": cmd, "args": args}).encode()


def lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


# --- parse_request -----------------------------------------------------------------------


def test_parse_valid_requests() -> None:
    assert parse_request(req("show users")).cmd == "show users"
    r = parse_request(b'{"v":1,"cmd":"show user","args":{"name":"alice"}}')
    assert (r.v, r.cmd, r.args) == (1, "show user", {"name": "alice"})
    assert parse_request(b'{"v":1,"cmd":"reload"}').args == {}
    assert parse_request(req("unban ip", ip="2001:DB8::1")).args == {"ip": "2001:db8::1"}
    assert parse_request(req("disconnect id", id=7)).args == {"id": 7}


@pytest.mark.parametrize("line, message", [
    (b"", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1]", "must be a JSON object"),
    (b'{"cmd":"reload"}', "'v'"),
    (b'{"v":true,"cmd":"reload"}', "'v'"),
    (b'{"v":"1","cmd":"reload"}', "'v'"),
    (b'{"v":2,"cmd":"reload"}', "unsupported protocol version 2"),
    (b'{"v":1,"cmd":"format disk"}', "unknown command"),
    (b'{"v":1,"cmd":7}', "'cmd' must be a string"),
    (b'{"v":1,"cmd":"reload","x":1}', "unknown request keys: x"),
    (b'{"v":1,"cmd":"reload","args":[]}', "'args' must be an object"),
    (b'{"v":1,"cmd":"reload","args":{"force":true}}', "unknown arguments"),
    (b'{"v":1,"cmd":"show user","args":{}}', "needs the argument 'name'"),
    (b'{"v":1,"cmd":"show user","args":{"name":""}}', "non-empty string"),
    (b'{"v":1,"cmd":"show user","args":{"name":"a\\nb"}}', "control characters"),
    (b'{"v":1,"cmd":"show id","args":{"id":true}}', "positive integer"),
    (b'{"v":1,"cmd":"show id","args":{"id":"7"}}', "positive integer"),
    (b'{"v":1,"cmd":"show id","args":{"id":0}}', "positive integer"),
    (b'{"v":1,"cmd":"show id","args":{"id":4294967296}}', "positive integer"),
    (b'{"v":1,"cmd":"unban ip","args":{"ip":"1.2.3"}}', "not an IP address"),
    (b'{"v":1,"v":1,"cmd":"reload"}', "duplicate key"),
    (b'{"v":1,"cmd":"show id","args":{"id":NaN}}', "NaN is not JSON"),
])
def test_parse_rejects(line: bytes, message: str) -> None:
    with pytest.raises(ControlError, match=message):
        parse_request(line)


def test_parse_rejects_long_names_and_deep_nesting() -> None:
    with pytest.raises(ControlError, match="too long"):
        parse_request(req("show user", name="x" * 257))
    with pytest.raises(ControlError, match="too long"):
        parse_request(req("show session", sid="s" * 65))
    with pytest.raises(ControlError):
        parse_request(b"[" * 60000 + b"]" * 60000)
    with pytest.raises(ControlError):
        parse_request(b'{"v":1' + b"0" * 5000 + b',"cmd":"reload"}')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parse_bytes(data: bytes) -> None:
    try:
        parse_request(data)
    except ControlError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "cmd", "args", "x"]), json_values, max_size=4))
def test_fuzz_parse_objects(obj: dict[str, Any]) -> None:
    try:
        r = parse_request(json.dumps(obj).encode())
    except ControlError:
        return
    assert r.cmd in COMMANDS and r.v == 1


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(COMMANDS)),
       st.dictionaries(st.sampled_from(["name", "id", "sid", "ip", "other"]), json_values,
                       max_size=3))
def test_fuzz_parse_arguments(cmd: str, args: dict[str, Any]) -> None:
    try:
        r = parse_request(json.dumps({"v": 1, "cmd": cmd, "args": args}).encode())
    except ControlError:
        return
    assert set(r.args) == {a.name for a in COMMANDS[cmd]}


# --- records -------------------------------------------------------------------------------


def test_from_wire_checks_types_and_ignores_new_fields() -> None:
    u = from_wire(UserInfo, {"id": 5, "username": "a", "connected_at": 3, "future": 1})
    assert u.id == 5 and u.connected_at == 3.0 and isinstance(u.connected_at, float)
    assert from_wire(BanInfo, {"ip": "198.18.2.1", "expires": None}).expires is None
    assert from_wire(BanInfo, {"ip": "198.18.2.1", "expires": 5}).expires == 5.0
    assert isinstance(from_wire(BanInfo, {"ip": "198.18.2.1", "expires": 5}).expires, float)
    with pytest.raises(ControlError, match="'id' is missing"):
        from_wire(UserInfo, {"username": "a"})
    with pytest.raises(ControlError, match="'id' has the wrong type"):
        from_wire(UserInfo, {"id": True, "username": "a"})
    with pytest.raises(ControlError, match="'dns' has the wrong type"):
        from_wire(UserInfo, {"id": 1, "username": "a", "dns": ["x", 1]})
    with pytest.raises(ControlError, match="expected an object"):
        from_wire(UserInfo, [1])


def test_make_event_uses_ocserv_reason_texts() -> None:
    user = UserInfo(id=1, username="alice")
    assert make_event("connect", user) == {"type": "connect", "user": asdict(user)}
    assert make_event("disconnect", user, "server")["reason"] == "server disconnected"
    assert make_event("disconnect", user, "idle")["reason"] == "idle timeout"
    assert make_event("disconnect", user)["reason"] == "unspecified"
    with pytest.raises(ValueError):
        make_event("reboot", user)


# --- dispatch ------------------------------------------------------------------------------


def dispatch(provider: FakeProvider, line: bytes) -> dict[str, Any]:
    return Dispatcher(provider).handle(parse_request(line), NOW).message


def test_dispatch_filters_and_orders() -> None:
    p = control_provider()
    assert [u["id"] for u in dispatch(p, req("show user", name="alice"))["data"]] == [101, 103]
    assert dispatch(p, req("show id", id=102))["data"][0]["username"] == "bob"
    assert dispatch(p, req("show id", id=999))["data"] == []
    assert [s["full_session_id"] for s in dispatch(p, req("show sessions valid"))["data"]] == [
        "AAAAAA1111"]
    assert len(dispatch(p, req("show sessions all"))["data"]) == 2
    assert dispatch(p, req("show session", sid="CCC"))["data"][0]["username"] == "carol"
    assert [b["ip"] for b in dispatch(p, req("show ip bans"))["data"]] == ["198.18.2.7"]
    assert len(dispatch(p, req("show ip ban points"))["data"]) == 3
    assert dispatch(p, req("show iroutes"))["data"][0] == {
        "id": 101, "username": "alice", "vhost": "default", "device": "vpns0",
        "ipv4": "203.0.113.50", "ipv6": "", "iroutes": ["10.99.0.0/255.255.255.0"]}
    status = dispatch(p, req("show status"))["data"]
    assert status["server_pid"] == 1 and status["status"] == "online"
    assert dispatch(p, req("hello"))["data"]["versions"] == [1]


def test_dispatch_orders() -> None:
    p = control_provider()
    assert dispatch(p, req("disconnect user", name="alice"))["data"] == {"count": 2}
    assert dispatch(p, req("disconnect id", id=5))["data"] == {"disconnected": False}
    assert dispatch(p, req("unban ip", ip="198.18.2.7"))["data"] == {"unbanned": True}
    assert dispatch(p, req("reload"))["data"] == {"message": "configuration reloaded"}
    assert dispatch(p, req("stop now"))["ok"] is True
    assert dispatch(p, req("terminate session", sid="AAAAAA"))["data"] == {"count": 2}
    assert ("disconnect_id", 101) in p.calls and ("disconnect_id", 103) in p.calls
    assert ("stop", None) in p.calls


def test_dispatch_status_dict_and_provider_failure() -> None:
    p = control_provider()
    p.status = lambda: {"server_pid": 9}  # type: ignore[method-assign]
    data = dispatch(p, req("show status"))["data"]
    assert data["server_pid"] == 9 and data["secmod_instances"] == 1
    p.fail = True
    assert dispatch(p, req("show users")) == {"v": 1, "ok": False, "error": "internal error"}


# --- one client with bytes -----------------------------------------------------------------


def conn(provider: FakeProvider | None = None, **limits: Any) -> ClientConn:
    return ClientConn(Dispatcher(provider or control_provider()), Limits(**limits), NOW)


def drain(c: ClientConn, now: float = NOW) -> list[dict[str, Any]]:
    """Send everything the client has queued (answering pipelined requests on the way)."""
    out = b""
    while c.outbuf:
        data = c.pending()
        c.sent(len(data), now)
        out += data
    return lines(out)


def test_framing_one_answer_at_a_time() -> None:
    c = conn()
    c.receive(req("show id", id=101) + b"\n" + req("show id", id=102)[:10], NOW)
    first = lines(c.pending())
    assert [m["data"][0]["id"] for m in first] == [101]
    assert not c.wants_read  # nothing more is read until the answer is gone
    c.sent(len(c.pending()), NOW)
    assert c.wants_read and not c.outbuf
    c.receive(req("show id", id=102)[10:] + b"\r\n\n\n", NOW)
    assert drain(c)[0]["data"][0]["id"] == 102
    assert not c.done


def test_pipelined_requests_are_answered_in_order() -> None:
    c = conn()
    c.receive(b"\n".join(req("show id", id=i) for i in (101, 102, 103)) + b"\n", NOW)
    assert [m["data"][0]["id"] for m in drain(c)] == [101, 102, 103]


def test_malformed_request_gets_an_error_and_the_client_may_continue() -> None:
    c = conn()
    c.receive(b"{nonsense\n", NOW)
    assert drain(c) == [{"v": 1, "ok": False, "error": "not valid JSON: JSONDecodeError"}]
    assert not c.closing
    c.receive(req("reload") + b"\n", NOW)
    assert drain(c)[0]["ok"] is True


def test_oversized_request_closes_the_client() -> None:
    c = conn(max_request=100)
    c.receive(b"x" * 60, NOW)
    assert not c.outbuf
    c.receive(b"x" * 60, NOW)
    assert drain(c) == [{"v": 1, "ok": False, "error": "request too large"}]
    assert c.done
    c2 = conn(max_request=100)
    c2.receive(b" " * 150 + b"\n", NOW)
    assert drain(c2)[0]["error"] == "request too large" and c2.done


def test_input_beyond_what_was_asked_for_is_refused() -> None:
    c = conn(max_request=100)
    c.receive(req("reload") + b"\n", NOW)
    assert c.outbuf and not c.wants_read
    c.receive(b"{}\n" * 200, NOW)  # a shell that keeps feeding while an answer is pending
    assert c.closing
    assert drain(c)[-1]["error"] == "too much unanswered input"


def test_big_replies_go_out_in_bounded_slices() -> None:
    p = control_provider()
    p.user_list = [UserInfo(id=i + 1, username="u" * 200) for i in range(1000)]
    c = conn(p)
    c.receive(req("show users") + b"\n", NOW)
    total = len(c.outbuf)
    assert total > 600_000 and len(c.pending()) == 256 * 1024
    (reply,) = drain(c)
    assert len(reply["data"]) == 1000


def test_last_request_without_newline_is_answered_at_eof() -> None:
    c = conn()
    c.receive(req("show id", id=101), NOW)
    assert not c.outbuf
    c.receive(b"", NOW)
    assert drain(c)[0]["data"][0]["id"] == 101
    assert c.done


def test_eof_after_complete_requests_is_done() -> None:
    c = conn()
    c.receive(req("reload") + b"\n", NOW)
    c.receive(b"", NOW)
    assert not c.done  # the answer is still to be sent
    drain(c)
    assert c.done


def test_reply_too_large_is_replaced_by_an_error() -> None:
    c = conn(max_reply=200)
    c.receive(req("show users") + b"\n", NOW)
    assert drain(c) == [{"v": 1, "ok": False, "error": "response too large"}]


def test_events_subscription_and_backlog() -> None:
    c = conn(max_event_backlog=400)
    c.receive(req("show events") + b"\n", NOW)
    (first,) = drain(c)
    assert [u["id"] for u in first["data"]["users"]] == [101, 102, 103]
    assert c.subscribed and c.wants_read
    c.receive(req("reload") + b"\n", NOW)  # ignored from now on
    assert not c.outbuf
    line = encode({"v": 1, "event": {"type": "connect"}})
    c.push_event(line)
    assert drain(c) == [{"v": 1, "event": {"type": "connect"}}]
    assert not c.expired(NOW + 3600)  # a quiet subscriber waits as long as it likes
    for _ in range(100):
        c.push_event(line)
    assert c.closing and c.done  # fell too far behind: dropped


def test_idle_clients_expire() -> None:
    c = conn(idle_timeout=30)
    assert not c.expired(NOW + 29)
    assert c.expired(NOW + 31)
    c.receive(b"{", NOW + 20)
    assert not c.expired(NOW + 45)
    s = conn(idle_timeout=30)
    s.receive(req("show events") + b"\n", NOW)
    assert s.expired(NOW + 31)  # its answer was never read


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_fuzz_framing_never_raises(chunks: list[bytes]) -> None:
    c = conn(max_request=64)
    for chunk in chunks:
        c.receive(chunk, NOW)
        for message in drain(c):
            assert message["v"] == 1 and isinstance(message["ok"], bool)
    c.receive(b"", NOW)
    drain(c)
    assert c.done


# --- the socket ------------------------------------------------------------------------------


def test_bind_socket_is_private_and_replaces_stale_sockets(tmp_path: Path) -> None:
    path = str(tmp_path / "occtl.socket")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    sock, ident = bind_socket(path)
    try:
        st_ = os.lstat(path)
        assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600
        assert (st_.st_dev, st_.st_ino) == ident
        assert os.listdir(tmp_path) == ["occtl.socket"]  # no temporary name left behind
    finally:
        sock.close()
    regular = tmp_path / "file"
    regular.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        bind_socket(str(regular))
    assert regular.read_text() == "keep me"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LoopThread, FakeProvider, str]]:
    provider = control_provider()
    path = str(tmp_path / "occtl.socket")
    loop = LoopThread(ControlServer(path, provider, limits=Limits(max_clients=3,
                                                                     idle_timeout=1.0)))
    try:
        yield loop, provider, path
    finally:
        loop.stop()


def client(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    return sock


def read_line(sock: socket.socket) -> dict[str, Any] | None:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(1)
        except ConnectionResetError:  # closed with our request unread
            return None
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def test_server_answers_and_keeps_the_connection(served: tuple[LoopThread, FakeProvider,
                                                                   str]) -> None:
    _loop, provider, path = served
    with client(path) as sock:
        sock.sendall(req("show users") + b"\n" + b"garbage\n" + req("unban ip", ip="198.18.2.7")
                     + b"\n")
        assert [u["username"] for u in read_line(sock)["data"]] == ["alice", "bob", "alice"]
        assert read_line(sock)["ok"] is False
        assert read_line(sock)["data"] == {"unbanned": True}
    assert ("unban", "198.18.2.7") in provider.calls


def test_server_limits_clients_and_closes_idle_ones(served: tuple[LoopThread, FakeProvider,
                                                                     str]) -> None:
    loop, _provider, path = served
    held = [client(path) for _ in range(3)]
    extra = client(path)
    assert read_line(extra) == {"v": 1, "ok": False, "error": "too many control clients"}
    assert read_line(extra) is None
    time.sleep(1.2)
    loop.call(loop.server.sweep)
    for sock in held:
        assert read_line(sock) is None  # idle for longer than idle_timeout: closed
        sock.close()
    assert loop.call(lambda: loop.server.client_count) == 0
    extra.close()


def test_server_streams_events(served: tuple[LoopThread, FakeProvider, str]) -> None:
    loop, _provider, path = served
    with client(path) as sock:
        sock.sendall(req("show events") + b"\n")
        assert len(read_line(sock)["data"]["users"]) == 3
        user = UserInfo(id=9, username="dave")
        loop.call(lambda: loop.server.publish_event(make_event("connect", user)))
        loop.call(lambda: loop.server.publish_event(make_event("disconnect", user, "user")))
        loop.call(lambda: loop.server.publish_event({"bad": object()}))  # dropped, logged
        first, second = read_line(sock), read_line(sock)
        assert first["event"]["type"] == "connect" and first["event"]["user"]["id"] == 9
        assert second["event"]["reason"] == "user disconnected"
        time.sleep(1.2)
        loop.call(loop.server.sweep)
        assert loop.call(lambda: loop.server.client_count) == 1  # subscribers do not idle out
    wait_until(lambda: loop.call(lambda: loop.server.client_count) == 0)


def test_server_survives_clients_that_vanish(served: tuple[LoopThread, FakeProvider,
                                                              str]) -> None:
    loop, _provider, path = served
    for _ in range(5):
        sock = client(path)
        sock.sendall((req("show users") + b"\n") * 50)
        sock.close()
        wait_until(lambda: loop.call(lambda: loop.server.client_count) == 0)
    with client(path) as sock:
        sock.sendall(req("hello") + b"\n")
        assert read_line(sock)["data"]["server"] == "ocgate"


def test_server_refuses_other_uids(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    loop = LoopThread(ControlServer(path, control_provider(), allowed_uids=frozenset({12345})))
    try:
        with client(path) as sock:
            assert read_line(sock) is None  # closed without a word
    finally:
        loop.stop()


def test_close_removes_only_its_own_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    server = ControlServer(path, control_provider())
    server.close()
    assert not os.path.exists(path)
    server = ControlServer(path, control_provider())
    newer, _ = bind_socket(path)  # e.g. a restarted server took the path over
    server.close()
    assert os.path.exists(path)
    newer.close()
    child_view = ControlServer(path, control_provider())
    child_view.close_in_child()
    assert os.path.exists(path) and child_view.listener.fileno() == -1
