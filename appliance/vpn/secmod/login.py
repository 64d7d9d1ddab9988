"""The login dialogue the sec-mod runs for each worker connection: username, group,
password or OTP prompts, the certificate's part, and the verdict that makes a cookie.

Back-ends speak as conversations (auth/base.py); this module turns their prompts and
verdicts into the AuthReply steps a worker relays to the client (docs/protocol.md §2.4).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import ipc
from ..auth.base import PASSWORD_PROMPT, Conversation, GroupError, Prompt, Verdict
from ..auth.cert import CertIdentity
from ..auth.registry import AuthSetup, Method
from ..config import Config
from .anyconnect import ProfileCache
from .cookies import SessionStore

log = logging.getLogger(__name__)

MAX_PASSWORD_TRIES = 3
MAX_USERNAME = 255


@dataclass
class AuthState:
    """One worker connection: the certificate its handshake verified, and the login in
    progress on it."""
    cert: CertIdentity | None = None  # set only by a handshake this sec-mod ran
    cert_problem: str = "No certificate"  # the 401 reason when a certificate is required
    handshakes: int = 0
    username: str = ""
    requested: str | None = None  # canonical group asked for; None = the user's default
    group_given: bool = False  # the client named a group (or the default entry)
    remote_ip: str = ""
    user_agent: str = ""
    device: tuple[str, str] = ("", "")  # (device type, platform) of the login's request
    tries: int = 0
    answers: int = 0  # answers given in this attempt: the 2nd..nth input gets a counter
    retry_note: str = ""  # "Login failed." before the next prompt after a wrong answer
    conv: Conversation | None = None
    method: Method | None = None  # the way this login goes (AuthSetup.select)
    waiting_since: float | None = None  # a worker awaits our reply since (monotonic)
    context: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())
    pid: int = 0  # the worker's, from SO_PEERCRED (the kernel's word, not the worker's)
    vhost: str = ""  # the host its handshake's SNI chose ("": the default one)


class Login:
    """Every login in progress goes through here; it keeps the failure count occtl shows."""

    def __init__(self, cfg: Config, setup: AuthSetup, store: SessionStore,
                 profiles: ProfileCache, notify: Callable[[object], None],
                 wake: Callable[[], None]) -> None:
        self.cfg = cfg
        self.setup = setup
        self.store = store
        self.profiles = profiles
        self.notify = notify  # one-way notifications to main (ban points)
        self._wake = wake  # for back-ends that answer from a thread (PAM)
        self.auth_failures = 0

    def auth_init(self, state: AuthState, msg: ipc.AuthInit) -> ipc.AuthReply | None:
        """A new login on this connection (the client's init, or a posted username)."""
        self.end_attempt(state)
        state.remote_ip = msg.remote_ip
        state.user_agent = msg.user_agent
        state.device = (msg.device_type, msg.platform)
        state.tries = 0
        state.retry_note = ""
        state.group_given = bool(msg.group)
        state.requested = self.setup.groups.requested(msg.group)
        if len(msg.username.encode()) > MAX_USERNAME or any(ord(c) < 32 for c in msg.username):
            return self.fail(state, "Authentication failed")
        state.method = self.setup.select(state.cert is not None)
        if state.method is None:  # every configured way needs a certificate
            log.info("no usable client certificate from %s: %s", state.remote_ip,
                     state.cert_problem)
            return self.fail(state, state.cert_problem)
        if not state.method.password:  # the certificate alone logs in
            return self._cert_login(state)
        if not msg.username:
            return self._login_form(state)
        cert = state.cert if state.method.cert else None  # certificate AND password
        if cert is not None and msg.username != cert.username:
            log.info("user '%s' from %s presented a certificate of '%s'", msg.username,
                     state.remote_ip, cert.username)
            return self.fail(state, "Authentication failed")
        state.username = msg.username
        return self._begin(state)

    def auth_cont(self, state: AuthState, answer: str) -> ipc.AuthReply | None:
        if state.conv is None or state.waiting_since is not None:
            return self.fail(state, "Authentication failed")  # no question was asked
        state.conv.answer(answer)
        state.answers += 1
        state.waiting_since = time.monotonic()
        return self.pump(state)

    @staticmethod
    def _with_cert(state: AuthState) -> bool:
        """This login is certificate AND password: the two must agree."""
        return state.cert is not None and state.method is not None and state.method.cert

    def _login_form(self, state: AuthState) -> ipc.AuthReply:
        policy = self.setup.groups
        extra: list[str] = list(state.cert.groups) \
            if state.cert is not None and self._with_cert(state) else []
        if policy.auto and self.setup.password is not None:
            extra += self.setup.password.all_groups()
        options = policy.options(state.requested, extra) \
            if (policy.choices or policy.default_label or extra) else []
        return ipc.AuthReply(status="continue", form="login", context=state.context,
                             message="Please enter your username and password.",
                             groups=[list(o) for o in options])

    def _cert_login(self, state: AuthState) -> ipc.AuthReply:
        """The certificate alone logs in (auth = certificate, or enable-auth = certificate)."""
        assert state.cert is not None
        groups = state.cert.groups
        if len(groups) > 1 and not state.group_given:
            options = self.setup.groups.options(None, groups)
            return ipc.AuthReply(status="continue", form="group", context=state.context,
                                 message="Please select your group.",
                                 groups=[list(o) for o in options])
        return self._login_as(state, state.cert.username, groups)

    def _begin(self, state: AuthState) -> ipc.AuthReply | None:
        assert self.setup.password is not None
        state.conv = self.setup.password.start(state.username, state.remote_ip, self._wake)
        state.answers = 0
        state.waiting_since = time.monotonic()
        return self.pump(state)

    def pump(self, state: AuthState) -> ipc.AuthReply | None:
        """The reply for the back-end's next event, or None while it has none yet."""
        while state.conv is not None:
            event = state.conv.poll()
            if event is None:
                return None
            state.waiting_since = None
            if isinstance(event, Prompt):
                return self._prompt(state, event)
            reply = self._verdict(state, event)
            if reply is not None:
                return reply
        return self.fail(state, "Authentication failed")

    def _prompt(self, state: AuthState, prompt: Prompt) -> ipc.AuthReply:
        """A back-end question as a form step (docs/protocol.md §2.4.3): PAM's plain
        "Password:" reads as ocserv's sentence; the 2nd..nth answer is numbered."""
        text = prompt.text.strip()
        if not text or text.lower().startswith("password:"):
            text = PASSWORD_PROMPT
        message, state.retry_note = state.retry_note + text, ""
        first = state.answers == 0 or not prompt.numbered
        return ipc.AuthReply(
            status="continue", form="password", context=state.context, message=message,
            input_name="password" if first else "secondary_password",
            input_label="Password:" if first else f"Password{state.answers}:",
            echo=prompt.echo)

    def _verdict(self, state: AuthState, verdict: Verdict) -> ipc.AuthReply | None:
        """Success, a hard failure, or None after starting the next try."""
        self.end_attempt(state)
        if verdict.error:  # e.g. RADIUS unreachable: not the user's fault, no retry
            log.error("authentication of '%s' from %s failed: %s", state.username,
                      state.remote_ip, verdict.reason or verdict.error)
            return self.fail(state, verdict.error)
        if verdict.ok:
            groups = verdict.groups
            if state.cert is not None and self._with_cert(state) and state.cert.groups:
                groups = tuple(g for g in groups if g in state.cert.groups) if groups \
                    else state.cert.groups
            return self._login_as(state, state.username, groups, verdict.extra)
        state.tries += 1
        self.auth_failures += 1
        log.info("failed authentication for '%s' from %s (try %d)%s", state.username,
                 state.remote_ip, state.tries, f": {verdict.reason}" if verdict.reason else "")
        self.notify(ipc.BanPoints(state.remote_ip, self.cfg.ban_points_wrong_password,
                                   "wrong password", pid=state.pid))
        if state.tries >= MAX_PASSWORD_TRIES or not verdict.retry:
            return self.fail(state, "Authentication failed")
        state.retry_note = "Login failed.\n"
        assert self.setup.password is not None
        state.conv = self.setup.password.start(state.username, state.remote_ip, self._wake)
        state.answers = 0
        state.waiting_since = time.monotonic()
        return None

    def _login_as(self, state: AuthState, username: str,
                  member_of: tuple[str, ...], extra: dict | None = None) -> ipc.AuthReply:
        try:
            group = self.setup.groups.choose(state.requested, member_of)
        except GroupError as exc:
            log.info("refusing '%s' from %s: %s", username, state.remote_ip, exc)
            return self.fail(state, "Authentication failed")
        cookie, session = self.store.create(username, group, state.remote_ip, time.time(),
                                            extra, device=state.device,
                                            vhost=self.cfg.vhost_name or "")
        log.info("user '%s' authenticated from %s%s (session %s)%s", username,
                 state.remote_ip, f" in group '{group}'" if group else "", session.sid[:8],
                 f" vhost={self.cfg.vhost_name}" if self.cfg.vhost_name else "")
        self.end_attempt(state)
        state.username = ""
        advert = self.profiles.advert(self.cfg.user_profile)
        return ipc.AuthReply(status="ok", cookie=cookie, context=state.context,
                             profile=advert.name if advert else "",
                             profile_sha1=advert.sha1 if advert else "")

    def fail(self, state: AuthState, reason: str) -> ipc.AuthReply:
        self.end_attempt(state)
        state.username = ""
        return ipc.AuthReply(status="fail", message=reason)

    def end_attempt(self, state: AuthState) -> None:
        if state.conv is not None:
            state.conv.close()
        state.conv = None
        state.waiting_since = None
