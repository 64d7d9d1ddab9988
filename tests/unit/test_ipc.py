"""The typed codec (wire.py) and the IPC messages on it (ipc.py), with bytes (issue 15)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vpn import ipc, wire
from tests.fuzz import ipc_variants
from tests.fuzz.ipc_variants import SECRET


def msg(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def refused(data: bytes, match: str | None = None) -> str:
    with pytest.raises(ipc.BadMessage, match=match) as info:
        ipc.decode(data)
    return str(info.value)


# --- every registered message ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ipc.registered()))
def test_every_message_round_trips(name: str) -> None:
    obj = ipc_variants.sample_named(name)
    first = ipc.decode(msg(obj))
    assert type(first).__name__ == name
    assert ipc.decode(ipc.encode(first)) == first
    assert json.loads(ipc.encode(first)) == obj  # nothing added, nothing lost


def test_every_variant_is_refused_and_names_no_value() -> None:
    """Each field with each wrong JSON kind, missing and extra fields, broken JSON, deep
    nesting, oversized: a BadMessage whose text never repeats what the sender wrote."""
    for label, data in ipc_variants.variants(nested=True):
        text = refused(data)
        assert SECRET not in text and "\\x00" not in text, label
        assert len(text) < 300, label


def test_defaults_fill_optional_fields() -> None:
    stats = ipc.decode(b'{"type":"WorkerStats","rx":1,"tx":2}')
    assert stats == ipc.WorkerStats(1, 2)
    assert ipc.decode(b'{"type":"SessionsQuery"}') == ipc.SessionsQuery()


# --- the type rules ------------------------------------------------------------------------


def test_bool_is_not_an_int_and_int_is_not_a_bool() -> None:
    refused(b'{"type":"WorkerStats","rx":true,"tx":0}', "'rx' has the wrong type")
    refused(b'{"type":"Ack","ok":1}', "'ok' has the wrong type")
    refused(b'{"type":"WorkerStats","rx":1.0,"tx":0}', "'rx' has the wrong type")


def test_float_fields_take_ints_and_become_floats() -> None:
    info = ipc.decode(b'{"type":"SessionInfo","ok":true,"started":3}')
    assert info.started == 3.0 and type(info.started) is float
    refused(b'{"type":"SessionInfo","ok":true,"started":"3"}', "'started'")


def test_optional_literal_and_nested_records() -> None:
    req = ipc_variants.sample_named("ConnectRequest")
    assert ipc.decode(msg({**req, "base_mtu": None})).base_mtu is None
    refused(msg({**req, "base_mtu": "1500"}), "'base_mtu' has the wrong type")
    refused(b'{"type":"AuthReply","status":"maybe"}', "'status' has a value that is not allowed")
    refused(b'{"type":"WorkerStats","rx":0,"tx":0,"channel":"udp"}', "'channel'")
    grant = ipc_variants.sample_named("ConnectGrant")
    settings_ = grant["settings"]
    decoded = ipc.decode(msg(grant))
    assert isinstance(decoded.settings, ipc.SessionSettings) and decoded.settings.dpd == 1
    refused(msg({**grant, "settings": {**settings_, "dpd": "90"}}),
            "ConnectGrant: 'settings.dpd' has the wrong type")
    refused(msg({**grant, "settings": {**settings_, "dns": ["198.51.100.53", 53]}}),
            "'settings.dns' has the wrong type")
    refused(msg({**grant, "settings": {**settings_, "zz": 1}}), "1 unknown field")
    refused(msg({**grant, "settings": []}), "'settings' has the wrong type")


def test_lists_and_dicts_check_their_items() -> None:
    assert ipc.decode(b'{"type":"AuthReply","status":"continue","groups":[["a","A"]]}'
                      ).groups == [["a", "A"]]
    refused(b'{"type":"AuthReply","status":"continue","groups":["a"]}', "'groups'")
    extra = {"radius": {"groups": ["staff"], "groupconfig": True, "session_timeout": None}}
    info = ipc.decode(msg({"type": "SessionInfo", "ok": True, "extra": extra}))
    assert info.extra == extra
    refused(msg({"type": "SessionInfo", "ok": True, "extra": {"radius": {"x": {}}}}), "'extra'")
    refused(msg({"type": "SessionInfo", "ok": True, "extra": {"radius": 1}}), "'extra'")
    keys = {"version": 0x0303, "cipher": ["AES-256-GCM", 32, "sha384"], "read_key": "00"}
    assert ipc.decode(msg({"type": "TlsResult", "ok": True, "keys": keys})).keys == keys
    refused(msg({"type": "TlsResult", "ok": True, "keys": {"cipher": [None]}}), "'keys'")


def test_bounds_and_their_per_field_overrides() -> None:
    refused(msg({"type": "TlsHandshake", "remote_ip": "1" * 65}), "'remote_ip' is too long")
    long = "p" * (wire.DEFAULT_MAX_LEN + 1)
    assert ipc.decode(msg({"type": "AuthCont", "password": long})).password == long  # BIG
    refused(msg({"type": "ProfileFetch", "cookie": long}), "'cookie' is too long")
    refused(b'{"type":"WorkerStats","rx":-1,"tx":0}', "'rx' is out of range")
    refused(msg({"type": "WorkerStats", "rx": 2**63, "tx": 0}), "'rx' is out of range")
    assert ipc.decode(msg({"type": "WorkerStats", "rx": 2**63 - 1, "tx": 0})).rx == 2**63 - 1
    refused(b'{"type":"WorkerStats","rx":0,"tx":0,"mtu":65536}', "'mtu' is out of range")
    too_many = [{"sid": "s", "username": "u", "groupname": "", "remote_ip": "",
                 "created": 0, "expires": None, "in_use": 0}] * 2
    assert len(ipc.decode(msg({"type": "SessionsList", "sessions": too_many})).sessions) == 2
    routes = ["::/0"] * (wire.DEFAULT_MAX_ITEMS + 1)
    grant = ipc_variants.sample_named("ConnectGrant")
    refused(msg({**grant, "settings": {**grant["settings"], "routes": routes}}),
            "too many items")


def test_formats() -> None:
    base = {"type": "AuthInit", "username": "u", "group": None, "user_agent": "ua"}
    for ip in ("198.51.100.7", "2001:db8::7"):
        assert ipc.decode(msg({**base, "remote_ip": ip})).remote_ip == ip
    refused(msg({**base, "remote_ip": "198.51.100"}), "'remote_ip' is not well-formed")
    refused(msg({**base, "remote_ip": "198.51.100.7", "user_agent": "a\nb"}),
            "'user_agent' is not well-formed")
    assert ipc.decode(msg({**base, "remote_ip": "198.51.100.7", "user_agent": "a\tb"}))
    refused(b'{"type":"DtlsSocket","first":"abc"}', "'first' is not well-formed")
    refused(b'{"type":"DtlsSocket","first":"zz"}', "'first' is not well-formed")
    # a lone surrogate cannot be encoded as UTF-8: refused in every string, keys too
    refused(b'{"type":"SessionLogout","cookie":"\\udc80"}', "'cookie' is not well-formed")
    refused(b'{"type":"SessionInfo","ok":true,"extra":{"\\ud800":{}}}', "'extra'")


def test_strict_json() -> None:
    refused(b'{"type":"Ack","ok":true,"ok":false}', "duplicate key")
    refused(b'{"type":"WorkerStats","rx":NaN,"tx":0}', "NaN is not JSON")
    refused(b'{"type":"SessionInfo","ok":true,"started":1e400}', "out of range")
    refused(b'{"type":"Ack"', "not valid JSON")
    refused(b'\xff{"type":"Ack"}', "not valid JSON")
    refused(b"[" * 50000 + b"]" * 50000, "more than 65536 bytes")
    refused(b"[" * 30000 + b"]" * 30000, "nested too deeply")
    refused(b'{"type":"Ack","reason":' + b"[" * 20000 + b"]" * 20000 + b"}", "nested")
    refused(b'["Ack"]', "must be a JSON object")
    refused(b'{"type":"Nope","x":1}', "unknown message type")
    refused(b'{"type":null}', "unknown message type")
    refused(b'{"type":"WorkerStats","tx":0}', "'rx' is missing")
    refused(b'{"type":"Ack","' + SECRET.encode() + b'":1}', "1 unknown field")


def test_accept_sets_refuse_well_formed_messages_of_other_types() -> None:
    data = ipc.encode(ipc.SessionClose("ab", True))
    assert ipc.decode(data) == ipc.SessionClose("ab", True)
    with pytest.raises(ipc.BadMessage, match="SessionClose is not accepted"):
        ipc.decode(data, ipc.WORKER_TO_MAIN)
    assert ipc.decode(ipc.encode(ipc.WorkerStats(1, 2)), ipc.WORKER_TO_MAIN)


# --- the socket layer ----------------------------------------------------------------------


@pytest.fixture
def pair() -> Any:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield a, b
    a.close()
    b.close()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_recv_refuses_and_closes_the_descriptors_of_a_bad_message(pair: Any) -> None:
    a, b = pair
    r, w = os.pipe()
    try:
        socket.send_fds(a, [b'{"type":"WorkerStats","rx":"x","tx":0}'], [r])
        before = set(os.listdir("/proc/self/fd"))
        with pytest.raises(ipc.BadMessage):
            ipc.recv(b)
        assert set(os.listdir("/proc/self/fd")) <= before  # the received copy was closed
        socket.send_fds(a, [ipc.encode(ipc.SessionClose("ab", False))], [r])
        with pytest.raises(ipc.BadMessage, match="not accepted"):
            ipc.recv(b, accept=ipc.WORKER_TO_MAIN)
        socket.send_fds(a, [ipc.encode(ipc.WorkerStats(5, 6))], [r])
        got, fds = ipc.recv(b, accept=ipc.WORKER_TO_MAIN)
        assert got == ipc.WorkerStats(5, 6) and len(fds) == 1 and _is_open(fds[0])
        os.close(fds[0])
    finally:
        os.close(r)
        os.close(w)


def test_recv_refuses_truncated_datagrams_and_too_many_descriptors(pair: Any) -> None:
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    a.send(b'{"type":"AuthCont","password":"' + b"x" * ipc.MAX_MESSAGE + b'"}')
    with pytest.raises(ipc.BadMessage, match="more than"):
        ipc.recv(b)
    pipes = [os.pipe() for _ in range(ipc.MAX_FDS + 2)]
    try:
        socket.send_fds(a, [ipc.encode(ipc.Ack())], [r for r, _ in pipes])
        with pytest.raises(ipc.BadMessage, match="descriptors"):
            ipc.recv(b)
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_eof_is_not_a_bad_message(pair: Any) -> None:
    a, b = pair
    a.close()
    with pytest.raises(ipc.IpcError) as info:
        ipc.recv(b)
    assert not isinstance(info.value, ipc.BadMessage)


def test_senders_check_their_own_messages(pair: Any) -> None:
    a, b = pair
    for bad in (ipc.WorkerStats(-1, 0), ipc.TlsHandshake("not an address"),
                ipc.ConnectGrant(ok=True, settings=ipc.SessionSettings(mtu=70000)),
                ipc.AuthReply(status="bogus")):  # type: ignore[arg-type]
        with pytest.raises(ipc.IpcError, match="refusing to send") as info:
            ipc.send(a, bad)
        assert not isinstance(info.value, ipc.BadMessage)  # a local error, not the peer's
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        b.recv(10)  # nothing went out


# --- the codec itself -----------------------------------------------------------------------


def test_unsupported_declarations_fail_when_first_used() -> None:
    @dataclass
    class Loose:
        anything: Any

    @dataclass
    class Pair:
        pair: tuple[int, int]

    @dataclass
    class IntKeys:
        table: dict[int, str]

    @dataclass
    class Typo:
        name: str = field(default="", metadata={"maxlen": 3})

    @dataclass
    class BadFormat:
        name: str = field(default="", metadata={"format": "email"})

    for cls in (Loose, Pair, IntKeys, Typo, BadFormat):
        with pytest.raises(TypeError):
            wire.fields_of(cls)


def test_hints_are_resolved_once_per_class() -> None:
    @dataclass
    class Fresh:
        n: int

    wire.fields_of.cache_clear()
    for _ in range(3):
        wire.decode(Fresh, b'{"n": 1}')
    info = wire.fields_of.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_control_records_ignore_unknown_fields_ipc_refuses_them() -> None:
    @dataclass
    class Rec:
        a: int
        b: list[str] = field(default_factory=list, metadata={"max_items": 2, "max_len": 3})

    assert wire.from_obj(Rec, {"a": 1, "new": 2}, ignore_unknown=True) == Rec(1)
    with pytest.raises(wire.WireError, match="1 unknown field"):
        wire.from_obj(Rec, {"a": 1, "new": 2})
    with pytest.raises(wire.WireError, match="too many items"):
        wire.from_obj(Rec, {"a": 1, "b": ["x", "y", "z"]})
    with pytest.raises(wire.WireError, match="too long"):
        wire.from_obj(Rec, {"a": 1, "b": ["xxxx"]})
    with pytest.raises(wire.WireError, match="Rec: expected an object"):
        wire.from_obj(Rec, [1])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(ipc.registered())), st.data())
def test_fuzz_fields_either_decode_to_declared_types_or_are_refused(name: str, data: Any) -> None:
    cls = ipc.registered()[name]
    obj = ipc_variants.sample(cls)
    for f in dataclasses.fields(cls):
        if data.draw(st.booleans()):
            obj[f.name] = data.draw(json_values)
    try:
        decoded = ipc.decode(json.dumps(obj).encode())
    except ipc.BadMessage:
        return
    assert ipc.decode(ipc.encode(decoded)) == decoded
    from tests.fuzz.targets import _fits

    assert _fits(cls, decoded)


def test_type_checker_sees_required_fields_that_carry_codec_metadata(tmp_path: Path) -> None:
    """``sid: str = field(metadata=SID)`` has no default: a message built without it must
    be a type error. Without ``field_specifiers`` in ``message``'s dataclass_transform,
    mypy read every ``field(...)`` as a default and let such a call through."""
    from mypy import api

    snippet = tmp_path / "snippet.py"
    snippet.write_text("from appliance.vpn import ipc\n"
                       "ipc.SessionClose(invalidate=True)\n"
                       "ipc.SessionClose(sid='ab', invalidate=False)\n")
    out, err, status = api.run(["--no-incremental", "--follow-imports=silent", str(snippet)])
    assert status == 1, out + err
    assert f'{snippet}:2: error: Missing positional argument "sid"' in out
    assert f"{snippet}:3:" not in out
