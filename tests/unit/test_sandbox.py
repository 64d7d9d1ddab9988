"""The worker sandbox: filter construction, and what a sandboxed process can and cannot do.

Everything that applies the sandbox runs in a forked child: no-new-privs, rlimits and a
seccomp filter are irrevocable, and pytest itself must stay unconfined. The child reports
over a pipe and the parent judges its exit status (a seccomp kill is death by SIGSYS).
"""

from __future__ import annotations

import ctypes
import errno
import faulthandler
import json
import logging
import mmap
import os
import resource
import select
import signal
import socket
import struct
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from appliance.vpn.main import sandbox
from appliance.vpn.main.sandbox import (
    ERRNO_SYSCALLS,
    MAX_OPEN_FILES,
    ArgCheck,
    Rule,
    SandboxError,
    apply_worker_sandbox,
    build_filter,
    compile_worker_filter,
    worker_rules,
)
from tests.prereqs import needs, require_library, require_module

try:
    import pyseccomp
except (ImportError, OSError, RuntimeError):  # pragma: no cover - CI installs it
    pyseccomp = None

needs_seccomp = needs(lambda: (require_library("libseccomp.so.2", "libseccomp2"),
                                require_module("pyseccomp")))

NOBODY = 65534
ISOLATED = SimpleNamespace(isolate_workers=True)
NOT_ISOLATED = SimpleNamespace(isolate_workers=False)

#: Syscalls an attacker in a worker would want first; none may be allowed in any form.
FORBIDDEN = (
    "execve", "execveat", "fork", "vfork", "clone", "clone3", "socket", "socketpair",
    "connect", "bind", "listen", "accept", "accept4", "ptrace", "process_vm_readv",
    "process_vm_writev", "setuid", "setgid", "setresuid", "setgroups", "capset", "mount",
    "umount2", "pivot_root", "chroot", "unshare", "setns", "bpf", "keyctl", "add_key",
    "io_uring_setup", "perf_event_open", "userfaultfd", "init_module", "finit_module",
    "kexec_load", "prctl", "seccomp", "personality", "pkey_mprotect", "memfd_create",
    "unlink", "unlinkat", "rename", "chmod", "fchmod", "chown", "mknod", "symlink", "link",
    "truncate", "ftruncate", "dup", "dup2", "dup3", "sendmmsg", "recvmmsg", "splice",
    "prlimit64", "setrlimit", "reboot", "swapon", "acct", "quotactl",
)


# --- pure rule construction --------------------------------------------------------------------

def test_forbidden_syscalls_have_no_rule() -> None:
    named = {rule.syscall for rule in worker_rules(1234)}
    assert named.isdisjoint(FORBIDDEN), named & set(FORBIDDEN)


def test_errno_rules_never_also_allow() -> None:
    rules = worker_rules(1234)
    allowed = {r.syscall for r in rules if not r.errno}
    assert allowed.isdisjoint(ERRNO_SYSCALLS)
    assert all(code > 0 for code in ERRNO_SYSCALLS.values())


def test_argument_restricted_syscalls() -> None:
    rules = worker_rules(4321)
    ioctl = {r.args[0].value: r.errno for r in rules if r.syscall == "ioctl"}
    assert ioctl == {sandbox.FIONBIO: 0, sandbox.FIOCLEX: 0, sandbox.FIONCLEX: 0,
                     sandbox.TCGETS: errno.ENOTTY}
    assert all(r.args for r in rules
               if r.syscall in ("ioctl", "fcntl", "setsockopt", "mmap", "mprotect", "tgkill",
                                "kill", "newfstatat"))
    # signals only to itself
    assert [r.args for r in rules if r.syscall in ("kill", "tgkill")] == [
        (ArgCheck(0, 4321),), (ArgCheck(0, 4321),)]
    # never executable memory
    for rule in rules:
        if rule.syscall in ("mmap", "mprotect"):
            assert rule.args == (ArgCheck(2, 0, sandbox.PROT_EXEC),)
    setsockopt = {(r.args[0].value, r.args[1].value) for r in rules if r.syscall == "setsockopt"}
    assert setsockopt == {(socket.IPPROTO_TCP, socket.TCP_NODELAY), (17, sandbox.UDP_GRO)}


def test_fstat_allowed_but_path_stat_denied() -> None:
    stats = [r for r in worker_rules(1) if r.syscall == "newfstatat"]
    assert {(r.args, r.errno) for r in stats} == {
        ((ArgCheck(3, sandbox.AT_EMPTY_PATH, sandbox.AT_EMPTY_PATH),), 0),
        ((ArgCheck(3, 0, sandbox.AT_EMPTY_PATH),), errno.EPERM)}


# --- the libseccomp filter ---------------------------------------------------------------------

def _pfc(filt: object) -> str:
    with tempfile.TemporaryFile("w+") as fh:
        filt.export_pfc(fh)
        fh.seek(0)
        return fh.read()


@needs_seccomp
def test_filter_default_and_bad_arch_kill_the_process() -> None:
    text = _pfc(build_filter(worker_rules(os.getpid())))
    tail = text[text.index("# default action"):]
    assert "action KILL_PROCESS;" in tail.splitlines()[1]
    arch = text[text.index("# invalid architecture action"):]
    assert arch.splitlines()[1].strip() == "action KILL_PROCESS;"


@needs_seccomp
def test_filter_holds_every_rule() -> None:
    text = _pfc(build_filter(worker_rules(os.getpid())))
    for rule in worker_rules(os.getpid()):
        assert f'filter for syscall "{rule.syscall}"' in text, rule.syscall
    assert "ERRNO(1)" in text and f"ERRNO({errno.ENOTTY})" in text
    for name in ("execve", "socket", "clone", "ptrace"):
        assert f'"{name}"' not in text


@needs_seccomp
def test_unknown_syscall_name_is_refused() -> None:
    with pytest.raises(SandboxError, match="unknown syscall"):
        build_filter([Rule("no_such_syscall_at_all")])


@needs_seccomp
@pytest.mark.parametrize("pid", [1, 1234, 99999, 4194304])
def test_compiled_filter_is_libseccomps_own_for_that_pid(pid: int) -> None:
    """Main compiles the filter once for a stand-in pid and each worker patches its own in:
    the result must be exactly what libseccomp compiles for that pid."""
    compiled = compile_worker_filter()
    assert compiled is not None and compiled.pid_slots
    expected = sandbox._export(build_filter(worker_rules(pid)))
    assert compiled.for_pid(pid) == expected
    assert compiled.program != expected  # the stand-in really was replaced


# --- sandboxed children ------------------------------------------------------------------------

#: How the children below get their filter: built in the child, or compiled once by the
#: parent (as main does) and loaded with the child's pid patched in. Every confinement test
#: runs with both.
_COMPILED: list[object] = []


@pytest.fixture(autouse=True, params=["built", "compiled"])
def filter_source(request: pytest.FixtureRequest) -> None:
    _COMPILED[:] = [compile_worker_filter()] if request.param == "compiled" else []

@dataclass
class ChildResult:
    status: int
    reports: list[dict]

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None


def run_sandboxed(body: Callable[[Callable[[dict], None]], None], cfg: object = ISOLATED,
                  *, pause: Callable[[int], dict] | None = None) -> ChildResult:
    """Fork; the child drops to nobody (when root), applies the sandbox, runs ``body(report)``
    and exits 0. With ``pause``, the child waits after the sandbox until the parent has run
    ``pause(child_pid)`` (whose dict is added to the reports)."""
    out_r, out_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 70
        try:
            os.close(out_r)
            os.close(go_w)

            def report(item: dict) -> None:
                os.write(out_w, json.dumps(item).encode() + b"\n")

            if os.getuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            apply_worker_sandbox(cfg, *_COMPILED)
            report({"sandboxed": True})
            if pause is not None:
                os.read(go_r, 1)
            body(report)
            code = 0
        except SandboxError as exc:
            os.write(out_w, json.dumps({"sandbox_error": str(exc)}).encode() + b"\n")
            code = 3
        except BaseException:  # noqa: BLE001 - never return into pytest
            os.write(out_w, json.dumps({"crash": traceback.format_exc()}).encode() + b"\n")
        os._exit(code)
    os.close(out_w)
    os.close(go_r)
    data = b""
    extra: list[dict] = []
    deadline = time.monotonic() + 20
    paused = pause is None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([out_r], [], [], 0.5)
        if not ready:
            continue
        chunk = os.read(out_r, 65536)
        if not chunk:
            break
        data += chunk
        if not paused and b'"sandboxed"' in data:
            paused = True
            extra.append(pause(pid))
            os.write(go_w, b"g")
    os.close(out_r)
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    reports = [json.loads(line) for line in data.splitlines()] + extra
    return ChildResult(status, reports)


def _proc_view(pid: int) -> dict:
    status = open(f"/proc/{pid}/status").read()
    limits = open(f"/proc/{pid}/limits").read()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rows = {line[:26].strip(): line[26:].split() for line in limits.splitlines()[1:]}
    return {"nnp": fields["NoNewPrivs"].strip(), "seccomp": fields["Seccomp"].strip(),
            "nproc": rows["Max processes"][:2], "nofile": rows["Max open files"][:2],
            "core": rows["Max core file size"][:2]}


@needs_seccomp
def test_child_is_confined_as_proc_shows() -> None:
    result = run_sandboxed(lambda report: None, pause=_proc_view)
    assert result.code == 0, result
    view = result.reports[-1]
    assert view["nnp"] == "1" and view["seccomp"] == "2"
    assert view["nproc"] == ["0", "0"]
    assert view["nofile"] == [str(MAX_OPEN_FILES)] * 2
    assert view["core"] == ["0", "0"]


def test_without_isolation_only_privileges_and_limits() -> None:
    result = run_sandboxed(lambda report: None, NOT_ISOLATED, pause=_proc_view)
    assert result.code == 0, result
    view = result.reports[-1]
    assert view["nnp"] == "1" and view["seccomp"] == "0"
    assert view["nproc"] == ["0", "0"] and view["core"] == ["0", "0"]


def _prepared_work() -> Callable[[Callable[[dict], None]], None]:
    """Descriptors made before the sandbox (as main hands them to a worker), used after."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    udp_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_a.bind(("127.0.0.1", 0))
    udp_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_b.bind(("127.0.0.1", 0))
    udp_a.connect(udp_b.getsockname())
    udp_b.connect(udp_a.getsockname())
    pipe_r, pipe_w = os.pipe()

    def body(report: Callable[[dict], None]) -> None:
        # IPC with descriptor passing, as worker <-> main/sec-mod
        a.sendmsg([b"grant"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                struct.pack("i", pipe_w))])
        msg, anc, _, _ = b.recvmsg(64, socket.CMSG_SPACE(4))
        passed = int.from_bytes(anc[0][2][:4], "little")
        os.write(passed, b"tun-packet")
        got = os.read(pipe_r, 64)
        # the data loop: epoll, non-blocking sockets, TCP/UDP options it uses, timeouts
        ep = select.epoll()
        ep.register(udp_b.fileno(), select.EPOLLIN)
        udp_b.setblocking(False)
        udp_b.setsockopt(17, sandbox.UDP_GRO, 1)
        udp_a.send(b"dtls-record")
        events = ep.poll(2.0)
        data, _anc, _flags, _addr = udp_b.recvmsg(2048, socket.CMSG_SPACE(4))
        ep.close()
        a.settimeout(0.05)
        try:
            a.recv(10)
        except TimeoutError:
            timed_out = True
        udp_a.sendmsg([b"x" * 200], [(17, 103, (100).to_bytes(2, "little"))])  # UDP_SEGMENT
        select.select([], [udp_a], [], 0.1)
        report({"msg": msg.decode(), "pipe": got.decode(), "events": len(events),
                "udp": data.decode(), "timed_out": timed_out, "random": len(os.urandom(32)),
                "clock": time.monotonic() > 0, "fstat": os.fstat(pipe_r).st_mode != 0,
                "blob": len(bytearray(8 << 20))})  # a big allocation: mmap/munmap
        logging.getLogger("test").error("logging to stderr still works")

    return body


@needs_seccomp
def test_what_a_worker_does_is_allowed() -> None:
    result = run_sandboxed(_prepared_work())
    assert result.code == 0, result
    work = result.reports[-1]
    assert work == {"msg": "grant", "pipe": "tun-packet", "events": 1, "udp": "dtls-record",
                    "timed_out": True, "random": 32, "clock": True, "fstat": True,
                    "blob": 8 << 20}


def _harmless_denials(report: Callable[[dict], None]) -> None:
    outcomes = {}
    for name, call in (("open", lambda: open("/etc/passwd")),
                       ("stat", lambda: os.stat("/etc/passwd")),
                       ("listdir", lambda: os.listdir("/")),
                       ("access", lambda: os.access("/etc/passwd", os.R_OK))):
        try:
            outcomes[name] = call()
        except OSError as exc:
            outcomes[name] = errno.errorcode[exc.errno]
    outcomes["isatty"] = os.isatty(2)
    try:
        raise ValueError("an error on the worker's error path")
    except ValueError:
        outcomes["traceback"] = "ValueError" in traceback.format_exc()
    logging.getLogger("test").exception("log.exception still works")
    report(outcomes)


@needs_seccomp
def test_python_error_paths_get_eperm_not_death() -> None:
    result = run_sandboxed(_harmless_denials)
    assert result.code == 0, result
    assert result.reports[-1] == {"open": "EPERM", "stat": "EPERM", "listdir": "EPERM",
                                  "access": False, "isatty": False, "traceback": True}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


FORBIDDEN_ACTIONS: dict[str, Callable[[socket.socket], object]] = {
    "fork": lambda s: os.fork(),
    "packet-socket": lambda s: socket.socket(socket.AF_PACKET, socket.SOCK_RAW),
    "inet-socket": lambda s: socket.socket(socket.AF_INET, socket.SOCK_STREAM),
    "ptrace": lambda s: _libc().ptrace(0, 0, None, None),  # PTRACE_TRACEME
    "execve": lambda s: os.execv("/bin/true", ["true"]),
    "exec-memory": lambda s: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC),
    "signal-another-process": lambda s: os.kill(1, 0),
    "socket-option": lambda s: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20),
    "connect": lambda s: s.connect(("127.0.0.1", 9)),
    "tun-ioctl": lambda s: _libc().ioctl(s.fileno(), 0x400454CA, None),  # TUNSETIFF
    "unshare": lambda s: _libc().unshare(0x10000000),  # CLONE_NEWUSER
    "setrlimit": lambda s: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)),
    "unlink": lambda s: os.unlink("/tmp/does-not-matter"),
}


@needs_seccomp
@pytest.mark.parametrize("action", sorted(FORBIDDEN_ACTIONS))
def test_forbidden_syscall_kills_the_child_with_sigsys(action: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def body(report: Callable[[dict], None]) -> None:
        report({"trying": action})
        FORBIDDEN_ACTIONS[action](sock)
        report({"survived": action})

    try:
        result = run_sandboxed(body)
    finally:
        sock.close()
    assert result.signal == signal.SIGSYS, result
    assert {"trying": action} in result.reports
    assert {"survived": action} not in result.reports


def test_forbidden_action_runs_unconfined() -> None:
    """The parametrized kills above are the filter's doing: without isolation, the same
    calls fail (or succeed) normally and the process lives."""
    def body(report: Callable[[dict], None]) -> None:
        try:
            os.kill(1, 0)
        except OSError as exc:
            report({"kill": errno.errorcode[exc.errno]})
        try:
            pid = os.fork()
        except OSError as exc:  # RLIMIT_NPROC 0 (as nobody)
            report({"fork": errno.errorcode[exc.errno]})
        else:
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            report({"fork": "ok"})

    result = run_sandboxed(body, NOT_ISOLATED)
    assert result.code == 0, result
    reports = {k: v for r in result.reports for k, v in r.items()}
    assert reports["kill"] == "EPERM"
    if os.getuid() == 0:  # dropped to nobody in the child: the process limit bites
        assert reports["fork"] == "EAGAIN"


@needs_seccomp
def test_abort_still_reports_sigabrt() -> None:
    def body(report: Callable[[dict], None]) -> None:
        faulthandler.disable()  # pytest's (a worker has none); restoring handlers is allowed
        os.abort()

    result = run_sandboxed(body)
    assert result.signal == signal.SIGABRT, result


def test_fails_safe_without_libseccomp(monkeypatch: pytest.MonkeyPatch) -> None:
    """isolate-workers asks for the filter: no bindings means no worker, and an error log."""
    monkeypatch.setattr(sandbox, "_seccomp", None)
    monkeypatch.setattr(sandbox, "_SECCOMP_ERROR", "RuntimeError: Unable to find libseccomp")
    assert compile_worker_filter() is None  # main has nothing to hand over either
    _COMPILED[:] = []

    def body(report: Callable[[dict], None]) -> None:
        report({"served": True})

    result = run_sandboxed(body, ISOLATED)
    unconfined = run_sandboxed(body, NOT_ISOLATED)
    assert result.code == 3, result
    assert {"served": True} not in result.reports
    error = result.reports[-1]["sandbox_error"]
    assert "libseccomp bindings unavailable" in error and "Unable to find" in error
    # without isolate-workers the filter is not asked for, so the worker still serves
    assert unconfined.code == 0 and {"served": True} in unconfined.reports


def test_sandbox_error_is_logged(monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture) -> None:
    """The log line main's operator sees; checked in-process with every step stubbed."""
    monkeypatch.setattr(sandbox, "_seccomp", None)
    monkeypatch.setattr(sandbox, "no_new_privs", lambda: None)
    monkeypatch.setattr(sandbox, "limit_resources", lambda: None)
    with caplog.at_level(logging.ERROR, logger="appliance.vpn.main.sandbox"), \
            pytest.raises(SandboxError):
        apply_worker_sandbox(ISOLATED)
    assert any("cannot apply the sandbox (isolate-workers = true)" in r.getMessage()
               and "libseccomp bindings unavailable" in r.getMessage()
               for r in caplog.records)


@needs_seccomp
@pytest.mark.parametrize("suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                   "TLS_CHACHA20_POLY1305_SHA256"])
def test_tls13_key_update_runs_under_the_filter(suite: str) -> None:
    """A client's KeyUpdate makes the worker derive keys (hashlib/HMAC, a fresh AEAD) at run
    time: a path the e2e client never takes, so it is checked here."""
    from appliance.vpn.protocol.tls.record import (
        CT_HANDSHAKE,
        HS_KEY_UPDATE,
        RecordLayer,
        cipher_info,
        tls13_server_keys,
    )

    cipher = cipher_info(suite)
    size = 48 if cipher.hash_name == "sha384" else 32
    client_secret, server_secret = os.urandom(size), os.urandom(size)
    server_keys = tls13_server_keys(cipher, client_secret, server_secret)
    client_view = tls13_server_keys(cipher, server_secret, client_secret)
    server, client = RecordLayer(server_keys), RecordLayer(client_view)
    update = client.seal(bytes((HS_KEY_UPDATE, 0, 0, 1, 1)), CT_HANDSHAKE)

    def body(report: Callable[[dict], None]) -> None:
        plains = server.feed(update)
        report({"plains": len(plains), "answer": len(server.pending)})

    result = run_sandboxed(body)
    assert result.code == 0, result
    assert result.reports[-1]["plains"] == 0 and result.reports[-1]["answer"] > 0
