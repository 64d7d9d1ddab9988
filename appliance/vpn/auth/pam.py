"""The PAM back end: the stack runs in a thread of its own."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import queue
import threading
import types
from ctypes import POINTER, byref, c_char_p, c_void_p, cast, memmove, sizeof

from .base import (
    MAX_PAM_CONVERSATIONS,
    PAM_ANSWER_TIMEOUT,
    Conversation,
    Notify,
    Prompt,
    ThreadedConversation,
    Verdict,
    _Refused,
    _unique,
)

log = logging.getLogger(__name__)


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


class PamAccounting:
    """acct = pam, as ocserv's acct/pam.c: when a session is first opened (its first
    CONNECT, not a reconnect), PAM's account stack of the "ocserv" service must accept
    the user (pam_acct_mgmt with PAM_DISALLOW_NULL_AUTHTOK), whatever method logged in;
    otherwise the session is refused.  Like ocserv it opens no PAM session and does
    nothing when the session ends.

    It runs in the sec-mod's loop, as ocserv runs it in its sec-mod: account modules
    answer from local files, and main bounds the wait (SECMOD_TIMEOUT).
    """

    SERVICE = "ocserv"  # ocserv's PACKAGE; the acct line takes no parameters

    def __init__(self) -> None:
        import pam  # python-pam, as for auth = pam

        self._pam = pam

    def allowed(self, username: str) -> bool:
        if not username:
            log.info("acct=pam refused: no username")
            return False
        internals = _pam_internals()
        lib = self._pam.PamAuthenticator()
        callback = internals.conv_func(_no_answers)  # kept alive until pam_end
        conv = internals.PamConv(callback, None)
        handle = internals.PamHandle()
        rc = lib.pam_start(self.SERVICE.encode(), username.encode(), byref(conv),
                           byref(handle))
        if rc != internals.PAM_SUCCESS:
            log.error("acct=pam pam_start failed (%d) for user '%s'", rc, username)
            return False
        try:
            rc = lib.pam_acct_mgmt(handle, internals.PAM_DISALLOW_NULL_AUTHTOK)
            reason = (lib.pam_strerror(handle, rc) or b"").decode("utf-8", "replace")
        finally:
            lib.pam_end(handle, rc)
        if rc != internals.PAM_SUCCESS:
            log.info("acct=pam refused user '%s': %s", username, reason)
            return False
        log.debug("acct=pam accepted user '%s'", username)
        return True


def _no_answers(_count: int, _messages: object, p_response: object, _appdata: object) -> int:
    """ocserv's account conversation: nothing is ever answered."""
    p_response[0] = None  # type: ignore[index]
    return 0  # PAM_SUCCESS


def _pam_internals() -> types.ModuleType:
    """python-pam's ctypes structures and constants (its public names live there too)."""
    import importlib

    return importlib.import_module("pam.__internals")


def _free(lib: object, addresses: list[int]) -> None:
    free = lib.libc.free  # type: ignore[attr-defined]
    free.argtypes = [c_void_p]
    free.restype = None
    for address in addresses:
        free(address)
