"""What every authentication back end shares: Prompt, Verdict, the conversation shape and the
threaded conversation that blocking libraries (PAM, RADIUS) run in.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

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


def _unique(items: Iterable[str]) -> list[str]:
    """Order-preserving de-duplication: the first group listed is the user's default."""
    return list(dict.fromkeys(items))
