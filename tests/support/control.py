"""The control server in a thread, as main's selector loop runs it, for client tests."""

from __future__ import annotations

import queue
import selectors
import socket
import threading
from collections.abc import Callable
from typing import Any

from appliance.vpn.control import ControlServer


class LoopThread:
    """main's selector loop, in a thread; ``call`` runs a function inside it."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self.running = True
        server.register(self.sel)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._run_jobs)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while self.running:
            for key, _ in self.sel.select(0.2):
                key.data(key.fileobj)

    def _run_jobs(self, sock: socket.socket) -> None:
        try:
            sock.recv(4096)
        except BlockingIOError:
            pass
        while not self.jobs.empty():
            fn, result = self.jobs.get()
            result.put(fn())

    def call(self, fn: Callable[[], Any]) -> Any:
        result: queue.Queue[Any] = queue.Queue()
        self.jobs.put((fn, result))
        self.wake_w.send(b"x")
        return result.get(timeout=5)

    def stop(self) -> None:
        self.call(self.server.close)
        self.running = False
        self.thread.join(5)
        self.sel.close()
        self.wake_r.close()
        self.wake_w.close()
