"""Messages between main, the security module and workers.

One message per SOCK_SEQPACKET datagram, JSON-encoded, file descriptors attached with
SCM_RIGHTS. Every message is a dataclass registered by name, so a process only ever acts on
fields it declared; an unknown or malformed message is an ``IpcError``, never a crash.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from dataclasses import dataclass, field
from typing import Any, TypeVar

MAX_MESSAGE = 65536
MAX_FDS = 4

_REGISTRY: dict[str, type] = {}
T = TypeVar("T")


class IpcError(Exception):
    """The peer sent something that is not a message we know, or went away."""


def message(cls: type[T]) -> type[T]:
    """Class decorator: a frozen dataclass that can travel over IPC."""
    cls = dataclass(frozen=True)(cls)
    _REGISTRY[cls.__name__] = cls
    return cls


def encode(msg: Any) -> bytes:
    payload = {"type": type(msg).__name__, **dataclasses.asdict(msg)}
    return json.dumps(payload, separators=(",", ":")).encode()


def decode(data: bytes) -> Any:
    try:
        payload = json.loads(data)
        cls = _REGISTRY[payload.pop("type")]
        return cls(**payload)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        # RecursionError: json.loads on deeply nested arrays (found by tests/fuzz)
        raise IpcError(f"malformed message: {exc}") from None


def send(sock: socket.socket, msg: Any, fds: list[int] | tuple[int, ...] = ()) -> None:
    data = encode(msg)
    if len(data) > MAX_MESSAGE:
        raise IpcError(f"message {type(msg).__name__} too large ({len(data)} bytes)")
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv(sock: socket.socket) -> tuple[Any, list[int]]:
    """One message and the descriptors that came with it; IpcError on EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not data:
        for fd in fds:
            _close(fd)
        raise IpcError("peer closed the channel")
    try:
        return decode(data), fds
    except IpcError:
        for fd in fds:
            _close(fd)
        raise


def call(sock: socket.socket, msg: Any, timeout: float, fds: tuple[int, ...] = ()) -> Any:
    """Request/response on a dedicated channel; descriptors in the reply are refused."""
    sock.settimeout(timeout)
    try:
        send(sock, msg, fds)
        reply, rfds = recv(sock)
    except (TimeoutError, OSError) as exc:
        raise IpcError(f"{type(msg).__name__}: {exc}") from None
    for fd in rfds:
        _close(fd)
    return reply


def _close(fd: int) -> None:
    import os
    try:
        os.close(fd)
    except OSError:
        pass


# --- worker <-> security module --------------------------------------------------------------

@message
class AuthInit:
    """Start (or restart) authenticating; the sec-mod keeps the state per worker connection.

    An empty ``username`` is the client's ``init`` (or a form without credentials): the
    sec-mod answers with the first form, or ``ok`` when a certificate is enough. A client
    certificate is never claimed here: the sec-mod knows it from the handshake it ran on
    this worker's connection."""
    username: str
    group: str | None
    remote_ip: str
    user_agent: str


@message
class AuthCont:
    """The user's answer to the last prompt (password, OTP, PAM question)."""
    password: str


@message
class AuthReply:
    status: str  # "continue" | "ok" | "fail" | "error"
    message: str = ""  # prompt for the form, or the 401 reason with "fail"
    prompt_password: bool = True
    cookie: str = ""  # set with status "ok"
    context: str = ""  # webvpncontext value: the auth session id (informational)
    # with "continue": which form to show. "login": username + password (+ group select);
    # "password": one answer input named input_name; "group": only the group select
    form: str = "password"
    input_name: str = "password"  # "secondary_password" for the 2nd..nth answer
    input_label: str = "Password:"
    echo: bool = False  # the answer is not secret (PAM_PROMPT_ECHO_ON): a text input
    groups: list = field(default_factory=list)  # [value, label] pairs; value "" = text only
    profile: str = ""  # with "ok": the user-profile name to advertise (AnyConnect)
    profile_sha1: str = ""


@message
class ConnectCertCheck:
    """worker → sec-mod before CONNECT: does this connection's certificate (if the rule
    needs one) belong to the cookie's user? The sec-mod answers Ack and remembers a yes
    for the SessionOpen main sends next (protocol.md §2.6, cisco-client-compat)."""
    cookie: str


@message
class ProfileFetch:
    """worker → sec-mod: the user-profile XML for the session this cookie names."""
    cookie: str


@message
class ProfileData:
    ok: bool
    status: int = 404  # HTTP status when not ok: 401 bad cookie, 404 no profile
    content: str = ""


@message
class SessionLogout:
    """worker → sec-mod: the client logged out (AnyConnect's logout POST, GET /logout)."""
    cookie: str


@message
class SessionRevoked:
    """sec-mod → main (event channel): a logout ended this session; kick its connection."""
    sid: str


@message
class TlsHandshake:
    """Run the TLS handshake on the attached socket (the key never leaves the sec-mod)."""
    remote_ip: str


@message
class TlsResult:
    ok: bool
    reason: str = ""
    keys: dict = field(default_factory=dict)  # TrafficKeys.to_wire()
    psk: str = ""  # hex: the DTLS PSK exported from this TLS session
    description: str = ""
    sni: str = ""
    leftover: str = ""  # hex: client bytes that arrived after the handshake


# --- main <-> security module ----------------------------------------------------------------

@message
class SessionOpen:
    cookie: str
    remote_ip: str


@message
class SessionInfo:
    ok: bool
    sid: str = ""
    username: str = ""
    groupname: str = ""
    started: float = 0.0  # session start (first authentication), for session-timeout
    reason: str = ""
    extra: dict = field(default_factory=dict)  # back-end session attributes (radius.py)


@message
class SessionClose:
    sid: str
    invalidate: bool  # user logout, session timeout, admin kick
    rx: int = 0
    tx: int = 0


@message
class BanPoints:
    """sec-mod → main (event channel): an address earned ban points (wrong password)."""
    ip: str
    points: int
    reason: str = ""


@message
class SessionsQuery:
    pass


@message
class SessionsList:
    sessions: list[dict] = field(default_factory=list)
    auth_failures: int = 0


@message
class Ack:
    ok: bool = True
    reason: str = ""


# --- worker <-> main -------------------------------------------------------------------------

@message
class ConnectRequest:
    """Sent by a worker on CONNECT; main answers with ConnectGrant (+ the TUN fd) or a denial."""
    cookie: str
    hostname: str
    user_agent: str
    device_type: str
    platform: str
    local_ip: str
    remote_ip: str
    tls_description: str
    base_mtu: int | None = None
    requested_mtu: int | None = None
    tcp_pmtu: int | None = None
    peer_ipv6: bool = False
    dtls_app_id: str = ""  # hex; set when the worker offers DTLS (PSK-NEGOTIATE)
    dtls_overhead: int = 0  # legacy DTLS: the announced suite's per-packet overhead


@message
class ConnectGrant:
    ok: bool
    status: int = 401  # HTTP status when refused
    reason: str = ""
    sid: str = ""
    username: str = ""
    groupname: str = ""
    device: str = ""
    ipv4: str = ""
    ipv4_local: str = ""
    ipv4_netmask: str = ""
    ipv6: str = ""  # the client's IPv6 address ("" without an IPv6 pool), see ipv6.py
    ipv6_prefix: int = 0
    ipv6_withheld: bool = False  # data MTU below 1280: no IPv6 in the CONNECT reply
    session_started: float = 0.0
    # per-user effective settings (config + config-per-user/group)
    settings: dict = field(default_factory=dict)


@message
class WorkerStats:
    """Periodic and final counters; ``final`` carries the disconnect reason."""
    rx: int
    tx: int
    rx_packets: int = 0
    tx_packets: int = 0
    final: bool = False
    # "user" (BYE 0xb0), "temporary", "idle", "session-timeout", "dpd", "error", "server"
    reason: str = ""
    mtu: int = 0
    dtls_cipher: str = ""  # set while DTLS is up
    udp_rx_packets: int = 0
    udp_tx_packets: int = 0
    compressed_rx: int = 0
    compressed_tx: int = 0
    channel: str = "tls"  # what we send on now: "dtls" or "tls"
    cstp_compression: str = ""  # negotiated algorithm ("oc-lz4", "lzs") or ""
    dtls_compression: str = ""


@message
class DtlsSocket:
    """main → worker: a UDP socket connected to the client (attached) and the datagram that
    arrived first on it: a ClientHello, or with ``rebind`` a record from a new address."""
    first: str  # hex
    rebind: bool = False


@message
class Terminate:
    """main → worker: end the session (admin kick, takeover, shutdown)."""
    reason: str
    send_bye: bool = True
