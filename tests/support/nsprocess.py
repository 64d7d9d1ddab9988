"""A program of ours running in a test network namespace, its output in a log file."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.support import harness
from tests.support.netns import Netns
from tests.support.processes import stop_process


class NsProcess:
    """Started with the repository on PYTHONPATH; ``stop`` terminates, then kills."""

    def __init__(self, ns: Netns, argv: list[str], log: Path) -> None:
        self.ns = ns
        self.log = log
        env = dict(os.environ, PYTHONPATH=str(harness.REPO_ROOT))
        with log.open("wb") as out:
            self.proc = ns.popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=harness.REPO_ROOT, env=env)

    def wait_port(self, port: int, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ns.tcp_listening(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{what} did not start:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
