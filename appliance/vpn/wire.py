"""The one typed JSON codec for everything that crosses a privilege boundary.

Workers parse what clients send, so any worker may turn hostile; occtl and the web UI are
clients of main's control socket. All of them speak JSON records declared as dataclasses,
and this module is the only place where bytes become such records: strict JSON first
(UTF-8, no duplicate keys, no NaN or infinities, nesting bounded by the parser's recursion
guard), then every field checked against its declared type before any handler sees it.
What does not fit is a :class:`WireError` that names the field but never its value
(values may be cookies or passwords, and a hostile string must not reach a log line).

Types understood: ``bool``, ``int``, ``float`` (a JSON integer is accepted and becomes a
float), ``str``, ``None``, ``Literal[...]``, unions (``X | None``), ``list[T]``,
``dict[str, T]`` and nested dataclasses. ``true`` is never an integer. Strings, lists,
dicts and integers are bounded; ``field(metadata=...)`` overrides the defaults for one
field and every value inside it:

``max_len``
    characters per string (default :data:`DEFAULT_MAX_LEN`)
``max_items``
    entries per list or dict (default :data:`DEFAULT_MAX_ITEMS`)
``min``, ``max``
    the integer range (default: a signed 64-bit integer)
``format``
    ``"line"`` (no control characters but TAB), ``"ip"`` (an IP address) or ``"hex"``

Type hints are resolved with ``typing.get_type_hints`` once per class and cached: the
modules use ``from __future__ import annotations``, so annotations are strings until then.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

T = TypeVar("T")

DEFAULT_MAX_LEN = 16384  # the HTTP parser's header limit: any one header value fits
DEFAULT_MAX_ITEMS = 4096
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_META_KEYS = frozenset({"max_len", "max_items", "min", "max", "format"})

_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON's \ud800 escapes; not encodable as UTF-8
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_HEX = re.compile("(?:[0-9a-fA-F]{2})*")


class WireError(ValueError):
    """Bytes that are not strict JSON, or a value that does not fit its declared type."""


# --- strict JSON ---------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise WireError("duplicate key in an object")
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise WireError(f"{name} is not JSON")  # one of NaN, Infinity, -Infinity


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WireError("a number is out of range")
    return value


def loads(data: bytes | bytearray | str) -> Any:
    """Strict JSON → Python values; WireError for anything else (deep nesting included)."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constants, parse_float=_finite)
    except WireError:
        raise
    except RecursionError:  # json's C scanner guards its recursion: no crash, this
        raise WireError("not valid JSON: nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError, so is a 5000-digit int
        raise WireError(f"not valid JSON: {type(exc).__name__}") from None


def dumps(value: Any) -> bytes:
    """Compact ASCII JSON (so a reader never meets a split UTF-8 sequence)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def to_obj(record: Any) -> dict[str, Any]:
    """A dataclass record as JSON-able values (nested records become objects)."""
    return dataclasses.asdict(record)


# --- the declared types --------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    max_len: int = DEFAULT_MAX_LEN
    max_items: int = DEFAULT_MAX_ITEMS
    min: int = INT_MIN
    max: int = INT_MAX
    format: str = ""


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_FORMATS: dict[str, Callable[[str], bool]] = {
    "": lambda value: True,
    "line": lambda value: _CONTROL.search(value) is None,
    "ip": _is_ip,
    "hex": lambda value: _HEX.fullmatch(value) is not None,
}


@dataclass(frozen=True)
class _Field:
    name: str
    hint: Any
    required: bool
    bounds: Bounds


def _check_hint(hint: Any, where: str) -> None:
    """Refuse, when a class is first used, a type this codec cannot check."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint in (bool, int, float, str, type(None)):
        return
    if origin in (types.UnionType, typing.Union):
        for arm in args:
            _check_hint(arm, where)
        return
    if origin is Literal:
        if all(type(a) in (str, int, bool) for a in args):
            return
    elif origin is list and len(args) == 1:
        _check_hint(args[0], where)
        return
    elif origin is dict and len(args) == 2 and args[0] is str:
        _check_hint(args[1], where)
        return
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        fields_of(hint)
        return
    raise TypeError(f"{where}: the codec cannot check the type {hint!r}")


@functools.cache
def fields_of(cls: type) -> tuple[_Field, ...]:
    """The fields of a record class with resolved hints and bounds (cached per class)."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        where = f"{cls.__name__}.{f.name}"
        meta = dict(f.metadata)
        if set(meta) - _META_KEYS or meta.get("format", "") not in _FORMATS:
            raise TypeError(f"{where}: unknown codec metadata {meta!r}")
        _check_hint(hints[f.name], where)
        required = f.default is dataclasses.MISSING and \
            f.default_factory is dataclasses.MISSING
        out.append(_Field(f.name, hints[f.name], required, Bounds(**meta)))
    return tuple(out)


# --- checking values -----------------------------------------------------------------------


class _Where:
    """Where a value sits, for the error: the record and the dotted field path."""

    __slots__ = ("owner", "path", "ignore_unknown")

    def __init__(self, owner: str, path: str, ignore_unknown: bool) -> None:
        self.owner, self.path, self.ignore_unknown = owner, path, ignore_unknown

    def error(self, problem: str) -> WireError:
        return WireError(f"{self.owner}: '{self.path}' {problem}")


def _convert(hint: Any, value: Any, b: Bounds, at: _Where) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for arm in typing.get_args(hint):
            try:
                return _convert(arm, value, b, at)
            except WireError:
                continue
        raise at.error("has the wrong type")
    kind = type(value)
    if hint is str:
        if kind is str:
            if len(value) > b.max_len:
                raise at.error("is too long")
            if _SURROGATE.search(value) or not _FORMATS[b.format](value):
                raise at.error("is not well-formed")
            return value
    elif hint is int:
        if kind is int:
            if not b.min <= value <= b.max:
                raise at.error("is out of range")
            return value
    elif hint is bool:
        if kind is bool:
            return value
    elif hint is float:
        if kind is int or kind is float:
            try:
                number = float(value)
            except OverflowError:
                raise at.error("is out of range") from None
            if not math.isfinite(number):
                raise at.error("is out of range")
            return number
    elif hint is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if any(kind is type(a) and value == a for a in typing.get_args(hint)):
            return value
        raise at.error("has a value that is not allowed")
    elif origin is list:
        if kind is list:
            if len(value) > b.max_items:
                raise at.error("has too many items")
            (item,) = typing.get_args(hint)
            return [_convert(item, v, b, at) for v in value]
    elif origin is dict:
        if kind is dict:
            if len(value) > b.max_items:
                raise at.error("has too many items")
            _, item = typing.get_args(hint)
            return {_convert(str, k, b, at): _convert(item, v, b, at) for k, v in value.items()}
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if kind is dict:
            return _build(hint, value, at.owner, at.path + ".", at.ignore_unknown)
    raise at.error("has the wrong type")


def _build(cls: type[T], obj: dict[str, Any], owner: str, prefix: str,
           ignore_unknown: bool) -> T:
    klass: type = cls  # functools.cache wants a Hashable argument; a class is one
    fields = fields_of(klass)
    if not ignore_unknown:
        names = {f.name for f in fields}
        unknown = sum(1 for key in obj if key not in names)
        if unknown:  # their names are the sender's words: not repeated
            raise WireError(f"{owner}: {unknown} unknown field(s)"
                            + (f" in '{prefix[:-1]}'" if prefix else ""))
    kwargs: dict[str, Any] = {}
    for f in fields:
        if f.name not in obj:
            if f.required:
                raise WireError(f"{owner}: '{prefix}{f.name}' is missing")
            continue
        kwargs[f.name] = _convert(f.hint, obj[f.name], f.bounds,
                                  _Where(owner, prefix + f.name, ignore_unknown))
    return cls(**kwargs)


def from_obj(cls: type[T], obj: object, *, ignore_unknown: bool = False) -> T:
    """A record of ``cls`` from decoded JSON, every field checked; WireError otherwise.

    Unknown keys are refused unless ``ignore_unknown`` (the control protocol's clients
    ignore fields a newer server added, docs/control-protocol.md)."""
    if type(obj) is not dict:
        raise WireError(f"{cls.__name__}: expected an object")
    return _build(cls, obj, cls.__name__, "", ignore_unknown)


def decode(cls: type[T], data: bytes | str, *, ignore_unknown: bool = False) -> T:
    """Strict JSON bytes → a checked record of ``cls``."""
    return from_obj(cls, loads(data), ignore_unknown=ignore_unknown)
