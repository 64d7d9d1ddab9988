"""Authentication back-ends of the security module: plain, PAM and client certificates.

Password back-ends all speak one shape, a *conversation*: the sec-mod starts one per login
attempt, polls it for the next ``Prompt`` (shown to the user as a form step) or the final
``Verdict``, and feeds the user's answers back.  The plain file answers at once; PAM runs
its stack in a thread, because libpam's conversation callback is synchronous and an OTP or
two-factor module may ask any number of questions (protocol.md §2.4.3).  Keeping one shape
means the sec-mod relays every PAM prompt as a form without knowing which module asked.

Certificates are verified by OpenSSL during the handshake (protocol/tls/handshake.py); here we only
turn a verified certificate into a user name and groups (``cert-user-oid``,
``cert-group-oid``, protocol.md §2.6).

Group rules (select-group, default-select-group, auto-select-group; §2.4.3, §11 items 12
and 26) are plain functions of the configuration and the user's groups, so they live here
too, free of I/O.
"""

from __future__ import annotations

import fcntl
import grp
import logging
import os
import pwd
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from ctypes import POINTER, byref, c_char_p, c_void_p, cast, memmove, sizeof
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from ...atomicfile import existing_mode_and_owner, write_atomic
from ..config import AuthMethod
from ..passwd import PasswdEntry, PasswdError, load_passwd, verify_password
from . import otp

log = logging.getLogger(__name__)

PASSWORD_PROMPT = "Please enter your password."
OTP_PROMPT = "Please enter your OTP password."  # ocserv 1.1.6's plain module, verbatim
MAX_OTP_FILE_BYTES = 4 << 20
OTP_LOCK_WAIT = 2.0  # seconds to wait for another process's lock on the users file
SAN_RFC822 = "SAN(rfc822name)"
MAX_USERNAME_BYTES = 255
MAX_PAM_CONVERSATIONS = 64  # concurrent PAM threads; more logins wait for a slot by failing
PAM_ANSWER_TIMEOUT = 240.0  # seconds PAM waits for the user's next answer (auth-timeout)
_CTRL = re.compile(r"[\x00-\x1f\x7f]")

Notify = Callable[[], None]


class AuthConfigError(ValueError):
    """The configuration asks for an authentication set-up we cannot provide."""


class CertError(ValueError):
    """A verified client certificate that does not carry a usable identity."""


class GroupError(ValueError):
    """The user asked for a group they are not a member of."""


# --------------------------------------------------------------------------- conversations


@dataclass(frozen=True)
class Prompt:
    """The back-end wants one more answer from the user; ``text`` is its own wording."""

    text: str
    echo: bool = False  # PAM_PROMPT_ECHO_ON: the answer is not a secret
    numbered: bool = True  # False: always the form's first field (ocserv's plain OTP step)


@dataclass(frozen=True)
class Verdict:
    """The end of one attempt; ``groups`` are the user's groups, primary first."""

    ok: bool
    groups: tuple[str, ...] = ()
    reason: str = ""  # for the log only: never shown to the client
    error: str = ""  # a hard failure the client is told (no retry, no ban points)
    extra: dict = field(default_factory=dict)  # session attributes for main (RADIUS)
    retry: bool = True  # False: a failure that ends the login (a wrong one-time password)


Event = Prompt | Verdict


class Conversation(Protocol):
    def poll(self) -> Event | None:
        """The next event, or None while the back-end is still working."""

    def answer(self, text: str) -> None:
        """The user's reply to the last ``Prompt``."""

    def close(self) -> None:
        """Abandon the attempt (the client went away); must not block."""


class PasswordBackend(Protocol):
    name: str

    def start(self, username: str, remote_ip: str, notify: Notify) -> Conversation:
        """Begin one attempt; ``notify`` is called (from any thread) when an event is ready."""

    def all_groups(self) -> list[str]:
        """Every group a user could be in, for ``auto-select-group``."""


# --------------------------------------------------------------------------- plain


class PlainAuth:
    """auth = plain[passwd=FILE,otp=FILE]; both files are re-read on every attempt, as
    ocserv does, so ocpasswd and users-file changes apply without a reload.

    As in ocserv's plain module, ``otp=`` adds a second question after the password
    (``OTP_PROMPT``), and a user whose passwd line has an empty hash, or any user when
    there is no ``passwd=``, is asked for the one-time password only.
    """

    name = "plain"

    def __init__(self, passwd_file: str | None, otp_file: str | None = None) -> None:
        if passwd_file is None and otp_file is None:
            raise AuthConfigError("plain authentication needs passwd= and/or otp=")
        self.passwd_file = passwd_file
        self.otp = OtpFile(otp_file) if otp_file else None

    def lookup(self, username: str) -> PasswdEntry | None:
        """The user's passwd line; None for an unknown user or an unreadable file."""
        if self.passwd_file is None:
            return None
        try:
            entries = load_passwd(self.passwd_file)
        except (OSError, PasswdError) as exc:
            log.error("cannot read password file %s: %s", self.passwd_file, exc)
            return None
        return entries.get(username)

    def check(self, username: str, password: str) -> tuple[bool, list[str]]:
        entry = self.lookup(username)
        ok = verify_password(entry, password)  # same cost for unknown users
        return ok, (entry.groups if entry else [])

    def start(self, username: str, remote_ip: str, notify: Notify) -> Conversation:
        return PlainConversation(self, username)

    def all_groups(self) -> list[str]:
        if self.passwd_file is None:
            return []
        try:
            entries = load_passwd(self.passwd_file)
        except (OSError, PasswdError):
            return []
        return _unique(g for entry in entries.values() for g in entry.groups)


class PlainConversation:
    """The password, then the one-time password when ``otp=`` is set; both answered
    synchronously (a hash and at most 41 HMACs are milliseconds).

    A wrong password ends the attempt with a retry (the sec-mod asks again, up to three
    times); a wrong one-time password ends the login, as in ocserv.
    """

    def __init__(self, backend: PlainAuth, username: str) -> None:
        self._backend = backend
        self._username = username
        self._entry: PasswdEntry | None = None
        self._password_ok = False
        otp_only = False
        if backend.otp is not None:
            if backend.passwd_file is None:
                otp_only = True
            else:
                self._entry = backend.lookup(username)
                otp_only = self._entry is not None and self._entry.hash == ""
        self._stage = "otp" if otp_only else "password"
        self._events: deque[Event] = deque(
            [Prompt(OTP_PROMPT, numbered=False) if otp_only else Prompt(PASSWORD_PROMPT)])

    def poll(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def answer(self, text: str) -> None:
        stage, self._stage = self._stage, "done"
        if stage == "password":
            self._check_password(text)
        elif stage == "otp":
            self._check_otp(text)
        else:
            self._events.append(Verdict(False, reason="answer after the verdict",
                                        retry=False))

    def _check_password(self, text: str) -> None:
        ok, groups = self._backend.check(self._username, text)
        if not ok:
            self._events.append(Verdict(False, tuple(groups), "wrong password"))
        elif self._backend.otp is None:
            self._events.append(Verdict(True, tuple(groups)))
        else:
            self._password_ok = True
            self._entry = PasswdEntry(self._username, list(groups), "")
            self._stage = "otp"
            self._events.append(Prompt(OTP_PROMPT, numbered=False))

    def _check_otp(self, text: str) -> None:
        assert self._backend.otp is not None
        result = self._backend.otp.verify(self._username, text, self._password_ok)
        groups = tuple(self._entry.groups) if self._entry is not None else ()
        if result.ok:
            self._events.append(Verdict(True, groups))
        else:
            where = f" (line {result.line})" if result.line else ""
            self._events.append(Verdict(False, groups, f"one-time password: {result.reason}"
                                        f"{where}", retry=False))

    def close(self) -> None:
        self._events.clear()


class OtpFile:
    """liboath's users file (auth/otp.py), checked and rewritten under an exclusive lock.

    The new counter is on disk (atomic rename, fsynced) before the login is allowed: a
    code whose use could not be recorded could be used again, so it is refused.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock

    def verify(self, username: str, answer: str, password_verified: bool) -> otp.OtpVerdict:
        try:
            fd = self._open_locked()
        except OSError as exc:
            log.error("cannot use the OTP users file %s: %s", self.path, exc)
            return otp.OtpVerdict(False, "users file unreadable")
        try:
            try:
                data = _read_all(fd, MAX_OTP_FILE_BYTES + 1)
            except OSError as exc:
                log.error("cannot read the OTP users file %s: %s", self.path, exc)
                return otp.OtpVerdict(False, "users file unreadable")
            if len(data) > MAX_OTP_FILE_BYTES:
                log.error("OTP users file %s is larger than %d bytes", self.path,
                          MAX_OTP_FILE_BYTES)
                return otp.OtpVerdict(False, "users file too large")
            users = otp.parse_usersfile(data.decode("utf-8", "surrogateescape"))
            for error in users.errors:
                log.error("%s:%d: %s%s", self.path, error.line + 1, error.message,
                          f" (user '{error.user}' cannot log in)" if error.user
                          else " (nobody can log in with one-time passwords)")
            result = otp.check(users, username, answer, self._clock(),
                               password_verified=password_verified)
            if result.ok and result.text is not None:
                try:
                    mode, owner = existing_mode_and_owner(self.path)
                    write_atomic(self.path, result.text.encode("utf-8", "surrogateescape"),
                                 0o600 if mode is None else mode, owner=owner)
                except OSError as exc:
                    log.error("cannot record the used one-time password in %s: %s",
                              self.path, exc)
                    return otp.OtpVerdict(False, "users file not writable")
            return result
        finally:
            os.close(fd)  # releases the lock

    def _open_locked(self) -> int:
        """The file, opened and flock()ed; reopened if it was replaced while we waited,
        so that two checks of one user never both see the same counter."""
        deadline = time.monotonic() + OTP_LOCK_WAIT
        while True:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise OSError("the file stays locked by another process") \
                                from None
                        time.sleep(0.01)
                held, now = os.fstat(fd), os.stat(self.path)
            except BaseException:
                os.close(fd)
                raise
            if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                return fd
            os.close(fd)


def _read_all(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- PAM


class PamAuth:
    """auth = pam[gid-min=N,service=NAME] through python-pam's libpam bindings.

    ``gid-min`` is what ocserv uses it for (the lowest group id offered by
    auto-select-group, and the lowest a user's group may have to count) and, stricter
    than ocserv, a user whose *primary* group is below it is refused: such accounts are
    system accounts, not VPN users.
    """

    name = "pam"

    def __init__(self, service: str = "ocserv", gid_min: int = 0,
                 answer_timeout: float = PAM_ANSWER_TIMEOUT) -> None:
        import pam  # python-pam: imported here so plain-only set-ups never need libpam

        self._pam = pam
        self.service = service
        self.gid_min = gid_min
        self.answer_timeout = answer_timeout
        self._slots = threading.BoundedSemaphore(MAX_PAM_CONVERSATIONS)

    def start(self, username: str, remote_ip: str, notify: Notify) -> Conversation:
        if not self._slots.acquire(blocking=False):
            log.warning("too many PAM conversations in progress; refusing '%s'", username)
            return _Refused(Verdict(False, reason="too many PAM conversations"))
        return PamConversation(self, username, remote_ip, notify)

    def release(self) -> None:
        self._slots.release()

    def all_groups(self) -> list[str]:
        return _unique(g.gr_name for g in grp.getgrall() if g.gr_gid >= self.gid_min)

    def user_groups(self, username: str) -> tuple[bool, tuple[str, ...], str]:
        """(allowed, groups primary first, reason): the gid-min rules after PAM said yes."""
        try:
            entry = pwd.getpwnam(username)
        except KeyError:
            return False, (), "no passwd entry"
        if entry.pw_gid < self.gid_min:
            return False, (), f"primary gid {entry.pw_gid} is below gid-min {self.gid_min}"
        gids = [entry.pw_gid] + [g for g in os.getgrouplist(username, entry.pw_gid)
                                 if g != entry.pw_gid]
        names = []
        for gid in gids:
            if gid < self.gid_min:
                continue
            try:
                names.append(grp.getgrgid(gid).gr_name)
            except KeyError:
                continue
        return True, tuple(_unique(names)), ""


class _Refused:
    """A conversation that is over before it began."""

    def __init__(self, verdict: Verdict) -> None:
        self._verdict: Verdict | None = verdict

    def poll(self) -> Event | None:
        verdict, self._verdict = self._verdict, None
        return verdict

    def answer(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class ThreadedConversation:
    """The sec-mod side of a conversation whose back-end blocks (PAM, RADIUS).

    The back-end runs in a thread; it hands events to the sec-mod loop through a queue
    (``poll``, woken by ``notify``) and waits on a one-slot queue for ``answer``. ``close``
    wakes a waiting thread with None, so an abandoned login never keeps it.
    """

    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._answers: queue.Queue[str | None] = queue.Queue(maxsize=1)
        self._closed = threading.Event()

    def poll(self) -> Event | None:
        try:
            return self._events.get_nowait()
        except queue.Empty:
            return None

    def answer(self, text: str) -> None:
        try:
            self._answers.put_nowait(text)
        except queue.Full:
            log.debug("%s answer dropped: one is already pending", type(self).__name__)

    def close(self) -> None:
        self._closed.set()
        try:
            self._answers.put_nowait(None)
        except queue.Full:
            pass

    def _emit(self, event: Event) -> None:
        if not self._closed.is_set():
            self._events.put(event)
            self._notify()


class PamConversation(ThreadedConversation):
    """One pam_authenticate + pam_acct_mgmt run in a thread of its own.

    The thread blocks inside libpam; whenever a module asks something, our conversation
    callback hands the question to the sec-mod loop (``poll``) and waits, with a timeout,
    for ``answer``.  ``close`` makes a waiting callback fail the conversation, so an
    abandoned login never keeps a thread for longer than the module's own delays.
    """

    def __init__(self, backend: PamAuth, username: str, remote_ip: str,
                 notify: Notify) -> None:
        super().__init__(notify)
        self._backend = backend
        self._username = username
        self._remote_ip = remote_ip
        self._info: list[str] = []
        self._thread = threading.Thread(target=self._run, name="pam-conversation",
                                        daemon=True)
        self._thread.start()

    # --- PAM thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            verdict = self._authenticate()
        except Exception as exc:  # noqa: BLE001 - a broken module must not kill the sec-mod
            log.exception("PAM conversation failed")
            verdict = Verdict(False, reason=f"internal error: {type(exc).__name__}")
        finally:
            self._backend.release()
        if verdict.ok:
            allowed, groups, why = self._backend.user_groups(self._username)
            verdict = Verdict(True, groups) if allowed else Verdict(False, reason=why)
        if not self._closed.is_set():
            self._emit(verdict)

    def _authenticate(self) -> Verdict:
        internals = _pam_internals()
        lib = self._backend._pam.PamAuthenticator()  # loads and shares libpam's bindings
        callback = internals.conv_func(self._converse)
        conv = internals.PamConv(callback, None)
        handle = internals.PamHandle()
        rc = lib.pam_start(self._backend.service.encode(), self._username.encode(),
                           byref(conv), byref(handle))
        if rc != internals.PAM_SUCCESS:
            return Verdict(False, reason=f"pam_start failed ({rc})")
        try:
            lib.pam_set_item(handle, internals.PAM_RHOST, c_char_p(self._remote_ip.encode()))
            rc = lib.pam_authenticate(handle, 0)
            if rc == internals.PAM_SUCCESS:
                rc = lib.pam_acct_mgmt(handle, 0)
            reason = (lib.pam_strerror(handle, rc) or b"").decode("utf-8", "replace")
        finally:
            lib.pam_end(handle, rc)
        if self._info:
            log.info("PAM said to '%s': %s", self._username, " / ".join(self._info))
        return Verdict(rc == internals.PAM_SUCCESS, reason=reason)

    def _converse(self, count: int, messages: object, p_response: object,
                  _appdata: object) -> int:
        """libpam's callback: runs in the PAM thread, blocks for each prompt's answer."""
        internals = _pam_internals()
        lib = self._backend._pam.PamAuthenticator
        if count <= 0 or count > 32:
            return internals.PAM_CONV_ERR
        array = lib.calloc(count, sizeof(internals.PamResponse))
        if not array:
            return internals.PAM_BUF_ERR
        responses = cast(array, POINTER(internals.PamResponse))
        allocated: list[int] = []
        for i in range(count):
            msg = messages[i].contents  # type: ignore[index]
            text = msg.msg.decode("utf-8", "replace") if msg.msg else ""
            if msg.msg_style in (internals.PAM_ERROR_MSG, internals.PAM_TEXT_INFO):
                self._info.append(text.strip())
                continue
            if msg.msg_style not in (internals.PAM_PROMPT_ECHO_OFF,
                                     internals.PAM_PROMPT_ECHO_ON):
                continue
            reply = self._ask(text, msg.msg_style == internals.PAM_PROMPT_ECHO_ON)
            if reply is None:
                _free(lib, allocated + [array])
                return internals.PAM_CONV_ERR
            data = reply.encode("utf-8")
            buf = lib.calloc(len(data) + 1, 1)
            if not buf:
                _free(lib, allocated + [array])
                return internals.PAM_BUF_ERR
            memmove(buf, data, len(data))
            allocated.append(buf)
            responses[i].resp = buf
            responses[i].resp_retcode = 0
        p_response[0] = responses  # type: ignore[index]
        return internals.PAM_SUCCESS

    def _ask(self, text: str, echo: bool) -> str | None:
        if self._closed.is_set():
            return None
        notes = [n for n in self._info if n]
        self._info.clear()
        prompt = "\n".join([*notes, text.strip()]) if notes else text.strip()
        self._emit(Prompt(prompt, echo))
        try:
            return self._answers.get(timeout=self._backend.answer_timeout)
        except queue.Empty:
            log.info("PAM prompt for '%s' timed out", self._username)
            return None


def _pam_internals():  # noqa: ANN202 - a module object
    """python-pam's ctypes structures and constants (its public names live there too)."""
    import importlib

    return importlib.import_module("pam.__internals")


def _free(lib: object, addresses: list[int]) -> None:
    free = lib.libc.free  # type: ignore[attr-defined]
    free.argtypes = [c_void_p]
    free.restype = None
    for address in addresses:
        free(address)


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class CertIdentity:
    """Who a verified client certificate says the user is."""

    username: str
    groups: tuple[str, ...] = ()


def cert_identity(cert: x509.Certificate, user_oid: str,
                  group_oid: str | None = None) -> CertIdentity:
    """The user name from ``user_oid`` (a DN attribute OID or ``SAN(rfc822name)``) and the
    groups from every ``group_oid`` attribute; CertError when there is no usable name."""
    names = _cert_values(cert, user_oid)
    if not names:
        raise CertError(f"the certificate has no {user_oid} to take the user name from")
    username = names[0]
    if not username or len(username.encode()) > MAX_USERNAME_BYTES or _CTRL.search(username):
        raise CertError("the certificate's user name is empty, too long or has control "
                        "characters")
    groups = tuple(g for g in _cert_values(cert, group_oid) if g and not _CTRL.search(g)) \
        if group_oid else ()
    return CertIdentity(username, tuple(_unique(groups)))


def _cert_values(cert: x509.Certificate, oid: str) -> list[str]:
    if oid == SAN_RFC822:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return []
        return [str(v) for v in san.value.get_values_for_type(x509.RFC822Name)]
    try:
        attrs = cert.subject.get_attributes_for_oid(ObjectIdentifier(oid))
    except ValueError as exc:
        raise CertError(f"bad OID {oid!r}: {exc}") from None
    values = []
    for attr in attrs:
        value = attr.value
        values.append(value.decode("utf-8", "replace") if isinstance(value, bytes)
                      else str(value))
    return values


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class GroupPolicy:
    """select-group / default-select-group / auto-select-group (protocol.md §2.4.3)."""

    choices: tuple[tuple[str, str], ...] = ()  # select-group: (name, friendly label)
    default_label: str | None = None  # default-select-group: the "my default" entry
    auto: bool = False  # auto-select-group: offer the back-end's groups too

    def requested(self, value: str | None) -> str | None:
        """Canonical group for a submitted value; None means "the user's default".

        AnyConnect submits the friendly label (§11 item 26), openconnect the name."""
        if not value or value == self.default_label:
            return None
        if any(value == name for name, _label in self.choices):
            return value
        for name, label in self.choices:
            if value == label:
                return name
        return value

    def label(self, name: str) -> str:
        return next((label for n, label in self.choices if n == name), name)

    def options(self, requested: str | None, extra: Sequence[str] = (),
                extra_text_only: bool = False) -> list[tuple[str, str]]:
        """The ``<select>`` entries as (value, label); value "" = a text-only option.

        The requested group comes first or openconnect restarts the login over and over
        (§11 item 12); then the default entry, then ``extra`` (certificate or back-end
        groups not configured), then the configured groups.
        """
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        if requested:
            out.append((requested, self.label(requested)))
            seen.add(requested)
        if self.default_label:
            out.append(("", self.default_label))
        configured = {name for name, _ in self.choices}
        for name in extra:
            if name not in seen and name not in configured:
                out.append(("", name) if extra_text_only else (name, name))
                seen.add(name)
        for name, label in self.choices:
            if name not in seen:
                out.append((name, label))
                seen.add(name)
        return out

    def choose(self, requested: str | None, member_of: Sequence[str]) -> str:
        """The session's group: the requested one if the user is in it, else the first
        of the user's groups (their default); GroupError for a group they are not in."""
        if requested is None:
            return member_of[0] if member_of else ""
        if requested in member_of:
            return requested
        raise GroupError(f"not a member of group '{requested}'")


def group_policy(select_groups: Sequence[tuple[str, str]], default_label: str | None,
                 auto: bool) -> GroupPolicy:
    return GroupPolicy(tuple(select_groups), default_label or None, auto)


# --------------------------------------------------------------------------- set-up


@dataclass
class AuthSetup:
    """What the configuration asks for, decided once at start-up."""

    password: PasswordBackend | None = None
    cert_required: bool = False  # auth = certificate: no login without one
    cert_sufficient: bool = False  # certificate alone logs in (cert-only, or enable-auth)
    groups: GroupPolicy = field(default_factory=GroupPolicy)

    @property
    def wants_cert(self) -> bool:
        return self.cert_required or self.cert_sufficient


def make_setup(auth: Sequence[AuthMethod], enable_auth: Sequence[AuthMethod],
               ca_cert: str | None, cert_user_oid: str | None,
               groups: GroupPolicy | None = None,
               answer_timeout: float = PAM_ANSWER_TIMEOUT) -> AuthSetup:
    """Back-ends for ``auth`` (all must pass) and ``enable-auth`` (any one suffices)."""
    setup = AuthSetup(groups=groups or GroupPolicy())
    for method in auth:
        if method.name == "certificate":
            setup.cert_required = True
        else:
            setup.password = _password_backend(method, answer_timeout)
    setup.cert_sufficient = setup.cert_required and setup.password is None
    for method in enable_auth:
        if method.name == "certificate":
            setup.cert_sufficient = True
        else:  # config.py refuses these already; never ignore an authentication setting
            raise AuthConfigError(f"enable-auth = {method.name} is not implemented")
    if setup.password is None and not setup.wants_cert:
        raise AuthConfigError("no usable authentication method configured")
    if setup.wants_cert and not ca_cert:
        raise AuthConfigError("certificate authentication needs 'ca-cert'")
    if setup.wants_cert and not cert_user_oid:
        raise AuthConfigError("certificate authentication needs 'cert-user-oid'")
    return setup


def _password_backend(method: AuthMethod, answer_timeout: float) -> PasswordBackend:
    if method.name == "plain":
        return PlainAuth(method.params.get("passwd"), method.params.get("otp"))
    if method.name == "pam":
        gid_min = int(method.params.get("gid-min", "0"))
        return PamAuth(method.params.get("service", "ocserv"), gid_min, answer_timeout)
    if method.name == "radius":
        from .radius.auth import RadiusAuth  # imports pyrad: only for RADIUS set-ups
        from .radius.conf import RadiusConfError

        try:
            return RadiusAuth.from_params(method.params, answer_timeout)
        except RadiusConfError as exc:
            raise AuthConfigError(f"auth = radius: {exc}") from None
    raise AuthConfigError(f"authentication method '{method.name}' is not implemented")


def _unique(items: Iterable[str]) -> list[str]:
    """Order-preserving de-duplication: the first group listed is the user's default."""
    return list(dict.fromkeys(items))
