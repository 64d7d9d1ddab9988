"""Messages between main, the security module and workers.

One message per SOCK_SEQPACKET datagram, JSON-encoded, file descriptors attached with
SCM_RIGHTS. Every message is a frozen dataclass registered by name, and every datagram is
checked by the typed codec (wire.py) against its class's declared field types before
anyone acts on it: a worker parses what clients send and may turn hostile, so main and the
security module must never believe a field because of its name. Anything that is not a
message the channel accepts is a :class:`BadMessage`, never a crash; the receiver then ends
that peer (main: the worker's session) and nothing else.

Senders check their own messages the same way, so an honest process learns of a value out
of bounds at home (an ``IpcError``) instead of being taken for a hostile one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, dataclass_transform

from . import wire

MAX_MESSAGE = 65536
MAX_FDS = 4

_REGISTRY: dict[str, type] = {}
T = TypeVar("T")

# field(metadata=...) bounds (wire.py) shared by several messages
IP = {"format": "ip", "max_len": 64}
SID = {"format": "hex", "max_len": 64}
LINE = {"format": "line"}  # an HTTP header value: the parser refuses control characters
COUNTER = {"min": 0}
MTU = {"min": 0, "max": 0xFFFF}
BIG = {"max_len": MAX_MESSAGE}


class IpcError(Exception):
    """The peer went away, or a message could not be exchanged."""


class BadMessage(IpcError):
    """The peer sent something that is not a message this channel accepts (not JSON, an
    unknown or unexpected type, a missing, extra or ill-typed field, too big)."""


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def message(cls: type[T]) -> type[T]:
    """Class decorator: a frozen dataclass that can travel over IPC (mypy sees the fields
    through dataclass_transform, so a wrong field or type is a type error)."""
    cls = dataclass(frozen=True)(cls)
    if cls.__name__ in _REGISTRY:
        raise TypeError(f"message {cls.__name__} registered twice")
    _REGISTRY[cls.__name__] = cls
    return cls


def registered() -> dict[str, type]:
    """Every message class by its wire name (for tests and the fuzz target)."""
    return dict(_REGISTRY)


def encode(msg: Any) -> bytes:
    if type(msg).__name__ not in _REGISTRY:
        raise IpcError(f"{type(msg).__name__} is not a registered message")
    return wire.dumps({"type": type(msg).__name__, **wire.to_obj(msg)})


def decode(data: bytes, accept: Collection[type] | None = None) -> Any:
    """A checked message; BadMessage for anything else, or for a type not in ``accept``.

    The error names the message type and field, never a value: it may be logged, and
    values are cookies, passwords or a hostile worker's words."""
    if len(data) > MAX_MESSAGE:
        raise BadMessage(f"message of more than {MAX_MESSAGE} bytes")
    try:
        obj = wire.loads(data)
        if type(obj) is not dict:
            raise wire.WireError("a message must be a JSON object")
        name = obj.pop("type", None)
        cls = _REGISTRY.get(name) if type(name) is str else None
        if cls is None:
            raise wire.WireError("unknown message type")
        if accept is not None and cls not in accept:
            raise wire.WireError(f"{cls.__name__} is not accepted on this channel")
        return wire.from_obj(cls, obj)
    except wire.WireError as exc:
        raise BadMessage(str(exc)) from None


def send(sock: socket.socket, msg: Any, fds: list[int] | tuple[int, ...] = ()) -> None:
    """Send one message; IpcError if it would not pass the receiver's check."""
    data = encode(msg)
    if len(data) > MAX_MESSAGE:
        raise IpcError(f"message {type(msg).__name__} too large ({len(data)} bytes)")
    try:
        decode(data)
    except BadMessage as exc:
        raise IpcError(f"refusing to send {exc}") from None
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv(sock: socket.socket, accept: Collection[type] | None = None) -> tuple[Any, list[int]]:
    """One message and the descriptors that came with it.

    IpcError on EOF, BadMessage for a datagram that is not a message of ``accept`` (any
    registered type when None), cut short or carrying too many descriptors; descriptors
    that came with a refused message are closed."""
    data, fds, flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    try:
        if not data and not fds:
            raise IpcError("peer closed the channel")
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise BadMessage(f"message of more than {MAX_MESSAGE} bytes or {MAX_FDS} "
                             "descriptors")
        return decode(data, accept), fds
    except IpcError:
        for fd in fds:
            _close(fd)
        raise


def call(sock: socket.socket, msg: Any, timeout: float, fds: tuple[int, ...] = (),
         accept: Collection[type] | None = None) -> Any:
    """Request/response on a dedicated channel; descriptors in the reply are refused."""
    sock.settimeout(timeout)
    try:
        send(sock, msg, fds)
        reply, rfds = recv(sock, accept)
    except (TimeoutError, OSError) as exc:
        raise IpcError(f"{type(msg).__name__}: {exc}") from None
    for fd in rfds:
        _close(fd)
    return reply


def _close(fd: int) -> None:
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
    remote_ip: str = field(metadata=IP)
    user_agent: str = field(metadata=LINE)
    # X-AnyConnect-Identifier-DeviceType / -Platform of this request: the session keeps
    # them for the scripts' DEVICE_TYPE / DEVICE_PLATFORM, as ocserv's sec-mod does
    device_type: str = field(default="", metadata=LINE)
    platform: str = field(default="", metadata=LINE)


@message
class AuthCont:
    """The user's answer to the last prompt (password, OTP, PAM question)."""
    password: str = field(metadata=BIG)


@message
class AuthReply:
    status: Literal["continue", "ok", "fail", "error"]
    message: str = ""  # prompt for the form, or the 401 reason with "fail"
    prompt_password: bool = True
    cookie: str = ""  # set with status "ok"
    context: str = ""  # webvpncontext value: the auth session id (informational)
    # with "continue": which form to show. "login": username + password (+ group select);
    # "password": one answer input named input_name; "group": only the group select
    form: Literal["login", "password", "group"] = "password"
    input_name: str = "password"  # "secondary_password" for the 2nd..nth answer
    input_label: str = "Password:"
    echo: bool = False  # the answer is not secret (PAM_PROMPT_ECHO_ON): a text input
    groups: list[list[str]] = field(default_factory=list)  # [value, label]; "" = text only
    profile: str = ""  # with "ok": the user-profile name to advertise (AnyConnect)
    profile_sha1: str = ""


@message
class ConnectCertCheck:
    """worker → sec-mod before CONNECT: does this connection's certificate (if the rule
    needs one) belong to the cookie's user? The sec-mod answers Ack and remembers a yes
    for the SessionOpen main sends next (docs/protocol.md §2.6, cisco-client-compat)."""
    cookie: str


@message
class ProfileFetch:
    """worker → sec-mod: the user-profile XML for the session this cookie names."""
    cookie: str


@message
class ProfileData:
    ok: bool
    status: int = 404  # HTTP status when not ok: 401 bad cookie, 404 no profile
    content: str = field(default="", metadata=BIG)  # base64


@message
class SessionLogout:
    """worker → sec-mod: the client logged out (AnyConnect's logout POST, GET /logout)."""
    cookie: str


@message
class SessionRevoked:
    """sec-mod → main (event channel): a logout ended this session; kick its connection."""
    sid: str = field(metadata=SID)


@message
class BadWorker:
    """sec-mod → main (event channel): the worker with this pid (the kernel's word, from
    SO_PEERCRED) sent the sec-mod something that is not a message; end its session.
    ``reason`` names the message type and field, never a value."""
    pid: int = field(metadata={"min": 1})
    reason: str = field(default="", metadata={"format": "line", "max_len": 512})


@message
class TlsHandshake:
    """Run the TLS handshake on the attached socket (the key never leaves the sec-mod)."""
    remote_ip: str = field(metadata=IP)


@message
class TlsResult:
    ok: bool
    reason: str = ""
    # TrafficKeys.to_wire(): hex strings, sequence numbers, [aead, key length, hash]
    keys: dict[str, str | int | list[str | int]] = field(default_factory=dict)
    psk: str = field(default="", metadata={"format": "hex"})  # the DTLS PSK exported
    description: str = ""
    sni: str = ""
    vhost: str = field(default="", metadata=LINE)  # the host the SNI chose ("": default)
    leftover: str = field(default="", metadata={"format": "hex", "max_len": MAX_MESSAGE})
    # the certificates the client was shown (DER as hex, leaf first): /cert.pem, /ca.pem
    server_chain: list[str] = field(default_factory=list, metadata={
        "max_items": 8, "format": "hex", "max_len": 16384})


# --- main <-> security module ----------------------------------------------------------------

@message
class SessionOpen:
    cookie: str
    remote_ip: str = field(metadata=IP)


@message
class SessionInfo:
    ok: bool
    sid: str = ""
    username: str = ""
    groupname: str = ""
    started: float = 0.0  # session start (first authentication), for session-timeout
    reason: str = ""
    device_type: str = field(default="", metadata=LINE)  # from the login (AuthInit)
    platform: str = field(default="", metadata=LINE)
    vhost: str = field(default="", metadata=LINE)  # the host the login was to ("": default)
    # back-end session attributes: {"radius": SessionAttrs as a dict} (auth/radius/auth.py)
    extra: dict[str, dict[str, str | int | bool | list[str] | None]] = field(
        default_factory=dict)


@message
class SessionClose:
    sid: str = field(metadata=SID)
    invalidate: bool  # user logout, session timeout, admin kick
    rx: int = field(default=0, metadata=COUNTER)
    tx: int = field(default=0, metadata=COUNTER)


@message
class TlsReload:
    """main → sec-mod (SIGHUP, occtl reload): load server-cert and server-key again (the
    files may have been replaced on disk, e.g. by an ACME renewal). New
    handshakes use the new pair; a pair that does not load leaves the running one. The
    paths and PINs are the sec-mod's own (a restart changes them, as in ocserv)."""


@message
class TlsReloaded:
    """sec-mod → main: whether the pair loaded, and the SHA-1 of the certificate it now
    serves (workers put it in the webvpnc cookie), so main never reads the file a second
    time and races a renewal."""
    ok: bool
    reason: str = ""
    cert_sha1: str = field(default="", metadata={"format": "hex", "max_len": 40})


@message
class BanPoints:
    """sec-mod → main (event channel): the client of worker ``pid`` earned ban points
    (wrong password). Main charges the address it knows for that worker, not ``ip``, which
    is only what the worker said."""
    ip: str = field(metadata=IP)
    points: int = field(metadata=COUNTER)
    reason: str = ""
    pid: int = field(default=0, metadata=COUNTER)


@message
class SessionsQuery:
    pass


@dataclass(frozen=True)
class SessionEntry:
    """One cookie the sec-mod knows, for ``occtl show sessions``."""
    sid: str
    username: str
    groupname: str
    remote_ip: str
    created: float
    expires: float | None  # None while a connection uses it
    in_use: int = field(metadata=COUNTER)
    vhost: str = field(default="", metadata=LINE)  # "" for the default host


@message
class SessionsList:
    sessions: list[SessionEntry] = field(default_factory=list,
                                         metadata={"max_items": MAX_MESSAGE})
    auth_failures: int = field(default=0, metadata=COUNTER)


@message
class Ack:
    ok: bool = True
    reason: str = ""


# --- worker <-> main -------------------------------------------------------------------------

@message
class ConnectRequest:
    """Sent by a worker on CONNECT; main answers with ConnectGrant (+ the TUN fd) or a denial."""
    cookie: str
    hostname: str = field(metadata=LINE)
    user_agent: str = field(metadata=LINE)
    device_type: str = field(metadata=LINE)
    platform: str = field(metadata=LINE)
    local_ip: str = field(metadata=IP)
    remote_ip: str = field(metadata=IP)
    tls_description: str = field(metadata=LINE)
    base_mtu: int | None = field(default=None, metadata=MTU)
    requested_mtu: int | None = field(default=None, metadata=MTU)
    tcp_pmtu: int | None = field(default=None, metadata={"min": 0, "max": 2**32 - 1})
    peer_ipv6: bool = False
    # hex; set when the worker offers DTLS (PSK-NEGOTIATE or legacy): 32 random bytes
    dtls_app_id: str = field(default="", metadata={"format": "hex", "max_len": 64})
    dtls_overhead: int = field(default=0, metadata={"min": 0, "max": 256})  # legacy DTLS


@dataclass(frozen=True)
class SessionSettings:
    """What main decided for one session: the global options overridden by
    config-per-user/group (or RADIUS), the MTUs it computed for the CONNECT. The worker
    builds its CONNECT response and timers from these, occtl shows them."""
    dns: list[str] = field(default_factory=list)
    nbns: list[str] = field(default_factory=list)
    split_dns: list[str] = field(default_factory=list)
    default_domain: str | None = None
    routes: list[str] = field(default_factory=list)  # [] for a full tunnel
    no_routes: list[str] = field(default_factory=list)
    tunnel_all_dns: bool = False
    keepalive: int = field(default=0, metadata=COUNTER)
    dpd: int = field(default=0, metadata=COUNTER)
    idle_timeout: int | None = field(default=None, metadata=COUNTER)
    session_timeout: int | None = field(default=None, metadata=COUNTER)
    session_remaining: int | None = field(default=None, metadata=COUNTER)
    rekey_time: int = field(default=0, metadata=COUNTER)
    rekey_method: str = "new-tunnel"
    banner: str | None = field(default=None, metadata=BIG)
    switch_to_tcp: int = field(default=0, metadata=COUNTER)
    restrict_routes: bool = False
    restrict_ports: str = ""
    rx_per_sec: int = field(default=0, metadata=COUNTER)  # bytes/s, 0: no limit
    tx_per_sec: int = field(default=0, metadata=COUNTER)
    base_mtu: int = field(default=0, metadata=MTU)
    mtu: int = field(default=0, metadata=MTU)
    vnet_hdr: bool = False  # the TUN carries virtio-net headers (worker/gro.py)


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
    ipv6: str = ""  # the client's IPv6 address ("" without an IPv6 pool), see main/ipv6.py
    ipv6_prefix: int = 0
    ipv6_withheld: bool = False  # data MTU below 1280: no IPv6 in the CONNECT reply
    session_started: float = 0.0
    settings: SessionSettings = field(default_factory=SessionSettings)


#: what a channel's compression can be (protocol/compression.py ALGORITHMS)
Compression = Literal["", "oc-lz4", "lzs"]

#: the disconnect reasons a worker reports (control.DISCONNECT_REASONS has their texts)
WorkerReason = Literal["", "user", "temporary", "idle", "session-timeout", "dpd", "error",
                       "server"]


@message
class WorkerStats:
    """Periodic and final counters; ``final`` carries the disconnect reason."""
    rx: int = field(metadata=COUNTER)
    tx: int = field(metadata=COUNTER)
    rx_packets: int = field(default=0, metadata=COUNTER)
    tx_packets: int = field(default=0, metadata=COUNTER)
    final: bool = False
    # "user" (BYE 0xb0), "temporary", "idle", "session-timeout", "dpd", "error", "server"
    reason: WorkerReason = ""
    mtu: int = field(default=0, metadata=MTU)
    dtls_cipher: str = field(default="", metadata={"format": "line", "max_len": 256})
    udp_rx_packets: int = field(default=0, metadata=COUNTER)
    udp_tx_packets: int = field(default=0, metadata=COUNTER)
    compressed_rx: int = field(default=0, metadata=COUNTER)
    compressed_tx: int = field(default=0, metadata=COUNTER)
    channel: Literal["tls", "dtls"] = "tls"  # what we send on now
    # the negotiated algorithm per channel (protocol/compression.py ALGORITHMS) or ""
    cstp_compression: Compression = ""
    dtls_compression: Compression = ""


@message
class DtlsSocket:
    """main → worker: a UDP socket connected to the client (attached) and the datagram that
    arrived first on it: a ClientHello, or with ``rebind`` a record from a new address."""
    first: str = field(metadata={"format": "hex"})
    rebind: bool = False


@message
class Terminate:
    """main → worker: end the session (admin kick, takeover, shutdown)."""
    reason: str
    send_bye: bool = True


# --- who may send what -----------------------------------------------------------------------

#: what main accepts on a worker's channel
WORKER_TO_MAIN = (ConnectRequest, WorkerStats)
#: what the sec-mod accepts on a worker's connection
WORKER_TO_SECMOD = (AuthInit, AuthCont, ConnectCertCheck, ProfileFetch, SessionLogout,
                    TlsHandshake)
#: what main accepts on the sec-mod's event channel
SECMOD_EVENTS = (BanPoints, SessionRevoked, BadWorker)
#: what a worker accepts from main once its session runs
MAIN_TO_WORKER = (ConnectGrant, DtlsSocket, Terminate)

for _cls in _REGISTRY.values():  # an unsupported field type fails at import, not in use
    wire.fields_of(_cls)
