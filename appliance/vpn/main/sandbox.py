"""The worker sandbox: what a worker process may still do once it talks to a client.

Workers parse hostile bytes (HTTP, XML, TLS and DTLS records, compressed packets), so a bug
there must not become control of the machine. After ``drop_privileges`` a worker calls
:func:`apply_worker_sandbox`, which

- sets ``PR_SET_NO_NEW_PRIVS``, always: no set-uid binary, file capability or LSM transition
  can ever give this process (or anything it might exec) more rights than it has now;
- lowers resource limits, always: ``RLIMIT_NPROC`` 0 (a worker never forks; the count is per
  uid, and the kernel checks it at fork, so this must come after the setuid),
  ``RLIMIT_NOFILE`` 64 (a worker holds about ten descriptors), ``RLIMIT_CORE`` 0 (a core
  file would hold the session's traffic keys and the DTLS PSK);
- when ``isolate-workers = true``, loads a seccomp allow-list whose default action kills the
  whole process (SIGSYS). Main reaps the worker and logs it; the other sessions live on.

``RLIMIT_FSIZE`` is deliberately left alone: the worker logs to the stderr it inherited, and
when that is a regular file (``ocgate-server ... 2>>log``, the e2e harness) a limit of 0 makes
every write fail with EFBIG (Python ignores SIGXFSZ), which silently loses the worker's logs.

Fail safe: ``isolate-workers = true`` asks for the filter, so if the libseccomp bindings
(pyseccomp over libseccomp.so.2) cannot be loaded, or the kernel refuses the filter, we log
an error and raise :class:`SandboxError`; the caller then exits instead of serving the client
unconfined.

The allow-list was derived by tracing real workers (strace -f, everything after the
``prctl(PR_SET_NO_NEW_PRIVS)`` that marks this function) through the e2e suites: login,
CONNECT, TLS and DTLS traffic, DPD, repeated DTLS handshakes, NAT rebinding, LZ4/LZS
compression, disconnects and floods. Everything a worker needs is imported by main before it
forks, so a worker never opens a file; the few syscalls Python may still try on an error path
(building a traceback stats and opens source files) fail with EPERM instead of killing, see
:data:`ERRNO_SYSCALLS`.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import resource
import struct
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..config import Config

log = logging.getLogger(__name__)

PR_SET_NO_NEW_PRIVS = 38
MAX_OPEN_FILES = 64

# Linux x86-64/generic constants the rules compare arguments with.
FIONBIO = 0x5421
FIOCLEX = 0x5451
FIONCLEX = 0x5450
TCGETS = 0x5401
F_GETFD, F_SETFD, F_GETFL, F_SETFL = 1, 2, 3, 4
PROT_EXEC = 0x4
AT_EMPTY_PATH = 0x1000
IPPROTO_TCP, SOL_UDP = 6, 17
TCP_NODELAY = 1
UDP_GRO = 104

try:  # imported by main before it forks: loading it in a worker would open files
    import pyseccomp as _seccomp

    _SECCOMP_ERROR = ""
except (ImportError, OSError, RuntimeError) as exc:  # RuntimeError: no libseccomp.so
    _seccomp = None
    _SECCOMP_ERROR = f"{type(exc).__name__}: {exc}"


class SandboxError(RuntimeError):
    """The sandbox could not be applied; the worker must not serve its client."""


@dataclass(frozen=True)
class ArgCheck:
    """One argument comparison: ``args[index] & mask == value`` (mask 0: plain equality)."""

    index: int
    value: int
    mask: int = 0


@dataclass(frozen=True)
class Rule:
    """What one syscall (with these argument checks) gets: ALLOW, or an errno."""

    syscall: str
    errno: int = 0  # 0: allowed
    args: tuple[ArgCheck, ...] = field(default_factory=tuple)


# --- the allow-list ---------------------------------------------------------------------------

#: Seen in traced workers after the sandbox point; each allowed with any arguments.
TRACED_SYSCALLS: tuple[str, ...] = (
    "read", "write",  # TUN packets, logging to stderr
    "readv",  # the native data path (native/_fastpath.c) reads a TUN packet past its vnet header
    "recvfrom", "sendto",  # socket.recv/send: TLS, DTLS
    "recvmsg", "sendmsg",  # IPC with SCM_RIGHTS; UDP_GRO receives, UDP_SEGMENT sends
    "epoll_create1", "epoll_ctl", "epoll_wait",  # the data loop
    "poll",  # socket timeouts in the blocking auth phase
    "getsockname", "getpeername", "getsockopt",  # socket(fileno=...), TCP_INFO
    "close", "getpid", "getrandom", "brk",
    "exit_group",
)

#: Not seen in the traces but part of what any Python process may do at any time; all are
#: harmless on their own (memory, clocks, signals delivered to us, leaving).
SAFETY_SYSCALLS: tuple[str, ...] = (
    "munmap", "mremap", "madvise",  # malloc/obmalloc giving memory back
    "clock_gettime", "clock_getres", "gettimeofday", "time",  # vDSO fallbacks
    "clock_nanosleep", "nanosleep",
    "select", "pselect6", "ppoll", "epoll_pwait",  # datapath's final flush uses select()
    "futex",  # glibc internal locks
    "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "restart_syscall",  # faulthandler
    "gettid", "lseek", "fstat",
    "writev",  # glibc's fatal-error messages; the native data path's coalesced TUN writes
    "exit",
)

#: Tried by Python on error paths (traceback source lines: linecache stats and opens .py
#: files) or by isatty() checks; they fail as if forbidden by permissions, the worker goes on.
ERRNO_SYSCALLS: dict[str, int] = {
    "open": errno.EPERM, "openat": errno.EPERM, "openat2": errno.EPERM,
    "stat": errno.EPERM, "lstat": errno.EPERM, "statx": errno.EPERM,
    "access": errno.EPERM, "faccessat": errno.EPERM, "faccessat2": errno.EPERM,
    "readlink": errno.EPERM, "readlinkat": errno.EPERM, "getcwd": errno.EPERM,
    "getdents64": errno.EPERM,
}


def worker_rules(pid: int) -> list[Rule]:
    """The complete filter for worker ``pid`` (rules naming ``pid`` let it signal itself only).

    Everything absent here kills the process: notably execve, fork/clone, socket, connect,
    bind, ptrace, mount, setuid-family calls, keyctl, bpf, io_uring and unshare.
    """
    rules = [Rule(name) for name in TRACED_SYSCALLS + SAFETY_SYSCALLS]
    rules += [Rule(name, errno=code) for name, code in ERRNO_SYSCALLS.items()]
    # ioctl: only non-blocking/close-on-exec switches; isatty() gets "not a tty". No TUN,
    # terminal or socket ioctls (TUNSETIFF, TIOCSTI, SIOC*) reach the kernel.
    rules += [Rule("ioctl", args=(ArgCheck(1, request),))
              for request in (FIONBIO, FIOCLEX, FIONCLEX)]
    rules.append(Rule("ioctl", errno=errno.ENOTTY, args=(ArgCheck(1, TCGETS),)))
    rules += [Rule("fcntl", args=(ArgCheck(1, cmd),))
              for cmd in (F_GETFD, F_SETFD, F_GETFL, F_SETFL)]
    # The only socket options the worker sets; others (filters, bindings, netfilter tables)
    # are kernel attack surface it has no use for.
    rules += [Rule("setsockopt", args=(ArgCheck(1, level), ArgCheck(2, name)))
              for level, name in ((IPPROTO_TCP, TCP_NODELAY), (SOL_UDP, UDP_GRO))]
    # Memory, but never executable memory: that is what injected code would ask for.
    no_exec = ArgCheck(2, 0, PROT_EXEC)
    rules += [Rule("mmap", args=(no_exec,)), Rule("mprotect", args=(no_exec,))]
    # fstat() is newfstatat(fd, "", AT_EMPTY_PATH) in glibc; stat() of a path gets EPERM.
    rules.append(Rule("newfstatat", args=(ArgCheck(3, AT_EMPTY_PATH, AT_EMPTY_PATH),)))
    rules.append(Rule("newfstatat", errno=errno.EPERM, args=(ArgCheck(3, 0, AT_EMPTY_PATH),)))
    # abort() raises SIGABRT at itself: let that report as SIGABRT, not as SIGSYS.
    rules += [Rule("tgkill", args=(ArgCheck(0, pid),)), Rule("kill", args=(ArgCheck(0, pid),))]
    return rules


# --- building and loading ---------------------------------------------------------------------

def seccomp_module() -> ModuleType:
    """The libseccomp bindings, or SandboxError saying why they are missing."""
    if _seccomp is None:
        raise SandboxError(f"libseccomp bindings unavailable ({_SECCOMP_ERROR})")
    return _seccomp


def build_filter(rules: list[Rule], sc: ModuleType | None = None) -> Any:
    """A libseccomp filter: ``rules``, and KILL_PROCESS for everything else (any other
    architecture too: a 32-bit syscall ABI would otherwise slip past the numbers)."""
    sc = sc or seccomp_module()
    filt = sc.SyscallFilter(sc.KILL_PROCESS)
    filt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for rule in rules:
        number = sc.resolve_syscall(sc.Arch.NATIVE, rule.syscall)
        if number == -1:  # __NR_SCMP_ERROR: libseccomp does not know the name at all
            raise SandboxError(f"unknown syscall {rule.syscall!r} in the worker filter")
        action = sc.ERRNO(rule.errno) if rule.errno else sc.ALLOW
        args = [sc.Arg(a.index, sc.MASKED_EQ, a.mask, a.value) if a.mask
                else sc.Arg(a.index, sc.EQ, a.value) for a in rule.args]
        try:
            filt.add_rule(action, number, *args)
        except OSError as exc:
            raise SandboxError(f"seccomp rule for {rule.syscall}: {exc}") from None
    return filt


def no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS, 1): irrevocable, inherited, and required for seccomp
    without CAP_SYS_ADMIN."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise SandboxError(f"PR_SET_NO_NEW_PRIVS failed: {os.strerror(code)}")


def limit_resources() -> None:
    """Soft and hard limits together: an unprivileged worker can never raise them again."""
    for limit, value in ((resource.RLIMIT_NPROC, 0), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NOFILE, MAX_OPEN_FILES)):
        try:
            resource.setrlimit(limit, (value, value))
        except (OSError, ValueError) as exc:
            raise SandboxError(f"setrlimit({limit}, {value}): {exc}") from None


# --- compiled once in main ------------------------------------------------------------------

#: Two stand-in pids the filter is compiled for in main (above any real pid_max, 2**22).
_PID_MARKS = (0x7FFFFF01, 0x7FFFFF02)
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass(frozen=True)
class CompiledFilter:
    """The worker filter as the kernel takes it (classic BPF), compiled by libseccomp in main
    for a stand-in pid, and where that pid sits in it.

    Why: building the filter in each worker (libseccomp's rule database, then its BPF
    generator) dirtied about 1 MB of the worker's inherited heap, a tenth of an idle
    worker's private memory (docs/performance.md, "Memory"). Patching the worker's own pid
    into a program compiled once costs nothing; the program is libseccomp's own, the same
    rules and the same order."""

    program: bytes
    pid_slots: tuple[int, ...]  # instruction indexes whose k is the pid

    def for_pid(self, pid: int) -> bytes:
        prog = bytearray(self.program)
        for i in self.pid_slots:
            code, jt, jf, _ = _INSN.unpack_from(prog, i * _INSN.size)
            _INSN.pack_into(prog, i * _INSN.size, code, jt, jf, pid)
        return bytes(prog)


def _export(filt: Any) -> bytes:
    read, write = os.pipe()
    try:
        with os.fdopen(write, "wb", closefd=False) as out:
            filt.export_bpf(out)
        os.close(write)
        write = -1
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def compile_worker_filter() -> CompiledFilter | None:
    """The worker filter compiled for :data:`_PID_MARKS`; None (workers build their own, as
    before) when libseccomp is missing or the two compilations differ anywhere else than in
    the pid, which would mean the layout depends on the value and patching is unsafe."""
    if _seccomp is None:
        return None
    first, second = (_export(build_filter(worker_rules(mark))) for mark in _PID_MARKS)
    if len(first) != len(second) or len(first) % _INSN.size or not first:
        return None
    slots = []
    for i in range(len(first) // _INSN.size):
        a = _INSN.unpack_from(first, i * _INSN.size)
        b = _INSN.unpack_from(second, i * _INSN.size)
        if a == b:
            continue
        if a[:3] != b[:3] or (a[3], b[3]) != _PID_MARKS:
            return None
        slots.append(i)
    if not slots:
        return None
    return CompiledFilter(first, tuple(slots))


def load_program(program: bytes) -> None:
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, program): after no_new_privs."""
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _INSN.size, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def apply_worker_sandbox(cfg: Config, compiled: CompiledFilter | None = None) -> None:
    """Confine the calling (already unprivileged) worker; see the module docstring.

    Raises SandboxError when any part fails, including a missing libseccomp while
    ``cfg.isolate_workers`` is true: the caller must then exit rather than serve.
    ``compiled`` (from main, :func:`compile_worker_filter`) is loaded with this process's
    pid patched in; without it the filter is built here.
    """
    try:
        no_new_privs()
        limit_resources()
        if not cfg.isolate_workers:
            return
        try:
            if compiled is not None:
                load_program(compiled.for_pid(os.getpid()))
            else:
                build_filter(worker_rules(os.getpid())).load()
        except OSError as exc:
            raise SandboxError(f"the kernel refused the seccomp filter: {exc}") from None
    except SandboxError as exc:
        log.error("worker %d not started: cannot apply the sandbox (isolate-workers = %s): %s",
                  os.getpid(), "true" if cfg.isolate_workers else "false",
                  exc)
        raise
