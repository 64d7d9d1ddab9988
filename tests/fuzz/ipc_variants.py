"""What a hostile worker could send: every registered IPC message with each field given each
wrong JSON type, missing and extra fields, unknown types, broken JSON, deep nesting and
oversized datagrams (issue 15).

Used by the codec's unit tests (tests/unit/test_ipc.py), as seeds of the ``ipc_typed``
fuzz target and by the e2e test that plays a compromised worker on a live server
(tests/e2e/test_hostile_worker.py). Which JSON kinds a field accepts is worked out here from
the declared type alone, independently of the codec in appliance/vpn/wire.py, so the codec
cannot excuse its own mistakes.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

#: one value of every JSON kind
KINDS: dict[str, Any] = {"string": "x", "int": 7, "float": 0.5, "bool": True, "null": None,
                         "list": [], "dict": {}}


def accepted_kinds(hint: Any) -> set[str]:
    """The JSON kinds a value of the declared type may have."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return set().union(*(accepted_kinds(arm) for arm in typing.get_args(hint)))
    if origin is Literal:
        names = {str: "string", bool: "bool", int: "int"}
        return {names[type(v)] for v in typing.get_args(hint)}
    simple = {str: {"string"}, int: {"int"}, float: {"int", "float"}, bool: {"bool"},
              type(None): {"null"}}
    if hint in simple:
        return simple[hint]
    if origin is list:
        return {"list"}
    if origin is dict or dataclasses.is_dataclass(hint):
        return {"dict"}
    raise TypeError(f"unexpected declared type {hint!r}")


def _sample_value(hint: Any, meta: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _sample_value(typing.get_args(hint)[0], meta)
    if origin is Literal:
        return typing.get_args(hint)[0]
    if hint is str:
        return {"ip": "198.51.100.7", "hex": "ab"}.get(meta.get("format", ""), "v")
    if hint is int:
        return max(1, meta.get("min", 1))
    if hint is float:
        return 1.5
    if hint is bool:
        return False
    if hint is type(None):
        return None
    if origin is list:
        return [_sample_value(typing.get_args(hint)[0], meta)]
    if origin is dict:
        return {"k": _sample_value(typing.get_args(hint)[1], meta)}
    if dataclasses.is_dataclass(hint):
        return sample_fields(hint)
    raise TypeError(f"unexpected declared type {hint!r}")


def sample_fields(cls: type) -> dict[str, Any]:
    """A valid JSON object for the record class ``cls``, every field set."""
    hints = typing.get_type_hints(cls)
    return {f.name: _sample_value(hints[f.name], f.metadata) for f in dataclasses.fields(cls)}


def sample(cls: type) -> dict[str, Any]:
    """A valid message object (with its ``type``) for the registered class ``cls``."""
    return {"type": cls.__name__, **sample_fields(cls)}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def field_variants(cls: type, nested: bool = False) -> Iterator[tuple[str, bytes]]:
    """``cls`` with one field at a time given a value of every JSON kind it does not accept
    (and, with ``nested``, the same inside nested records)."""
    base = sample(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        for kind, value in KINDS.items():
            if kind not in accepted_kinds(hint):
                yield f"{cls.__name__}.{f.name}={kind}", _dumps({**base, f.name: value})
        if nested and dataclasses.is_dataclass(hint):
            inner = base[f.name]
            inner_hints = typing.get_type_hints(hint)
            for g in dataclasses.fields(hint):
                for kind, value in KINDS.items():
                    if kind not in accepted_kinds(inner_hints[g.name]):
                        yield (f"{cls.__name__}.{f.name}.{g.name}={kind}",
                               _dumps({**base, f.name: {**inner, g.name: value}}))


def shape_variants(cls: type) -> Iterator[tuple[str, bytes]]:
    """``cls`` with each required field missing, and with a field nobody declared."""
    base = sample(cls)
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            yield f"{cls.__name__}-{f.name}", _dumps({k: v for k, v in base.items()
                                                       if k != f.name})
    yield f"{cls.__name__}+extra", _dumps({**base, "zz_undeclared": 1})


#: a value planted in cookies and passwords: it must never show up in a log
SECRET = "SECRET-b9f1c0de"


def whole_variants(max_message: int) -> Iterator[tuple[str, bytes]]:
    """Broken datagrams that are no message of any type."""
    yield "unknown-type", b'{"type":"NoSuchMessage","' + SECRET.encode() + b'":1}'
    yield "type-missing", b'{"rx":1,"tx":2}'
    yield "type-not-a-string", b'{"type":7}'
    yield "type-is-a-list", b'{"type":["WorkerStats"],"rx":0,"tx":0}'
    yield "not-json", b'{"type":"WorkerStats",'
    yield "not-utf8", b'{"type":"AuthCont","password":"\xff\xfe"}'
    yield "json-list", b'["WorkerStats",1,2]'
    yield "json-string", b'"WorkerStats"'
    yield "json-number", b"7"
    yield "json-null", b"null"
    yield "empty-object", b"{}"
    yield "duplicate-key", b'{"type":"WorkerStats","rx":1,"rx":"x","tx":0}'
    yield "nan", b'{"type":"WorkerStats","rx":NaN,"tx":0}'
    yield "infinity", b'{"type":"BanPoints","ip":"198.51.100.7","points":Infinity}'
    yield "huge-float", b'{"type":"SessionInfo","ok":true,"started":1e999}'
    yield "huge-int", b'{"type":"WorkerStats","rx":' + b"9" * 5000 + b',"tx":0}'
    yield "int-out-of-range", b'{"type":"WorkerStats","rx":' + str(2**70).encode() + b',"tx":0}'
    yield "negative-counter", b'{"type":"WorkerStats","rx":-1,"tx":0}'
    yield "bad-literal", b'{"type":"WorkerStats","rx":0,"tx":0,"reason":"' + \
        SECRET.encode() + b'"}'
    yield "lone-surrogate", b'{"type":"AuthCont","password":"\\ud800' + SECRET.encode() + b'"}'
    yield "not-an-ip", b'{"type":"AuthInit","username":"u","group":null,' \
        b'"remote_ip":"' + SECRET.encode() + b'","user_agent":"a"}'
    yield "control-char-in-line", b'{"type":"TlsHandshake","remote_ip":"198.51.100.7\\u0000"}'
    yield "nul-in-hostname", _dumps({**sample_named("ConnectRequest"),
                                     "hostname": "h\x00" + SECRET})
    yield "not-hex", _dumps({**sample_named("ConnectRequest"), "dtls_app_id": "zz"})
    yield "bool-as-int", b'{"type":"WorkerStats","rx":true,"tx":false}'
    yield "float-as-int", b'{"type":"WorkerStats","rx":1.0,"tx":0}'
    yield "list-item-wrong", _dumps({**sample_named("AuthReply"), "groups": [["a", 1]]})
    yield "nested-extra", _dumps({**sample_named("ConnectGrant"),
                                  "settings": {"zz_undeclared": 1}})
    yield "deep-list", _deep(max_message // 2 - 16)
    yield "deep-in-field", b'{"type":"WorkerStats","tx":0,"rx":' + _deep(20000) + b"}"
    yield "deep-object", b'{"a":' * 10000 + b"1" + b"}" * 10000
    yield "long-string", _dumps({**sample_named("TlsHandshake"), "remote_ip": "1" * 70})
    yield "oversized", _dumps({"type": "AuthCont", "password": SECRET * (max_message // 8)})
    yield "oversized-deep", _deep(100000)


def sample_named(name: str) -> dict[str, Any]:
    from appliance.vpn import ipc

    return sample(ipc.registered()[name])


def variants(nested: bool = True) -> list[tuple[str, bytes]]:
    """Every bad datagram: per registered message, then the whole-datagram ones."""
    from appliance.vpn import ipc

    out: list[tuple[str, bytes]] = []
    for cls in ipc.registered().values():
        out += field_variants(cls, nested)
        out += shape_variants(cls)
    out += whole_variants(ipc.MAX_MESSAGE)
    return out
