"""The appliance image under QEMU, a browser-like HTTP client, and a private network namespace.

Used by ``make image-test`` (tests/image/test_boot.py) and handy by hand::

    python3 -m tests.image.guest build/image   # boot, print the console, Ctrl-C to stop

Network rules of this workplace: the guest gets QEMU user-mode networking with
``restrict=on`` (nothing leaves for real addresses) and only loopback host forwards.
The test process moves itself into a fresh network namespace first, so QEMU's forwards,
the HTTP client and openconnect's TUN device and routes all live there and the host's
own network is never touched.
"""

from __future__ import annotations

import ctypes
import html.parser
import http.client
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import stop_process

CLONE_NEWNET = 0x40000000
CODE_RE = re.compile(r"setup code\s+([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})")


class GuestError(RuntimeError):
    """The guest did not do what the test waited for; the message has the console tail."""


# --------------------------------------------------------------------------- namespace


class PrivateNetns:
    """Move this thread (and the children it starts) into a new network namespace."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._home: int | None = None

    def __enter__(self) -> PrivateNetns:
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        if self._libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            os.close(self._home)
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *_: object) -> None:
        if self._home is not None:
            if self._libc.setns(self._home, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to the host namespace: {os.strerror(err)}")
            os.close(self._home)
            self._home = None


# --------------------------------------------------------------------------- QEMU


def _die_with_parent() -> None:
    """In the child: a killed test run must not leave a guest behind (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


@dataclass(frozen=True)
class Ports:
    """Loopback ports forwarded into the guest (host side, inside the private namespace).

    The same numbers as in the guest (the private namespace makes them free), so URLs
    and the server's announcements (X-DTLS-Port: 443) need no translation. No UDP
    forward: with ``restrict=on`` slirp drops all UDP the guest sends, replies included.
    """

    http: int = 80
    vpn: int = 443
    admin: int = 8443


@dataclass
class ImageFiles:
    disk: Path
    kernel: Path
    initrd: Path
    arch: str

    @classmethod
    def find(cls, out: Path, arch: str = "arm64") -> ImageFiles:
        return cls(out / f"ocgate-{arch}.img", out / f"vmlinuz-{arch}",
                   out / f"initrd-{arch}.img", arch)

    def missing(self) -> list[Path]:
        return [p for p in (self.disk, self.kernel, self.initrd) if not p.exists()]


UBOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")  # Debian's u-boot-qemu
#: kernel arguments for the test's eyes: every journal line on the serial console
TEST_KERNEL_ARGS = ("net.ifnames=0 systemd.show_status=1 "
                    "systemd.journald.forward_to_console=1")
BOOT_PARTITION_OFFSET = 4 << 20  # mkimage's Layout.boot_offset_mib


def writable_disk(image: Path, copy: Path, *, grow_bytes: int = 1 << 30) -> Path:
    """A sparse copy of the image that keeps what the guest writes across reboots (slot
    B, bootenv.txt, the data partition), grown so the data partition can hold a bundle;
    bootenv.txt gets the test's kernel arguments (OCGATE_ARGS, read by boot.scr)."""
    subprocess.run(["cp", "--sparse=always", str(image), str(copy)], check=True)
    with open(copy, "r+b") as fh:
        fh.truncate(image.stat().st_size + grow_bytes)
    env = copy.with_name("bootenv.txt")
    env.write_text(f"BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n"
                   f"OCGATE_ARGS={TEST_KERNEL_ARGS} "
                   f"{os.environ.get('OCGATE_QEMU_APPEND', '')}\n")
    subprocess.run(["mcopy", "-o", "-i", f"{copy}@@{BOOT_PARTITION_OFFSET}", str(env),
                    "::bootenv.txt"], check=True)
    return copy


def qemu_argv(files: ImageFiles, ports: Ports, console_log: Path, *, cpus: int = 2,
              memory_mib: int = 1024, uboot_disk: Path | None = None) -> list[str]:
    """TCG only (no usable KVM here).

    ``uboot_disk``: arm64 boots U-Boot, whose boot.scr picks slot A or B, from this
    writable disk, and guest reboots stay in the same QEMU process.  Without it the
    kernel and initrd are passed directly and the disk is a throw-away snapshot.
    """
    forwards = (f"hostfwd=tcp:127.0.0.1:{ports.http}-:80,"
                f"hostfwd=tcp:127.0.0.1:{ports.vpn}-:443,"
                f"hostfwd=tcp:127.0.0.1:{ports.admin}-:8443")
    common = [
        "-netdev", f"user,id=net0,restrict=on,{forwards}",
        "-device", "virtio-net-pci,netdev=net0",
        "-object", "rng-random,filename=/dev/urandom,id=rng0",
        "-device", "virtio-rng-pci,rng=rng0",
    ]
    if uboot_disk is not None:
        return [
            "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53",
            "-accel", "tcg,thread=multi", "-smp", str(cpus), "-m", str(memory_mib),
            "-display", "none", "-monitor", "none", "-serial", f"file:{console_log}",
            "-bios", str(UBOOT),
            "-drive", f"file={uboot_disk},format=raw,if=none,id=disk0",
            "-device", "virtio-blk-pci,drive=disk0", *common,
        ]
    if files.arch == "arm64":
        machine = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53"]
        console = "ttyAMA0"
    else:
        machine = ["qemu-system-x86_64", "-M", "q35", "-cpu", "max"]
        console = "ttyS0"
    return [
        *machine, "-accel", "tcg,thread=multi", "-smp", str(cpus), "-m", str(memory_mib),
        "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", f"file:{console_log}",
        "-kernel", str(files.kernel), "-initrd", str(files.initrd),
        "-append", f"root=LABEL=rootfs rw rootwait console={console} panic=-1 "
                   "net.ifnames=0 systemd.show_status=1 "
                   # every journal line on the serial log: the test's only window inside
                   "systemd.journald.forward_to_console=1 "
                   + os.environ.get("OCGATE_QEMU_APPEND", ""),
        "-drive", f"file={files.disk},format=raw,if=none,id=disk0,snapshot=on",
        "-device", "virtio-blk-pci,drive=disk0", *common,
    ]


@dataclass
class Guest:
    """One QEMU run; the serial console is appended to ``console_log``."""

    files: ImageFiles
    workdir: Path
    ports: Ports = field(default_factory=Ports)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    uboot: bool = False  # arm64 only: U-Boot + A/B boot script on a writable copy

    @property
    def disk_copy(self) -> Path:
        return self.workdir / "disk.img"

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_log.write_bytes(b"")
        disk = None
        if self.uboot:
            disk = self.disk_copy if self.disk_copy.exists() else writable_disk(
                self.files.disk, self.disk_copy)
        argv = qemu_argv(self.files, self.ports, self.console_log, uboot_disk=disk)
        (self.workdir / "qemu.argv").write_text(shlex.join(argv) + "\n")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=open(self.workdir / "qemu.log", "wb"),
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def console(self) -> str:
        return self.console_log.read_bytes().decode("utf-8", "replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.console().splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise GuestError(f"QEMU exited with {self.proc.returncode}\n{self.tail()}")

    def wait_console(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.console())
            if found:
                return found
            self.check_alive()
            time.sleep(0.5)
        raise GuestError(f"no {pattern.pattern!r} on the console within {timeout:.0f}s\n"
                         f"{self.tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, 15)
        self.proc = None


# --------------------------------------------------------------------------- browser


@dataclass
class Form:
    action: str
    form_id: str | None
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(html.parser.HTMLParser):
    """What a browser would submit: inputs, checked boxes and radios, textareas, selects."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("id")))
            return
        if not self.forms:
            return
        fields = self.forms[-1].fields
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("radio", "checkbox"):
                if "checked" in a:
                    fields[name] = a.get("value", "on")
            elif kind not in ("submit", "button", "reset", "file"):
                fields[name] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            fields[name] = ""
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and ("selected" in a or
                                                   self._select not in fields):
            fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea and self.forms:
            self.forms[-1].fields[self._textarea] += data


def parse_forms(page: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(page)
    return parser.forms


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


@dataclass
class Browser:
    """Cookies, redirects and forms over HTTP (or HTTPS: the admin UI) to one port."""

    port: int
    host: str = "127.0.0.1"
    cookies: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    tls: bool = False  # the device's own certificate: not verified (the pin is, by openconnect)

    def _connection(self) -> http.client.HTTPConnection:
        if not self.tls:
            return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                           context=ctx)

    def request(self, method: str, path: str, data: dict[str, str] | None = None,
                *, raw_bytes: bytes | None = None, extra: dict[str, str] | None = None
                ) -> Response:
        """``data``: a form; ``raw_bytes``: the body as it is (update.js's pieces)."""
        conn = self._connection()
        headers = {"Host": f"{self.host}:{self.port}", "User-Agent": "ocgate-image-test",
                   **(extra or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body: str | bytes | None = None
        if data is not None:
            body = urllib.parse.urlencode(data)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif raw_bytes is not None:
            body = raw_bytes
            headers["Content-Type"] = "application/octet-stream"
        try:
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            text = answer.read().decode("utf-8", "replace")
            for name, value in answer.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";", 1)[0]
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()},
                            text)
        finally:
            conn.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def follow(self, response: Response, limit: int = 5) -> Response:
        while response.status in (301, 302, 303, 307) and limit > 0:
            target = urllib.parse.urlsplit(response.location)
            response = self.get(target.path + (f"?{target.query}" if target.query else ""))
            limit -= 1
        return response

    def submit(self, path: str, overrides: dict[str, str], *, form_id: str | None = None,
               action: str | None = None) -> Response:
        """GET ``path``, fill its form like a user would, POST it; returns the answer."""
        page = self.get(path)
        if page.status != 200:
            raise GuestError(f"GET {path}: HTTP {page.status} {page.location}")
        forms = parse_forms(page.body)
        chosen = [f for f in forms
                  if (form_id is None or f.form_id == form_id)
                  and (action is None or f.action.endswith(action))]
        if not chosen:
            raise GuestError(f"no matching form on {path}: {[f.action for f in forms]}")
        form = chosen[-1]
        fields = {**form.fields, **overrides}
        return self.request("POST", form.action or path, fields)


def wait_http(browser: Browser, path: str, timeout: float, guest: Guest) -> Response:
    """First answer through the forward (slirp accepts at once, so wait for a response)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        guest.check_alive()
        try:
            return browser.get(path)
        except (OSError, http.client.HTTPException) as exc:
            last = exc
            time.sleep(1.0)
    raise GuestError(f"no HTTP answer on port {browser.port} within {timeout:.0f}s "
                     f"({last})\n{guest.tail()}")


def wait_tls(port: int, timeout: float, guest: Guest) -> float:
    """Until a TLS handshake with the guest's VPN port completes; returns the time it did."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        guest.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname="ocgate") as tls:
                tls.do_handshake()
                return time.monotonic()
        except (OSError, ssl.SSLError) as exc:
            last = exc
            time.sleep(1.0)
    raise GuestError(f"no TLS on port {port} within {timeout:.0f}s ({last})\n{guest.tail()}")


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("build/image")
    files = ImageFiles.find(out)
    if files.missing():
        print(f"missing: {files.missing()} (make image)", file=sys.stderr)
        return 2
    with PrivateNetns():
        guest = Guest(files, out / "qemu-manual")
        guest.start()
        print(f"console: {guest.console_log}; forwards {guest.ports}; Ctrl-C stops")
        try:
            assert guest.proc is not None
            guest.proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            guest.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
