"""Option values: auth methods (plain[passwd=FILE] and friends) and the converters from option text
to typed values (each raises _BadValue).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .options import (
    _U32,
    _WS,
    ACCT_METHODS,
    AUTH_METHODS,
    MAX_BANNER_BYTES,
    IPAddress,
    IPNetwork,
    OptionSpec,
    _BadValue,
)

# --------------------------------------------------------------------------------------
# Auth method values: plain[passwd=FILE,otp=FILE] and friends
# --------------------------------------------------------------------------------------


@dataclass
class AuthMethod:
    """One ``auth``/``enable-auth``/``acct`` value, with its bracket parameters."""

    name: str
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}[{inner}]"


# Allowed bracket parameters per method and how each is checked.
_AUTH_PARAMS: dict[str, dict[str, str]] = {
    "plain": {"passwd": "path", "otp": "path"},
    "pam": {"gid-min": "uint", "service": "str"},
    "radius": {"config": "path", "groupconfig": "bool", "nas-identifier": "str",
               "group-separator": "separator"},
    "certificate": {},
    "gssapi": {"keytab": "path", "require-local-user-map": "bool",
               "tgt-freshness-time": "posint", "gid-min": "uint"},
    "oidc": {"config": "path"},
}
_AUTH_SYNTAX = "NAME or NAME[key=value,...]"


def parse_auth_method(text: str, *, accounting: bool = False) -> AuthMethod:
    """Parse ``plain[passwd=/etc/ocserv/ocpasswd]``-style text; raises ValueError.

    Stricter than ocserv (which prefix-matches names and ignores text after ``]``) so
    that a mistyped method is reported instead of silently becoming another one.
    """
    try:
        return _parse_auth(text, accounting)
    except _BadValue as exc:
        raise ValueError(exc.detail or f"expected {exc.expected}") from None


def _parse_auth(text: str, accounting: bool) -> AuthMethod:
    s = text.strip(_WS)
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9_-]*)[ \t]*(?:\[(.*)\])?", s, re.DOTALL)
    if m is None:
        if "[" in s and not s.endswith("]"):
            raise _BadValue(_AUTH_SYNTAX, "malformed brackets; expected NAME[key=value,...]")
        raise _BadValue(_AUTH_SYNTAX)
    name = m.group(1).lower()
    known = ACCT_METHODS if accounting else AUTH_METHODS
    if name not in known:
        kind = "accounting" if accounting else "authentication"
        raise _BadValue(_AUTH_SYNTAX, f"unknown {kind} method '{name}'; known: "
                        f"{', '.join(sorted(known))}")
    inner = m.group(2)
    params = _auth_params(name, inner) if inner is not None else {}
    _check_auth_params(name, params, accounting)
    return AuthMethod(name, params)


def _auth_params(name: str, inner: str) -> dict[str, str]:
    if "[" in inner or "]" in inner:
        raise _BadValue(_AUTH_SYNTAX, "malformed brackets in authentication method")
    body = inner.strip(_WS)
    if name in ("plain", "radius") and body[:1] in ("/", "."):
        return _legacy_auth_params(name, body)
    params: dict[str, str] = {}
    if not body:
        return params
    for part in body.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(_WS).lower(), value.strip(_WS)
        if not sep or not key:
            raise _BadValue(_AUTH_SYNTAX, f"expected key=value in '{name}[...]', got "
                            f"'{_show(part.strip(_WS))}'")
        if key in params:
            raise _BadValue(_AUTH_SYNTAX, f"parameter '{key}' given twice for '{name}'")
        params[key] = value
    return params


def _legacy_auth_params(name: str, body: str) -> dict[str, str]:
    """ocserv still accepts ``plain[/path]`` and ``radius[/path,groupconfig]``."""
    parts = [p.strip(_WS) for p in body.split(",")]
    key = "passwd" if name == "plain" else "config"
    params = {key: parts[0]}
    for extra in parts[1:]:
        if name == "radius" and extra.lower() == "groupconfig":
            params["groupconfig"] = "true"
        else:
            raise _BadValue(_AUTH_SYNTAX, f"unexpected '{_show(extra)}' in '{name}[...]'")
    return params


def _check_auth_params(name: str, params: dict[str, str], accounting: bool) -> None:
    allowed = _AUTH_PARAMS[name]
    if accounting and name == "pam":
        allowed = {}
    for key, value in params.items():
        kind = allowed.get(key)
        if kind is None:
            what = "takes no parameters" if not allowed else (
                f"accepts {', '.join(sorted(allowed))}")
            raise _BadValue(_AUTH_SYNTAX, f"unknown parameter '{key}' for '{name}'; "
                            f"{name} {what}")
        _check_auth_param_value(name, key, value, kind)
    if name == "plain" and not params.get("passwd") and not params.get("otp"):
        raise _BadValue(_AUTH_SYNTAX, "plain authentication needs passwd=FILE, otp=FILE "
                        "or both")
    if name == "radius" and not params.get("config"):
        raise _BadValue(_AUTH_SYNTAX, "radius needs config=FILE")


def _check_auth_param_value(name: str, key: str, value: str, kind: str) -> None:
    bad = f"invalid value for '{key}' in '{name}[...]': '{_show(value)}'"
    if not value:
        raise _BadValue(_AUTH_SYNTAX, f"empty value for '{key}' in '{name}[...]'")
    if kind in ("uint", "posint"):
        if not re.fullmatch(r"[0-9]{1,10}", value) or (kind == "posint" and int(value) == 0):
            raise _BadValue(_AUTH_SYNTAX, bad + " (expected a whole number)")
    elif kind == "bool":
        if value.lower() not in _BOOLS:
            raise _BadValue(_AUTH_SYNTAX, bad + " (expected true or false)")
    elif kind == "separator" and value.lower() not in ("semicolon", "comma"):
        raise _BadValue(_AUTH_SYNTAX, bad + " (expected semicolon or comma)")


# --------------------------------------------------------------------------------------
# Value converters (text -> typed value); each raises _BadValue
# --------------------------------------------------------------------------------------

_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _to_int(spec: OptionSpec, value: str) -> int:
    lo = spec.minimum if spec.minimum is not None else 0
    hi = spec.maximum if spec.maximum is not None else _U32
    if not re.fullmatch(r"[0-9]{1,20}", value):
        raise _BadValue("an integer")
    number = int(value)
    if not lo <= number <= hi:
        raise _BadValue(f"an integer from {lo} to {hi}")
    return number


def _to_bool(value: str) -> bool:
    try:
        return _BOOLS[value.lower()]
    except KeyError:
        raise _BadValue("true or false") from None


def _to_ip(value: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise _BadValue("an IPv4 or IPv6 address") from None


def _prefix_number(text: str, maximum: int) -> int | None:
    if re.fullmatch(r"[0-9]{1,3}", text) and int(text) <= maximum:
        return int(text)
    return None


def _mask_to_prefix(text: str) -> int | None:
    """Prefix length of a dotted IPv4 netmask, or None if it is not a contiguous mask."""
    try:
        mask = int(ipaddress.IPv4Address(text))
    except ValueError:
        return None
    prefix = bin(mask).count("1")
    return prefix if mask == (_U32 << (32 - prefix)) & _U32 else None


def _ipv4_prefix(text: str) -> int | None:
    """Accept ``24``, ``/24`` or ``255.255.255.0``."""
    text = text.removeprefix("/")
    return _mask_to_prefix(text) if "." in text else _prefix_number(text, 32)


def _to_route(value: str) -> IPNetwork | None:
    """``addr/len``, ``addr/netmask`` or ``default`` (returned as None, expanded later)."""
    expected = "addr/len, addr/netmask or 'default'"
    if value == "default":
        return None
    addr, sep, prefix_text = value.partition("/")
    if not sep:
        raise _BadValue(expected)
    try:
        if ":" in addr:
            prefix = _prefix_number(prefix_text, 128)
            if prefix is None:
                raise _BadValue(expected)
            return ipaddress.IPv6Network((ipaddress.IPv6Address(addr), prefix), strict=False)
        prefix = _ipv4_prefix(prefix_text) if prefix_text[:1] != "/" else None
        if prefix is None:
            raise _BadValue(expected)
        return ipaddress.IPv4Network((ipaddress.IPv4Address(addr), prefix), strict=False)
    except ValueError:
        raise _BadValue(expected) from None


def _to_domain(value: str) -> str:
    if any(c in _WS or not c.isprintable() for c in value):
        raise _BadValue("a domain name")
    return value


_PORT_ITEM = re.compile(r"[ \t]*(tcp|udp|sctp|icmpv6|icmp|esp)[ \t]*\([ \t]*([0-9]{0,5})"
                        r"[ \t]*\)[ \t]*", re.IGNORECASE)


def _check_ports(value: str) -> str:
    """restrict-user-to-ports: ``tcp(443), udp(53)`` or ``!(tcp(22), ...)``."""
    expected = "a list like tcp(443), udp(53), icmp() or !(...)"
    body = value.strip(_WS)
    if body.startswith("!"):
        inner = body[1:].strip(_WS)
        if not (inner.startswith("(") and inner.endswith(")")):
            raise _BadValue(expected)
        body = inner[1:-1]
    for item in body.split(","):
        m = _PORT_ITEM.fullmatch(item)
        if m is None or (m.group(2) and int(m.group(2)) > 65535):
            raise _BadValue(expected)
    return value


def _check_priority(value: str) -> str:
    if re.fullmatch(r"[0-6]", value) or re.fullmatch(r"0x[0-9a-fA-F]{1,2}", value):
        return value
    raise _BadValue("0 to 6, or a TOS byte such as 0x10")


def _check_device(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,12}", value):
        return value
    raise _BadValue("up to 12 letters, digits, '.', '_' or '-'")


def _check_oid(value: str) -> str:
    if value == "SAN(rfc822name)" or re.fullmatch(r"[0-9]+(\.[0-9]+)+", value):
        return value
    raise _BadValue("a dotted OID such as 2.5.4.3, or SAN(rfc822name)")


def _check_kkdcp(value: str) -> str:
    fields_ = value.split()
    if len(fields_) == 3 and fields_[0].startswith("/") and "@" in fields_[2]:
        return value
    raise _BadValue("'/PATH REALM proto@host:port'")


def _check_banner(value: str) -> str:
    if len(value.encode("utf-8", "surrogatepass")) > MAX_BANNER_BYTES:
        raise _BadValue(f"at most {MAX_BANNER_BYTES} bytes",
                        f"longer than {MAX_BANNER_BYTES} bytes")
    return value


def _check_dns(value: str) -> str:
    if value == "local":
        raise _BadValue("an IP address", "the 'local' DNS keyword is no longer supported")
    return str(_to_ip(value))


def _check_ipv4(value: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise _BadValue("an IPv4 address") from None


def _check_ipv6(value: str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(value)
    except ValueError:
        raise _BadValue("an IPv6 address") from None


_STR_CHECKS: dict[str, Callable[[str], Any]] = {
    "explicit-ipv4": _check_ipv4,
    "explicit-ipv6": _check_ipv6,
    "restrict-user-to-ports": _check_ports,
    "net-priority": _check_priority,
    "device": _check_device,
    "cert-user-oid": _check_oid,
    "kkdcp": _check_kkdcp,
    "banner": _check_banner,
    "dns": _check_dns,
    "nbns": lambda v: str(_to_ip(v)),
}


def _convert_item(spec: OptionSpec, value: str) -> Any:
    """Convert one non-empty value of ``spec`` (list options: one element)."""
    kind = spec.item if spec.type == "list" else spec.type
    check = _STR_CHECKS.get(spec.alias_of or spec.name)
    if kind == "int":
        return _to_int(spec, value)
    if kind == "bool":
        return _to_bool(value)
    if kind == "choice":
        if value not in spec.choices:
            raise _BadValue("one of " + ", ".join(spec.choices))
        return value
    if kind == "ip":
        return check(value) if check else _to_ip(value)
    if kind == "auth":
        return _parse_auth(value, accounting=spec.name == "acct")
    if kind == "route":
        return _to_route(value)
    if kind == "domain":
        return _to_domain(value)
    if any(c in "\x00\n" for c in value):
        raise _BadValue("text on a single line")
    return check(value) if check else value


def _expected_for(spec: OptionSpec) -> str:
    """Wording for an empty value of a typed option."""
    try:
        _convert_item(spec, "")
    except _BadValue as exc:
        return exc.expected
    return "a value"


def _show(value: str, limit: int = 60) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
